"""The one golden-file comparison of the test suite (plan/XML goldens, `--explain` text, the schema copy).

Normal mode compares. `VNETLAB_UPDATE_GOLDEN=1` rewrites the file and then *fails* the test,
so an update run can never be mistaken for a passing run (it would compare each file with
itself): review the diff, then run again without the variable. In CI (`CI=true`, as GitHub
Actions, GitLab and most runners set it) update mode is refused outright.

Test modules import it as `from goldens import compare_golden` after putting this folder
(tests/) on sys.path: there is no conftest.py or package above them to do it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

UPDATE_ENV = "VNETLAB_UPDATE_GOLDEN"
REWRITTEN = f"golden files rewritten; review the diff and run again without {UPDATE_ENV}"
REFUSED_IN_CI = f"{UPDATE_ENV} is set but CI=true: golden files are never rewritten in CI (run the update on a workstation and commit the reviewed files)"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def update_mode() -> bool:
    """Whether VNETLAB_UPDATE_GOLDEN asks for rewriting; fails the test when that is asked in CI."""
    if not os.environ.get(UPDATE_ENV):
        return False
    if in_ci():
        pytest.fail(REFUSED_IN_CI, pytrace=False)
    return True


def compare_golden(path: Path, actual: str, *, parse: Callable[[str], Any] | None = None) -> None:
    """Assert that `actual` is what the golden file `path` holds (see compare_goldens)."""
    compare_goldens({path: actual}, parse=parse)


def compare_goldens(files: Mapping[Path, str], *, parse: Callable[[str], Any] | None = None) -> None:
    """Assert that each golden file holds its text (compared after `parse` when given, e.g.
    json.loads for a file whose formatting does not matter).

    Update mode writes every file first, then fails once naming them, so one update run
    rewrites all of a test's goldens. A golden file that does not exist yet is written and the
    test fails once, asking for a review (not in CI)."""
    if update_mode():
        changes = []
        for path, actual in files.items():
            before = path.read_text() if path.exists() else None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
            changes.append(f"{path}: " + ("unchanged" if before == actual else "new" if before is None else "changed"))
        pytest.fail(f"{REWRITTEN} ({'; '.join(changes)})", pytrace=False)
    missing = [path for path in files if not path.exists()]
    if missing:
        if in_ci():
            pytest.fail(f"golden file(s) missing (never written in CI): {', '.join(map(str, missing))}", pytrace=False)
        for path in missing:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
        pytest.fail(f"golden file(s) {', '.join(map(str, missing))} did not exist; written now — review and commit them", pytrace=False)
    same = (lambda a, b: a == b) if parse is None else (lambda a, b: parse(a) == parse(b))
    differing = [str(path) for path, actual in files.items() if not same(actual, path.read_text())]
    assert not differing, f"{', '.join(differing)} differ(s) ({UPDATE_ENV}=1 to accept an intended change)"
