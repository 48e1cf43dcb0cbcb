"""Where vnetlab finds its own files (package data) and users' labs, and where it keeps lab state.

The templates, the shipped scenarios, the guest image recipe and the JSON Schema are package
data, found through importlib.resources: the same code works from a source checkout, an
editable install and a wheel installed anywhere. In the repository templates/, scenarios/ and
images/ sit at the top level; the build maps them to vnetlab.templates, vnetlab.scenarios and
vnetlab.images (pyproject.toml's package-dir). Users' labs are found by path, or by name in
a search path: `--scenarios DIR` (repeatable), then VNETLAB_PATH (folders separated by ':'),
then the built-in scenarios.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(str(files("vnetlab")))
TEMPLATES_DIR = Path(str(files("vnetlab.templates")))
SCENARIOS_DIR = Path(str(files("vnetlab.scenarios")))
RECIPE_DIR = Path(str(files("vnetlab.images")))
SCHEMA_FILE = PACKAGE_DIR / "schema" / "scenario.schema.json"
CLASSROOM_WEB_DIR = PACKAGE_DIR / "classroom" / "web"  # the classroom's pages, and the npm manifest of their libraries
SEARCH_PATH_ENV = "VNETLAB_PATH"


@dataclass(frozen=True)
class Layout:
    """The on-disk layout under one root (default /var/lib/vnetlab)."""

    root: Path = Path("/var/lib/vnetlab")

    @property
    def labs(self) -> Path:
        return self.root / "labs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def lab_dir(self, lab: str) -> Path:
        return self.labs / lab

    @property
    def classrooms(self) -> Path:
        return self.root / "classrooms"

    @property
    def web(self) -> Path:
        """The classroom pages' browser libraries (xterm.js), installed here by `vnetlab setup` from npm."""
        return self.root / "web"


@dataclass(frozen=True)
class ScenarioFile:
    name: str
    path: Path
    builtin: bool


def search_path(extra: list[Path] | tuple[Path, ...] = (), environ: dict[str, str] | None = None) -> list[Path]:
    """The folders searched for a scenario by name, first match wins: --scenarios, VNETLAB_PATH, built-in."""
    env = os.environ if environ is None else environ
    dirs = [*extra, *(Path(p) for p in env.get(SEARCH_PATH_ENV, "").split(":") if p)]
    return [*dirs, SCENARIOS_DIR]


def _in(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def find_scenarios(dirs: list[Path]) -> list[ScenarioFile]:
    """Every scenario of the search path, in its order (a name found twice is listed twice)."""
    return [ScenarioFile(p.stem, p, folder == SCENARIOS_DIR) for folder in dirs for p in _in(folder)]


@dataclass(frozen=True)
class Resolved:
    path: Path
    note: str | None = None  # said when the name exists in more than one folder


def resolve_scenario(ref: str, dirs: list[Path] | None = None) -> Resolved:
    """A scenario given as a path to a YAML file, or by name in the search path."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or "/" in ref:
        return Resolved(path)
    dirs = search_path() if dirs is None else dirs
    found = [s for s in find_scenarios(dirs) if s.name == ref]
    if not found:
        return Resolved(SCENARIOS_DIR / f"{ref}.yaml")  # reported as "no such file" by the loader, with the path
    chosen = found[0]
    if len(found) == 1:
        return Resolved(chosen.path)
    others = ", ".join(f"{s.path}" + (" (built in)" if s.builtin else "") for s in found[1:])
    return Resolved(chosen.path, f"scenario {ref!r}: using {chosen.path}" + (" (built in)" if chosen.builtin else "") + f"; also found: {others}")


def is_exercise(path: Path) -> bool:
    """A scenario with a top-level `exercise:` section: a lab the student completes, not a lesson."""
    return re.search(r"^exercise:", path.read_text(errors="replace"), re.MULTILINE) is not None


def scenario_files() -> list[Path]:
    """The built-in scenarios: the lessons and the exercises."""
    return _in(SCENARIOS_DIR)


def lesson_files() -> list[Path]:
    """The built-in scenarios that are lessons (vnetlab builds and checks the whole lab itself)."""
    return [p for p in scenario_files() if not is_exercise(p)]


def exercise_files() -> list[Path]:
    """The built-in exercises (scenarios with an `exercise:` section)."""
    return [p for p in scenario_files() if is_exercise(p)]
