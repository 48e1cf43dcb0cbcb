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
from vnetlab.compose import registry
from vnetlab.model.schema import scenario_schema
from vnetlab.paths import exercise_files, scenario_files

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
    for path in scenario_files():
        page = (site / "lessons" / path.stem / "index.html").read_text()
        assert f'src="../{path.stem}.svg"' in page and f"vnetlab plan {path.stem} --explain" in page
        assert (site / "lessons" / f"{path.stem}.svg").read_text().lstrip().startswith("<?xml")
        assert "What its checks prove" in page


def test_every_exercise_has_a_page_without_its_solution_and_its_lesson_links_it(site: Path):
    practised = yaml.safe_load((ROOT / "docs" / "exercises.yaml").read_text())
    assert set(practised) == {p.stem for p in exercise_files()}
    index = html.unescape((site / "exercises" / "index.html").read_text())
    for path in exercise_files():
        doc = yaml.safe_load(path.read_text())
        page = html.unescape(re.sub(r"<[^>]+>", "", (site / "exercises" / path.stem / "index.html").read_text()))  # the text a reader sees
        assert doc["exercise"]["title"] in page and f"vnetlab exercise start {path.stem}" in page and f'href="{path.stem}/"' in index
        for task in doc["exercise"]["tasks"]:
            assert task["name"] in page
            answers = [str(s["answer"]) for s in task["solve"] if "answer" in s and str(s["answer"]) not in task["text"]]  # not the choices a text offers
            for secret in [s["run"] for s in task["solve"] if "run" in s] + answers + task.get("hints", []):
                shown = re.sub(r"\{\{\s*(.*?)\s*\}\}", r"‹\1›", secret)  # how the page would show its templates
                assert secret not in page and shown not in page, (path.stem, secret)  # a student may read the page: no solution, no hint
        lesson = html.unescape((site / "lessons" / practised[path.stem] / "index.html").read_text())
        assert f'href="../../exercises/{path.stem}/"' in lesson
    for page in ("exercises-doing", "exercises-writing"):
        assert (site / page / "index.html").exists()


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
