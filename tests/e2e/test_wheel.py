"""vnetlab as a user installs it: the wheel in a new virtual environment, used from a folder
outside the source tree — list, plan, schema, a real run, and a lab made by `vnetlab init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vnetlab.paths import SCHEMA_FILE

pytestmark = pytest.mark.e2e
LAB_PREFIX = "w-"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout (and pytest, for the starter lab's tests)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("vnetlab-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel), "pytest"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def use(venv: Path, *argv: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "VNETLAB_PATH")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_tool_finds_its_own_files_outside_the_checkout(installed, tmp_path):
    where = use(installed, "python", "-c", "import vnetlab.paths as p; print(p.PACKAGE_DIR)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(installed)), where.stdout + where.stderr
    listing = use(installed, "vnetlab", "list", cwd=tmp_path)
    assert listing.returncode == 0 and "two-vm-ping" in listing.stdout and "built in" in listing.stdout, listing.stderr
    plan = use(installed, "vnetlab", "plan", "web-service", "--xml", cwd=tmp_path)
    docs = list(yaml.safe_load_all(plan.stdout))
    assert docs[0]["scenario"] == "web-service" and f"{installed}" in docs[1]["xml"]  # the share's folder is package data
    schema = use(installed, "vnetlab", "schema", cwd=tmp_path)
    assert json.loads(schema.stdout) == json.loads(SCHEMA_FILE.read_text())


def test_the_installed_tool_runs_two_vm_ping(installed, tmp_path, lab_name):
    result = use(installed, "vnetlab", "run", "two-vm-ping", "--name", lab_name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"PASS two-vm-ping (lab {lab_name}): 3/3 checks passed" in result.stdout


def test_init_makes_a_lab_that_passes_as_it_is(installed, tmp_path, lab_name):
    made = use(installed, "vnetlab", "init", "starter", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "starter"
    assert sorted(p.name for p in folder.iterdir()) == [".github", "README.md", "lab.yaml", "scenario.schema.json", "test_lab.py"]
    assert folder.joinpath("lab.yaml").read_text().startswith("# yaml-language-server: $schema=scenario.schema.json\n")
    run = use(installed, "vnetlab", "run", "lab.yaml", "--name", lab_name, cwd=folder)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3/3 checks passed" in run.stdout
    tests = use(installed, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=folder, timeout=900)
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-3000:]
