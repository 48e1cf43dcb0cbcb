"""`vnetlab exercise test NAME`: proof that an exercise is solvable and not passed before the student acts.

On a lab of its own: for every task in order, its checks must FAIL after setup (and the earlier
tasks' solutions), then PASS after its own solution; at the end every task must pass. Graded
exactly as a student is (on the wire). One JUnit testcase per task and phase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnetlab.errors import VnetlabError
from vnetlab.exercise.lab import ExerciseLab, TaskOutcome
from vnetlab.model.params import DEFAULT_STUDENT
from vnetlab.model.scenario import ScenarioModel
from vnetlab.paths import Layout
from vnetlab.run.lab import load, unique_lab_name
from vnetlab.run.progress import Progress
from vnetlab.tools.junit import junit_xml

FAILS_AFTER_SETUP = "fails before its solution"
PASSES_AFTER_SOLVE = "passes after its solution"
ALL_PASS = "every task passes at the end"


@dataclass
class Phase:
    task: str  # "N. name", or "all tasks"
    phase: str
    ok: bool
    detail: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Proof:
    exercise: str
    lab: str
    student: str
    phases: list[Phase] = field(default_factory=list)
    error: str | None = None  # the lab could not be built or kept going

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.phases) and all(p.ok for p in self.phases)

    def to_json(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "lab": self.lab, "student": self.student, "ok": self.ok, "error": self.error, "phases": [p.to_json() for p in self.phases]}

    def junit(self) -> str:
        checks = [{"name": f"{p.task}: {p.phase}", "kind": "exercise-test", "ok": p.ok, "detail": p.detail, "data": {"seconds": round(p.seconds, 2)}} for p in self.phases]
        steps = [{"name": "test", "seconds": sum(p.seconds for p in self.phases), "ok": self.ok}]
        return junit_xml({"scenario": self.exercise, "lab": self.lab, "accel": None, "accel_detail": None, "error": self.error, "steps": steps, "checks": checks, "artifacts": {}})


def _failing(outcome: TaskOutcome) -> str:
    bad = [r for r in outcome.results if not r.ok]
    return "; ".join(f"✗ {r.name}: {r.detail}" for r in bad) or "every check passed"


def _verdicts(outcome: TaskOutcome) -> str:
    return "; ".join(f"{'✓' if r.ok else '✗'} {r.name}" for r in outcome.results)


def prove(
    ref: str, model: ScenarioModel, *, student: str = DEFAULT_STUDENT, lab: str | None = None, layout: Layout | None = None,
    progress: Progress | None = None, scenario_dirs: list[Path] | None = None, accel: str = "auto", keep: bool = False, cold: bool = False,
) -> Proof:
    """Build the exercise on a lab of its own (NAME-<random> unless `lab`; `cold`: its guests booted,
    not restored), prove every task, then take the lab down (unless `keep`). The proof says what
    failed; it raises only for bad input."""
    progress = progress or Progress(quiet=True)
    _, scenario = load(ref, model, scenario_dirs or [], progress.detail, student)
    name = lab or unique_lab_name(scenario.name)
    proof = Proof(scenario.name, name, student)
    xlab: ExerciseLab | None = None
    try:
        xlab = ExerciseLab.start(ref, model, student=student, lab=name, layout=layout, progress=progress, scenario_dirs=scenario_dirs, accel=accel, cold=cold)
        tasks = scenario.exercise.tasks
        for k, task in enumerate(tasks):
            label = f"{k + 1}. {task.name}"
            began = time.monotonic()
            before = xlab.check(k + 1)[0]
            proof.phases.append(Phase(label, FAILS_AFTER_SETUP, not before.passed, "it failed: " + _failing(before) if not before.passed else f"every check passed before its solution ({_verdicts(before)}): the exercise gives the task away", time.monotonic() - began))
            began = time.monotonic()
            if not task.solve:
                proof.phases.append(Phase(label, PASSES_AFTER_SOLVE, False, "the task has no solve: steps, so nothing proves it solvable", 0.0))
                continue
            try:
                xlab.solve(k + 1)
            except VnetlabError as exc:
                proof.phases.append(Phase(label, PASSES_AFTER_SOLVE, False, f"its solution failed: {exc}", time.monotonic() - began))
                continue
            after = xlab.check(k + 1)[0]
            proof.phases.append(Phase(label, PASSES_AFTER_SOLVE, after.passed, _verdicts(after) if after.passed else "it failed: " + _failing(after), time.monotonic() - began))
        began = time.monotonic()
        final = xlab.check()
        failed = [o for o in final if not o.passed]
        detail = f"{len(final) - len(failed)}/{len(final)} task(s) pass" + "".join(f"; {o.number}. {o.name}: {_failing(o)}" for o in failed)
        proof.phases.append(Phase("all tasks", ALL_PASS, not failed, detail, time.monotonic() - began))
    except VnetlabError as exc:
        proof.error = str(exc)
    finally:
        if xlab is not None and not keep:
            try:
                xlab.down()
            except VnetlabError as exc:
                proof.error = (proof.error + "; " if proof.error else "") + f"teardown: {exc}"
    return proof
