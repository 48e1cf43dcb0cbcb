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


# Where each folder of runtime files lands inside the package: templates/, scenarios/ and images/
# are at the top of the repository and mapped into it by the build (pyproject.toml's package-dir).
IN_PACKAGE = {TEMPLATES_DIR: "templates", SCENARIOS_DIR: "scenarios", RECIPE_DIR: "images", SCHEMA_FILE.parent: "schema"}


def test_the_data_folders_sit_at_the_top_of_the_repository():
    assert {TEMPLATES_DIR, SCENARIOS_DIR, RECIPE_DIR} == {ROOT / "templates", ROOT / "scenarios", ROOT / "images"}
    assert not any((PACKAGE_DIR / name).exists() for name in ("templates", "scenarios", "images"))


def runtime_files() -> list[str]:
    """Every non-Python file the package reads, as its path inside the package."""
    roots = [TEMPLATES_DIR, SCENARIOS_DIR, RECIPE_DIR / "guest", RECIPE_DIR / "debian"]
    files = [p for r in roots for p in r.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    files += [RECIPE_DIR / n for n in ("binaries.txt", "layout.txt", "modules.txt")] + [SCHEMA_FILE]
    return sorted(in_package(p) for p in files)


def in_package(path: Path) -> str:
    folder = next(f for f in IN_PACKAGE if path.is_relative_to(f))
    return f"{IN_PACKAGE[folder]}/{path.relative_to(folder).as_posix()}"


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
    """The sdist is a source tree: the files sit where the repository has them (a wheel built
    from it maps them into the package)."""
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    in_repository = [p for r in (TEMPLATES_DIR, SCENARIOS_DIR, RECIPE_DIR, SCHEMA_FILE.parent) for p in r.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in in_repository if str(p.relative_to(ROOT)) not in names]
    assert not missing and in_repository, missing
