"""The documentation site builds in strict mode (broken links and missing pages fail), with its
generated pages: one per lesson (with its topology SVG and --explain commands), the scenario
syntax from the model, and the command line from the parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vnetlab.cli import build_parser
from html import escape

from vnetlab.compose import load_scenario, registry
from vnetlab.model.templates import render
from vnetlab.model.schema import scenario_schema
from vnetlab.paths import scenario_files

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"
pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="the lesson pages draw their topology with Graphviz (scripts/setup-host installs it)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _is_exercise(path: Path) -> bool:
    return load_scenario(path).exercise is not None


def test_every_lesson_has_a_page_with_its_topology_and_commands(site: Path):
    for path in scenario_files():
        if _is_exercise(path):
            continue
        page = (site / "lessons" / path.stem / "index.html").read_text()
        assert f'src="../{path.stem}.svg"' in page and f"vnetlab plan {path.stem} --explain" in page
        assert (site / "lessons" / f"{path.stem}.svg").read_text().lstrip().startswith("<?xml")
        assert "What its checks prove" in page


def test_every_exercise_has_a_page_with_its_tasks_and_no_solution(site: Path):
    exercises = [p for p in scenario_files() if _is_exercise(p)]
    assert exercises
    index = (site / "exercises" / "index.html").read_text()
    for path in exercises:
        scenario = load_scenario(path)
        page = (site / "exercises" / path.stem / "index.html").read_text()
        assert f"vnetlab exercise start {path.stem}" in page and f'src="../{path.stem}.svg"' in page
        assert all(escape(t.name) in page for t in scenario.exercise.tasks) and "Graded on the wire" in page
        assert all(escape(render(s.run, {}), quote=False) not in page for t in scenario.exercise.tasks for s in t.solve if s.run and "{{" not in s.run)
        assert f'href="{path.stem}/"' in index
    assert "no echo reply crossed br0" in (site / "grading" / "index.html").read_text()


def test_the_syntax_page_covers_every_part_of_the_model(site: Path):
    page = (site / "syntax" / "index.html").read_text()
    for name in scenario_schema(registry())["$defs"]:
        assert f'id="{name.lower()}"' in page, name


def test_the_cli_page_covers_every_command(site: Path):
    page = (site / "cli" / "index.html").read_text()
    commands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in commands:
        assert f"vnetlab {name}" in page, name


def test_strict_mode_fails_on_a_broken_link(tmp_path: Path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs" / "index.md").write_text((ROOT / "docs" / "index.md").read_text() + "\nSee [the missing page](nowhere.md).\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "nowhere.md" in result.stdout + result.stderr
