"""The sdist and the wheel carry what the package reads at run time (tests/e2e/test_wheel.py then
installs the wheel and uses it for real)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from vnetlab.paths import PACKAGE_DIR, RECIPE_DIR, SCENARIOS_DIR, SCHEMA_FILE, TEMPLATES_DIR

ROOT = Path(__file__).resolve().parents[2]


def runtime_files() -> list[str]:
    """Every non-Python file the package reads, relative to the package."""
    roots = [TEMPLATES_DIR, SCENARIOS_DIR, RECIPE_DIR / "guest", RECIPE_DIR / "debian"]
    files = [p for r in roots for p in r.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [RECIPE_DIR / n for n in ("binaries.txt", "layout.txt", "modules.txt")] + [SCHEMA_FILE]
    return sorted(str(p.relative_to(PACKAGE_DIR)) for p in files)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


def test_the_wheel_carries_the_runtime_files(dist: Path):
    names = set(zipfile.ZipFile(next(dist.glob("*.whl"))).namelist())
    missing = [f for f in runtime_files() if f"vnetlab/{f}" not in names]
    assert not missing and runtime_files(), missing


def test_the_sdist_carries_the_runtime_files(dist: Path):
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    missing = [f for f in runtime_files() if f"vnetlab/{f}" not in names]
    assert not missing, missing
