"""The documentation site builds in strict mode (broken links and missing pages fail), with its
generated pages: one per lesson (with its topology SVG and --explain commands), the scenario
syntax from the model, and the command line from the parser."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vnetlab.cli import build_parser
from vnetlab.compose import load_scenario, registry
from vnetlab.model.templates import render
from vnetlab.model.schema import scenario_schema
from vnetlab.paths import exercise_files, lesson_files
from vnetlab.plan.planner import make_plan
from vnetlab.plan.variables import plan_variables

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


def test_every_lesson_has_a_page_with_its_topology_and_commands(site: Path):
    for path in lesson_files():
        page = (site / "lessons" / path.stem / "index.html").read_text()
        assert f'src="../{path.stem}.svg"' in page and f"vnetlab plan {path.stem} --explain" in page
        assert (site / "lessons" / f"{path.stem}.svg").read_text().lstrip().startswith("<?xml")
        assert "What its checks prove" in page


def test_every_exercise_has_a_page_without_its_solution_and_its_lesson_links_it(site: Path):
    """A student may read the site: an exercise's page has its tasks and what grades them, never a
    hint, a solution step, an answer (unless the task's own text offers it as a choice) or its setup."""
    practised = yaml.safe_load((ROOT / "docs" / "exercises.yaml").read_text())
    assert exercise_files() and set(practised) == {p.stem for p in exercise_files()}
    index = (site / "exercises" / "index.html").read_text()
    for path in exercise_files():
        scenario = load_scenario(path)
        variables = plan_variables(make_plan(scenario, scenario.name))  # the page shows student demo's values
        raw = (site / "exercises" / path.stem / "index.html").read_text()
        page = html.unescape(re.sub(r"<[^>]+>", "", raw))  # the text a reader sees
        assert scenario.exercise.title in page and f"vnetlab exercise start {path.stem}" in page and f'src="../{path.stem}.svg"' in raw
        assert "Graded on the wire" in page and f'href="{path.stem}/"' in index
        for task in scenario.exercise.tasks:
            text = render(task.text, variables)
            assert task.name in page
            answers = [render(s.answer, variables) for s in task.solve if s.answer is not None]
            secrets = [render(s.run, variables) for s in task.solve if s.run is not None] + [a for a in answers if a not in text] + [render(h, variables) for h in task.hints]
            secrets += [render(s.run, variables) for s in scenario.exercise.setup]
            for secret in secrets:
                assert secret not in page, (path.stem, secret)
        lesson = (site / "lessons" / practised[path.stem] / "index.html").read_text()
        assert f'href="../../exercises/{path.stem}/"' in lesson
    for page in ("exercises-doing", "exercises-writing"):
        assert (site / page / "index.html").exists()
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
