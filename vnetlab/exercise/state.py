"""An exercise's state: what the student did, in the lab's state folder (`exercise.json`).

Written whole and atomically under the lab's lock (a crash of the vnetlab process leaves the last
state written, never half of one), read without it. It ends with the lab: `vnetlab down` removes
the folder. What a teacher grades is not this file but a submitted bundle's evidence.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vnetlab.errors import InputError, VnetlabError
from vnetlab.files import write_private
from vnetlab.printable import printable_json

STATE_FILE = "exercise.json"
FORMAT = 1
UNTRIED, PASSED, FAILED = "untried", "passed", "failed"


def task_points(task: Any, record: TaskRecord | None = None, *, passed: bool | None = None, hints_used: int | None = None) -> float:
    """What a task earns: its points less what its hints cost, when it passed (its last check, or `passed`)."""
    passed = (record is not None and record.state == PASSED) if passed is None else passed
    used = (record.hints_used if record is not None else 0) if hints_used is None else hints_used
    return max(0.0, float(task.points) - used * float(task.hint_cost)) if passed else 0.0


class ExerciseError(VnetlabError):
    """Something about an exercise the user can act on (not an exercise lab, a file that changed, …)."""


class ExerciseInputError(ExerciseError, InputError):
    """A bad value given for an exercise: no such task, an unusable answer or student id (exit 2)."""


@dataclass
class TaskRecord:
    name: str
    state: str = UNTRIED  # of its last check: passed | failed | untried (never checked since the start or a reset)
    checked_at: float | None = None
    first_passed_at: float | None = None  # the first time it passed (kept through failures and resets)
    hints_used: int = 0  # revealed so far (kept through resets: a hint once read stays read)
    answer: dict[str, Any] | None = None  # {"value": text, "at": unix time}: the last answer given
    run: str | None = None  # the folder of its last check (evidence.json, judging.json, pcaps)
    checks: list[dict[str, Any]] = field(default_factory=list)  # that check's results (CheckResult.to_json)


@dataclass
class ExerciseState:
    exercise: str  # the scenario's name
    title: str
    file: str  # the exercise file the lab was built from
    sha256: str  # of that file as built (a student's copy and the teacher's are compared by it)
    student: str
    lab: str
    params: dict[str, Any]
    started: float
    time_limit_s: int | None
    tasks: list[TaskRecord]
    resets: list[float] = field(default_factory=list)
    submissions: list[dict[str, Any]] = field(default_factory=list)  # {"at": unix time, "bundle": folder}
    format: int = FORMAT

    def save(self, lab_dir: Path) -> None:
        write_private(lab_dir / STATE_FILE, (printable_json(asdict(self), indent=2) + "\n").encode(), atomic=True)  # a student's answer, exactly, shown inert

    @classmethod
    def load(cls, lab_dir: Path) -> ExerciseState:
        path = lab_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ExerciseError(f"lab {lab_dir.name!r} is not an exercise (no {STATE_FILE}): `vnetlab exercise start NAME` makes one") from None
        except (OSError, ValueError) as exc:
            raise ExerciseError(f"{path} is unreadable ({exc}); inspect it by hand") from None
        try:
            known = {f.name for f in fields(TaskRecord)}
            raw["tasks"] = [TaskRecord(**{k: v for k, v in t.items() if k in known}) for t in raw["tasks"]]
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ExerciseError(f"{path} is not an exercise state ({exc}); inspect it by hand") from None
