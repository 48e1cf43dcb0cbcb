"""The layers contract (pyproject.toml [tool.importlinter]) holds, and it would catch a regression.

`lint-imports` checks that imports only go down the layers (cli > composition > features >
exercise engine > tools > run > checks > plan > model > backends > utilities), that no feature imports another,
and that no package has an import cycle. The second test plants a forbidden import in a copy
of the package and requires the contract to fail naming it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), str(cwd / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    result = lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "vnetlab", tmp_path / "vnetlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_core_module_importing_a_feature_breaks_the_layers(tmp_path):
    tree = _copy(tmp_path)
    planner = tree / "vnetlab" / "plan" / "planner.py"
    planner.write_text(planner.read_text() + "\nfrom vnetlab.features import wireguard  # planted\n")
    result = lint(tree, tree)
    assert result.returncode != 0
    assert "vnetlab.plan.planner -> vnetlab.features.wireguard" in result.stdout


def test_a_feature_importing_another_breaks_independence(tmp_path):
    tree = _copy(tmp_path)
    perf = tree / "vnetlab" / "features" / "perf.py"
    perf.write_text(perf.read_text() + "\nfrom vnetlab.features import nat  # planted\n")
    result = lint(tree, tree)
    assert result.returncode != 0
    assert "vnetlab.features.perf -> vnetlab.features.nat" in result.stdout


def test_a_cycle_inside_a_package_is_named(tmp_path):
    tree = _copy(tmp_path)
    ping = tree / "vnetlab" / "checks" / "base.py"
    ping.write_text(ping.read_text() + "\nfrom vnetlab.checks import runner  # planted\n")
    result = lint(tree, tree)
    assert result.returncode != 0
    assert "vnetlab.checks" in result.stdout and ".base -> .runner" in result.stdout
