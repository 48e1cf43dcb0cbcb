"""The exercise engine: a student's lab (start, status, check, hint, answer, submit, reset), the
proof that an exercise is solvable (`prove`), and grading bundles from their evidence (`grade`).

    from vnetlab.compose import registry
    from vnetlab.exercise import ExerciseLab, grade, prove

    lab = ExerciseLab.start("ex-two-vm-ping", registry(), student="alice")   # lab ex-two-vm-ping-alice
    lab.status().to_json()             # tasks: name, state passed|failed|untried, points, hints …
    lab.check("address vm2")           # [TaskOutcome]: graded on the wire, remembered
    lab.hint(1); lab.answer(2, "52:54:00:12:34:56"); lab.submit()   # → the bundle's folder
    ExerciseLab("ex-two-vm-ping-alice", registry()).down()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vnetlab.exercise.grading import Gradebook, GradedBundle, grade
    from vnetlab.exercise.lab import Briefing, ExerciseLab, ExerciseStatus, Hint, TaskOutcome, exercise_labs, lab_name
    from vnetlab.exercise.proof import Proof, prove
    from vnetlab.exercise.state import ExerciseError, ExerciseInputError

# Each name, from the module that defines it, imported at its first use: `vnetlab run` loads the
# exercise feature (for its scenario section) through vnetlab.exercise.content, and needs none of these.
_MODULE_OF = {
    "Gradebook": "grading", "GradedBundle": "grading", "grade": "grading",
    "Briefing": "lab", "ExerciseLab": "lab", "ExerciseStatus": "lab", "Hint": "lab", "TaskOutcome": "lab", "exercise_labs": "lab", "lab_name": "lab",
    "Proof": "proof", "prove": "proof",
    "ExerciseError": "state", "ExerciseInputError": "state",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


__all__ = sorted(_MODULE_OF)
