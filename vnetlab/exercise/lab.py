"""One student's exercise lab: start, status, check, hint, answer, solve, reset, down.

The API the command line, the pytest plugin and a classroom server share. Every call is
about one lab (`ExerciseLab(name, model)`), returns plain data whose `to_json()` a program
can send on, and keeps the exercise's state in the lab's folder (vnetlab.exercise.state).
Calls that change the state take the lab's lock; `check`, `hint` and `answer` wait for a
command already working on the lab instead of failing. A check interrupted (Ctrl-C,
SIGTERM) leaves the state as it was: it is written once, after every task was judged.

Checks are graded on the wire: each task's checks run as one check phase with vnetlab's
captures where their traffic crosses, and a kind of check with a wire signature counts only
when the capture saw it. Each task's check keeps its own run folder (evidence, pcaps, what
judging needs), which `submit` bundles and `grade` judges again. What a check returns and
records is what the student sees: every task's expected answer is hidden in it
(vnetlab.exercise.answers); the run folder keeps the evidence whole.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CheckResult
from vnetlab.checks.evidence import keep_setting, select_checks
from vnetlab.checks.runner import run_checks
from vnetlab.errors import Interrupted
from vnetlab.exercise.answers import expected_answers, hide_answers
from vnetlab.exercise.bundle import write_bundle
from vnetlab.exercise.content import duration_seconds, intro_text
from vnetlab.exercise.state import FAILED, PASSED, STATE_FILE, ExerciseError, ExerciseInputError, ExerciseState, TaskRecord, task_points
from vnetlab.exercise.steps import run_steps
from vnetlab.model.params import DEFAULT_STUDENT, ParamError, check_student
from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.templates import render
from vnetlab.paths import Layout
from vnetlab.plan.planner import LAB_NAME_MAX, Plan
from vnetlab.plan.variables import plan_variables
from vnetlab.run.configure import open_sessions
from vnetlab.run.lab import (
    SCENARIO_COPY, DownReport, LabError, LabPaths, LabRunner, Options, check_lab_name, close_all, interrupts_as_exceptions,
    lab_lock, load, new_run_dir, plan_from_state, read_state, run_setting, shielded,
)
from vnetlab.run.progress import Progress

MAX_ANSWER = 200  # characters of an answer kept


def lab_name(exercise: str, student: str) -> str:
    """`NAME-ID`, so a class's labs share a host; a student id that is not already a lab name's
    lowercase part (or too long) gets a short hash of itself, so two ids never share a lab."""
    slug = re.sub(r"[^a-z0-9]+", "-", student.lower()).strip("-") or "student"
    name = f"{exercise}-{slug}"
    if slug == student and len(name) <= LAB_NAME_MAX:
        return name
    suffix = hashlib.sha256(student.encode()).hexdigest()[:4]
    return f"{name[: LAB_NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean_answer(value: str) -> str:
    """An answer as typed, kept printable and bounded (it is shown back and stored)."""
    if len(value) > MAX_ANSWER:
        raise ExerciseInputError(f"the answer is {len(value)} characters long; at most {MAX_ANSWER}")
    if not value.strip() or any(not c.isprintable() for c in value):
        raise ExerciseInputError("an answer is printable text, not empty")
    return value


# -- what the calls return ---------------------------------------------------------------------------------------------


@dataclass
class TaskStatus:
    number: int
    name: str
    state: str  # passed | failed | untried
    points: float  # earned now
    max_points: int
    hints_used: int
    hints: int
    hint_cost: float
    checked_at: float | None
    first_passed_at: float | None
    answered: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ExerciseStatus:
    lab: str
    exercise: str
    title: str
    student: str
    params: dict[str, Any]
    started: float
    time_used_s: float
    time_limit_s: int | None
    points: float
    max_points: int
    tasks: list[TaskStatus]
    submissions: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "tasks"}, "tasks": [t.to_json() for t in self.tasks]}


@dataclass
class TaskOutcome:
    """One task checked: its verdict, each check's result, the folder keeping the evidence."""

    number: int
    name: str
    passed: bool
    results: list[CheckResult]
    run_dir: Path
    points: float
    hints_left: int

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "name": self.name, "passed": self.passed, "points": self.points, "hints_left": self.hints_left,
                "run_dir": str(self.run_dir), "checks": [r.to_json() for r in self.results]}


@dataclass
class Hint:
    task: str
    revealed: list[str]  # every hint revealed so far, in order (the last is new when `new`)
    hints: int
    cost: float  # per hint
    new: bool  # False: no hint was left to reveal

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Briefing:
    """What a student is told at the start: title, intro (markdown), tasks, how to get in."""

    lab: str
    title: str
    intro: str
    time_limit_s: int | None
    tasks: list[dict[str, Any]]  # number, name, points, text (markdown, rendered)
    reach: list[str]  # the nodes a student gets a terminal on
    access: list[str]  # the commands that open one

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- the lab -------------------------------------------------------------------------------------------------------


@dataclass
class ExerciseLab:
    """One exercise lab on this host, by its lab name."""

    lab: str
    model: ScenarioModel
    layout: Layout = field(default_factory=Layout)
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))

    @property
    def paths(self) -> LabPaths:
        return LabPaths(self.layout, self.lab)

    def state(self) -> ExerciseState:
        check_lab_name(self.lab)
        if not self.paths.state_file.exists():
            raise LabError(f"no lab named {self.lab!r} (see `vnetlab exercise status`)")
        return ExerciseState.load(self.paths.dir)

    def plan(self) -> Plan:
        """The lab's plan, re-made from its copy of the exercise (the student's params, the real MACs)."""
        return plan_from_state(self.paths, read_state(self.paths), self.model)

    # -- starting ----------------------------------------------------------------------------------

    @classmethod
    def start(
        cls, ref: str, model: ScenarioModel, *, student: str = DEFAULT_STUDENT, lab: str | None = None, layout: Layout | None = None,
        progress: Progress | None = None, scenario_dirs: list[Path] | None = None, accel: str = "auto", boot_timeout: float = 180.0,
        carry: ExerciseState | None = None, cold: bool = False,
    ) -> ExerciseLab:
        """Build the exercise's lab for `student` (named NAME-ID unless `lab`), apply its setup,
        and record the exercise in the lab's folder; the lab stays up. `carry`: the state of the lab
        this one replaces (reset): its hints, answers, submissions and start time go on. `cold`:
        boot its guests instead of restoring them from warm images (as `vnetlab run --cold`)."""
        try:
            check_student(student)
        except ParamError as exc:
            raise ExerciseInputError(str(exc)) from None
        layout = layout or Layout()
        progress = progress or Progress(quiet=True)
        path, scenario = load(ref, model, scenario_dirs or [], progress.detail, student)
        if getattr(scenario, "exercise", None) is None:
            raise ExerciseError(f"{path} is a scenario without an exercise: section (`vnetlab exercise list` shows the exercises)")
        name = lab or lab_name(scenario.name, student)
        digest = file_sha256(path)

        def record(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:  # under the lab's lock, after setup
            ex = plan.scenario.exercise
            tasks = [TaskRecord(t.name) for t in ex.tasks]
            if carry is not None:
                for rec in tasks:
                    old = next((o for o in carry.tasks if o.name == rec.name), None)
                    if old is not None:
                        rec.hints_used, rec.answer, rec.first_passed_at = old.hints_used, old.answer, old.first_passed_at
            state = ExerciseState(
                scenario.name, ex.title, str(path.resolve()), digest, student, name, dict(scenario.param_values),
                carry.started if carry else time.time(), duration_seconds(ex.time_limit), tasks,
                resets=[*carry.resets, time.time()] if carry else [], submissions=list(carry.submissions) if carry else [],
            )
            state.save(plan.lab_dir)

        options = Options(lab=name, accel=accel, boot_timeout=boot_timeout, layout=layout, scenario_dirs=scenario_dirs or [], student=student, after_up=record, cold=cold)
        LabRunner(options, progress, model).run(str(path), keep=True, check=False)
        return cls(name, model, layout, progress)

    def briefing(self) -> Briefing:
        """Title, intro, tasks (rendered for this student's lab) and the commands that get a student in."""
        state = self.state()
        plan = self.plan()
        ex = plan.scenario.exercise
        variables = plan_variables(plan)
        tasks = [{"number": k + 1, "name": t.name, "points": t.points, "text": render(t.text, variables)} for k, t in enumerate(ex.tasks)]
        reach = list(ex.students_reach) or [v.name for v in plan.scenario.vms]
        guests = {v.name for v in plan.vms}
        access = [f"vnetlab ssh {self.lab} {n}" for n in reach if n in guests] + [f"vnetlab console {self.lab} {n}" for n in reach if n in guests]
        access += [f"vnetlab exec {self.lab} {n} -- COMMAND" for n in reach if n not in guests]
        access.append(f"vnetlab shell {self.lab}")
        return Briefing(self.lab, ex.title, render(intro_text(plan.scenario), variables), state.time_limit_s, tasks, reach, access)

    # -- reading ---------------------------------------------------------------------------------

    def status(self) -> ExerciseStatus:
        """The tasks' states, points and hints, and the time used (no lock: the state is written atomically)."""
        state = self.state()
        ex = self.plan().scenario.exercise
        tasks = [
            TaskStatus(k + 1, t.name, r.state, task_points(t, r), t.points, r.hints_used, len(t.hints), t.hint_cost, r.checked_at, r.first_passed_at, r.answer is not None)
            for k, (t, r) in enumerate(zip(ex.tasks, state.tasks))
        ]
        return ExerciseStatus(
            self.lab, state.exercise, state.title, state.student, state.params, state.started, time.time() - state.started, state.time_limit_s,
            sum(t.points for t in tasks), sum(t.points for t in ex.tasks), tasks, state.submissions,
        )

    def task_index(self, task: str | int, plan: Plan | None = None) -> int:
        """A task by its number (1, 2, …) or its name; ExerciseError lists them otherwise."""
        names = [t.name for t in (plan or self.plan()).scenario.exercise.tasks]
        if isinstance(task, int) or task.isdigit():
            if 1 <= int(task) <= len(names):
                return int(task) - 1
        elif task in names:
            return names.index(task)
        raise ExerciseInputError(f"no task {task!r} in {self.lab}: " + "; ".join(f"{k + 1}. {n}" for k, n in enumerate(names)))

    # -- changing ------------------------------------------------------------------------------------

    def _locked(self, wait: Callable[[], None] | None):
        return lab_lock(self.lab, self.paths.state_file, wait=wait or (lambda: None))

    @contextmanager
    def _stoppable(self, what: str) -> Iterator[None]:
        """Ctrl-C and SIGTERM stop the call; what it had not saved yet is not saved (the lab stays up)."""
        try:
            with interrupts_as_exceptions():
                yield
        except Interrupted as exc:
            exc.consequence = f"{what} stopped: the exercise's state is as it was, and lab {self.lab} is still up"
            raise

    def _save(self, state: ExerciseState) -> None:
        with shielded():  # Ctrl-C never lands between the two halves of an atomic write
            state.save(self.paths.dir)

    def check(self, task: str | int | None = None, *, wait: Callable[[], None] | None = None) -> list[TaskOutcome]:
        """Run the checks of one task (or of every task, in order), graded on the wire; remember the
        verdicts. `wait` is called once if another command holds the lab (then waited for)."""
        check_lab_name(self.lab)
        with self._locked(wait), self._stoppable("the check"):
            state = self.state()
            lab_state = read_state(self.paths)
            if lab_state.phase != "up":
                raise LabError(f"lab {self.lab!r} is not up (phase: {lab_state.phase}); `vnetlab exercise reset {self.lab}` builds it again")
            plan = plan_from_state(self.paths, lab_state, self.model)
            indexes = [self.task_index(task, plan)] if task is not None else list(range(len(state.tasks)))
            text = (self.paths.dir / SCENARIO_COPY).read_text()
            sessions: dict[str, GuestSSH] = {}
            try:
                with self.progress.step("connect", "Connecting to guests"):
                    sessions = open_sessions(plan)
                run_root = new_run_dir(self.layout, self.lab)
                outcomes = []
                for k in indexes:
                    where = f"exercise.tasks[{k}].checks"
                    task_plan = select_checks(plan, where)
                    run_dir = run_root / f"task-{k + 1}"
                    run_dir.mkdir(mode=0o700)
                    keep_setting(run_dir, run_setting(task_plan, lab_state, self.layout, checks=where), text)
                    with self.progress.step("checks", f"Task {k + 1}: {len(task_plan.scenario.checks)} check(s)"):
                        results, _ = run_checks(task_plan, sessions, run_dir, wire=True, answer=state.tasks[k].answer)
                    outcomes.append((k, results, run_dir))
            finally:
                close_all(sessions)
            now = time.time()
            ex = plan.scenario.exercise
            answers = expected_answers(plan)
            done = []
            for k, full, run_dir in outcomes:
                results = hide_answers(full, answers)  # what the student sees; run_dir keeps the evidence whole
                rec = state.tasks[k]
                passed = all(r.ok for r in results)
                rec.state, rec.checked_at, rec.run, rec.checks = (PASSED if passed else FAILED), now, str(run_dir), [r.to_json() for r in results]
                if passed and rec.first_passed_at is None:
                    rec.first_passed_at = now
                task = ex.tasks[k]
                done.append(TaskOutcome(k + 1, task.name, passed, results, run_dir, task_points(task, rec), len(task.hints) - rec.hints_used))
            self._save(state)  # once, after every task was judged: an interruption before it changes nothing
        return done

    def hint(self, task: str | int, *, wait: Callable[[], None] | None = None) -> Hint:
        """Reveal the task's next hint (recorded: it may cost points); with none left, the ones revealed."""
        with self._locked(wait), self._stoppable("the hint"):
            state = self.state()
            plan = self.plan()
            k = self.task_index(task, plan)
            t, rec = plan.scenario.exercise.tasks[k], state.tasks[k]
            new = rec.hints_used < len(t.hints)
            if new:
                rec.hints_used += 1
                self._save(state)
            variables = plan_variables(plan)
            return Hint(t.name, [render(h, variables) for h in t.hints[: rec.hints_used]], len(t.hints), t.hint_cost, new)

    def answer(self, task: str | int, value: str, *, wait: Callable[[], None] | None = None) -> TaskOutcome:
        """Record the student's answer to a task, then check the task."""
        value = clean_answer(value)
        with self._locked(wait), self._stoppable("the answer"):
            state = self.state()
            k = self.task_index(task)
            state.tasks[k].answer = {"value": value, "at": time.time()}
            self._save(state)
        return self.check(k + 1, wait=wait)[0]

    def solve(self, task: str | int, *, wait: Callable[[], None] | None = None) -> None:
        """Apply a task's reference solution (its commands, its answer): for `exercise test` and teachers."""
        with self._locked(wait), self._stoppable("the solution"):
            plan = self.plan()
            k = self.task_index(task, plan)
            t = plan.scenario.exercise.tasks[k]
            commands = [s for s in t.solve if s.run is not None]
            sessions = open_sessions(plan, [vm for vm in plan.vms if any(s.node == vm.name for s in commands)])
            try:
                run_steps(plan, sessions, commands, f"the solution of task {k + 1} ({t.name})")
            finally:
                close_all(sessions)
            answers = [s.answer for s in t.solve if s.answer is not None]
            if answers:
                state = self.state()
                state.tasks[k].answer = {"value": render(answers[-1], plan_variables(plan)), "at": time.time()}
                self._save(state)

    def submit(self, out: Path | None = None, *, wait: Callable[[], None] | None = None) -> Path:
        """Write a result bundle (results, evidence, digests, signature) in a new folder under `out`
        (default: the layout's submissions folder); earlier bundles stay. Returns its folder."""
        with self._locked(wait), self._stoppable("the submission"):
            state = self.state()
            folder, _ = write_bundle(state, self.plan(), (self.paths.dir / SCENARIO_COPY).read_text(), out or self.layout.root / "submissions", self.layout)
            state.submissions.append({"at": time.time(), "bundle": str(folder)})
            self._save(state)
        return folder

    def reset(self) -> ExerciseLab:
        """The lab rebuilt from scratch for the same student: tasks untried again; hints, answers,
        submissions and the start time go on; booted again if it was booted (--cold)."""
        state = self.state()
        cold = read_state(self.paths).cold
        path = Path(state.file)
        if not path.is_file() or file_sha256(path) != state.sha256:
            raise ExerciseError(f"the exercise file {path} changed (or went) since the lab was built: `vnetlab down {self.lab}`, then start it again")
        LabRunner(Options(lab=self.lab, layout=self.layout), self.progress, self.model).down(self.lab)
        return ExerciseLab.start(str(path), self.model, student=state.student, lab=self.lab, layout=self.layout, progress=self.progress, carry=state, cold=cold)

    def down(self) -> DownReport:
        """End the exercise: the lab and its state go (submitted bundles stay)."""
        return LabRunner(Options(lab=self.lab, layout=self.layout), self.progress, self.model).down(self.lab)


def exercise_labs(layout: Layout | None = None) -> list[str]:
    """The exercise labs on this host (lab folders holding an exercise state)."""
    layout = layout or Layout()
    if not layout.labs.is_dir():
        return []
    return sorted(p.parent.name for p in layout.labs.glob(f"*/{STATE_FILE}"))
