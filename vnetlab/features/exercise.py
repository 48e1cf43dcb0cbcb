"""Exercises: a scenario whose `exercise:` section takes away what a student must do, then grades it.

    exercise:
      title: Two VMs on a bridge
      intro: intro.md                # or inline markdown
      time-limit: 45m                # recorded and shown, never enforced
      setup:                         # after the lab is up and configured: what the student redoes
        - {node: vm2, run: "ip addr flush dev eth0"}
      students-reach: [vm1, vm2]     # the nodes a student gets a terminal on (default: every VM)
      tasks:
        - name: address vm2
          text: "Give vm2 the address {{ vm2.eth0.address }} on eth0."
          points: 2
          hints: ["`ip addr add` takes an address with its prefix."]
          hint-cost: 0.5
          checks:                    # any kind of check, and `answer`
            - ping: {from: vm1, to: vm2, count: 3}
          solve:                     # the reference solution (`exercise test`, teachers)
            - {node: vm2, run: "ip addr add {{ vm2.eth0.address }} dev eth0"}

This module is the exercise's part of every step: its keys and rules (with the model's
lines), the setup as a configure step (so `up`, `--explain` and `exercise start` agree), the
`answer` kind of check, and the `vnetlab exercise …` commands; the engine that runs a
student's lab (state, checks graded on the wire, hints, bundles, grading, the proof that
every task is solvable) is vnetlab.exercise.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.checks.parse import excerpt
from vnetlab.exercise.content import DURATION, duration_seconds, intro_file
from vnetlab.exercise.steps import run_steps
from vnetlab.features.base import CliCommand, CliContext, Feature
from vnetlab.model.scenario import NAME, VM_NAME_MAX, ModelExtension, compose_class, decl
from vnetlab.model.templates import TemplateError, render, scenario_variables
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, feature_guests, node_names
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.plan.variables import plan_variables
from vnetlab.tools.explain import Section, guest_line

TASK_NAME = r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,58}[^\s\x00-\x1f\x7f])?"  # printable, no blank at either end
MAX_ANSWER = 200
DEFAULT_STEP_TIMEOUT = 60
NORMALIZE = ("exact", "mac", "ip", "int", "regex")


# -- the scenario keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupStep:
    node: str = spec("node the command runs on (a VM, container or host; a switch guest by its name)", pattern=NAME, max_length=VM_NAME_MAX)
    run: str = spec("shell command; must exit 0 (template variables allowed)")
    timeout: int = spec("seconds it may take", default=DEFAULT_STEP_TIMEOUT, minimum=1, maximum=3600)


@dataclass(frozen=True)
class SolveStep:
    """One step of the reference solution: a command on a node, or the answer to give."""

    node: str | None = spec("with run: the node the command runs on", default=None, pattern=NAME, max_length=VM_NAME_MAX)
    run: str | None = spec("shell command; must exit 0 (template variables allowed)", default=None)
    answer: str | None = spec("the answer to give to the task's answer check (template variables allowed)", default=None, max_length=MAX_ANSWER)
    timeout: int = spec("seconds a command may take", default=DEFAULT_STEP_TIMEOUT, minimum=1, maximum=3600)

    def check_shape(self) -> list[str]:
        if (self.run is None) == (self.answer is None):
            return ["expected exactly one of: run (with node), answer"]
        if self.run is not None and self.node is None:
            return ["run needs node: the node the command runs on"]
        if self.answer is not None and self.node is not None:
            return ["an answer is given to the task, not run on a node: drop node"]
        return []


@dataclass(frozen=True)
class AnswerCheck:
    """The student's answer to the task (`vnetlab exercise answer TASK VALUE`), compared with the expected one."""

    expect: str = spec("the right answer (template variables allowed, e.g. {{ vm2.eth0.mac }}); never shown to the student", max_length=1000)
    normalize: Literal["exact", "mac", "ip", "int", "regex"] = spec(
        "how answers compare: exact (blanks at the ends ignored), mac (any MAC notation), ip (an address, with prefix when expect has one), int, regex (expect is a pattern the whole answer must match)",
        default="exact",
    )


def _sections(check: type) -> tuple[Any, ...]:
    """`exercise:`, whose tasks hold checks of every kind the model composes."""
    task = compose_class("ExerciseTask", [
        decl("name", str, spec("unique within the exercise; `exercise check NAME` (or its number) picks it", pattern=TASK_NAME, max_length=60)),
        decl("text", str, spec("what the student must do, markdown (template variables allowed)", default="", max_length=20000)),
        decl("points", int, spec("what the task is worth", default=1, minimum=0, maximum=1000)),
        decl("hints", list[str], spec("revealed one at a time by `exercise hint` (template variables allowed)", default_factory=list)),
        decl("hint_cost", float, spec("points taken off a passed task for each hint revealed", key="hint-cost", default=0.0, minimum=0, maximum=1000)),
        decl("checks", list[check], spec("what must hold once the task is done: any kind of check, and answer (at least one: a task without checks could not be graded)", min_items=1)),
        decl("solve", list[SolveStep], spec("the reference solution, run by `exercise test` (and teachers)", default_factory=list)),
    ], doc="One task of an exercise: its text, points, hints, checks and reference solution.")
    exercise = compose_class("Exercise", [
        decl("title", str, spec("shown at the top of `exercise start` and `status`", max_length=120)),
        decl("intro", str, spec("markdown shown at start, inline or a file (one line ending in .md, relative to the scenario)", default="", max_length=20000)),
        decl("time_limit", str | None, spec("e.g. 45m, 1h30m: recorded and shown, the lab is not destroyed at the limit", key="time-limit", default=None, pattern=DURATION, max_length=16)),
        decl("setup", list[SetupStep], spec("commands run once the lab is up, before the student starts: they take away what the student must do", default_factory=list)),
        decl("students_reach", list[str], spec("nodes a student gets a terminal on (default: every VM)", key="students-reach", default_factory=list)),
        decl("tasks", list[task], spec("what the student must do, in order", min_items=1)),
    ], doc="The student's part: the lab is built as usual, then setup takes away what the tasks ask for.")
    return (decl("exercise", exercise | None, spec("make the scenario an exercise: setup, tasks graded by checks (see the teachers' guide)", default=None)),)


# -- rules ----------------------------------------------------------------------------------------------


def _template(r: Rules, path: str, text: str | None, variables: dict[str, Any]) -> str | None:
    if text is None:
        return None
    try:
        return render(text, variables)
    except TemplateError as exc:
        r.add(path, str(exc))
        return None


def _node(r: Rules, path: str, name: str, known: set[str]) -> None:
    if name not in known:
        r.add(path, f"no {r.node_words()} named {name!r}" + (f" (or switch guest: {', '.join(sorted(set(feature_guests(r.scenario))))})" if feature_guests(r.scenario) else ""))


def _validate(r: Rules) -> None:
    ex = r.scenario.exercise
    if ex is None:
        return
    known = node_names(r.scenario) | set(feature_guests(r.scenario))
    variables = scenario_variables(r.scenario)
    base = Path(r.file).resolve().parent
    path = intro_file(r.scenario)
    if path is not None:
        try:
            path.relative_to(base)
            if not path.is_file():
                r.add("exercise.intro", f"no file {path} (an intro of one line ending in .md is a file, relative to the scenario)")
        except ValueError:
            r.add("exercise.intro", f"{ex.intro.strip()!r} leads outside the scenario's folder {base}")
    if ex.time_limit is not None and duration_seconds(ex.time_limit) == 0:
        r.add("exercise.time-limit", "a time limit of no time: give e.g. 45m")
    for k, step in enumerate(ex.setup):
        _node(r, f"exercise.setup[{k}].node", step.node, known)
        _template(r, f"exercise.setup[{k}].run", step.run, variables)
    for k, name in enumerate(ex.students_reach):
        _node(r, f"exercise.students-reach[{k}]", name, known)
    seen: dict[str, int] = {}
    for i, task in enumerate(ex.tasks):
        path = f"exercise.tasks[{i}]"
        if task.name in seen:
            r.add(f"{path}.name", f"duplicate task name {task.name!r} (tasks[{seen[task.name]}] has it)")
        seen.setdefault(task.name, i)
        if task.name.isdigit():
            r.add(f"{path}.name", f"{task.name!r} reads as a task number: name it with words")
        if task.hint_cost > task.points:
            r.add(f"{path}.hint-cost", f"a hint costs {task.hint_cost:g} but the task is worth {task.points}: at most its points")
        _template(r, f"{path}.text", task.text, variables)
        for h, hint in enumerate(task.hints):
            _template(r, f"{path}.hints[{h}]", hint, variables)
        answers = [c for c in task.checks if c.kind == "answer"]
        for k, step in enumerate(task.solve):
            if step.node is not None:
                _node(r, f"{path}.solve[{k}].node", step.node, known)
            _template(r, f"{path}.solve[{k}].run", step.run, variables)
            _template(r, f"{path}.solve[{k}].answer", step.answer, variables)
            if step.answer is not None and not answers:
                r.add(f"{path}.solve[{k}].answer", f"task {task.name!r} has no answer check to give it to")


def _validate_answer(r: Rules, check: AnswerCheck, path: str) -> None:
    if not path.startswith("exercise.tasks["):
        r.add(path, "an answer check grades a student's answer: it belongs in an exercise task (exercise.tasks[].checks)")
        return
    expected = _template(r, f"{path}.expect", check.expect, scenario_variables(r.scenario))
    if expected is None:
        return
    if check.normalize == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            r.add(f"{path}.expect", f"not a regular expression: {exc}")
    elif "{{" not in check.expect:  # a template's value is known once the lab is planned (MACs)
        try:
            normalized(expected, check.normalize)
        except ValueError as exc:
            r.add(f"{path}.expect", f"{expected!r} is not an answer of its kind: {exc}")


MODEL = ModelExtension(
    checks=(decl("answer", AnswerCheck | None, spec("the student's answer to the task, compared with the expected one (exercises only)", default=None)),),
    check_validators={"answer": _validate_answer},
    validate=_validate,
    sections_with_checks=_sections,
    check_lists=lambda scenario: [(f"exercise.tasks[{i}].checks", t.checks) for i, t in enumerate(scenario.exercise.tasks)] if scenario.exercise else [],
)


# -- the answer check ----------------------------------------------------------------------------------------


def normalized(value: str, how: str) -> str:
    """An answer as it is compared (ValueError when it is not one of its kind)."""
    text = value.strip()
    if how == "mac":
        digits = re.sub(r"[:.\-\s]", "", text).lower()
        if not re.fullmatch(r"[0-9a-f]{12}", digits):
            raise ValueError(f"not a MAC address: {text!r}")
        return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    if how == "ip":
        return str(ipaddress.ip_interface(text)) if "/" in text else str(ipaddress.ip_address(text))
    if how == "int":
        if not re.fullmatch(r"[-+]?[0-9]{1,18}", text):
            raise ValueError(f"not an integer: {text!r}")
        return str(int(text))
    return text


def answer_matches(answer: str, expect: str, how: str) -> bool:
    if how == "regex":
        return re.fullmatch(expect, answer.strip()) is not None
    if how == "ip" and "/" not in expect:  # an address asked: a prefix given with it is no error
        answer = answer.strip().split("/")[0]
    return normalized(answer, how) == normalized(expect, how)


def collect_answer(ctx: CheckContext, check: AnswerCheck) -> Evidence:
    """The answer as the student gave it (read from the exercise's state, not from any guest)."""
    given = ctx.answer or {}
    return Evidence({"answer": given.get("value"), "at": given.get("at")})


def judge_answer(plan: Plan, check: AnswerCheck, evidence: Evidence) -> CheckResult:
    """Right or not; the expected answer is never in the detail (the student reads it)."""
    answer = evidence.data.get("answer")
    name = f"answer ({check.normalize})"
    if not isinstance(answer, str):
        return CheckResult(name, "answer", False, "no answer yet: `vnetlab exercise answer TASK VALUE` gives one")
    shown = excerpt(answer, MAX_ANSWER)
    expect = render(check.expect, plan_variables(plan))
    try:
        ok = answer_matches(answer, expect, check.normalize)
    except ValueError as exc:
        return CheckResult(name, "answer", False, f"answered '{shown}': {exc}", data={"answer": shown})
    return CheckResult(name, "answer", ok, f"answered '{shown}': " + ("right" if ok else "not the expected answer"), data={"answer": shown})  # excerpt shows escapes once: no repr on top


ANSWER = CheckKind(collect_answer, judge_answer)


# -- setup: a configure step ---------------------------------------------------------------------------------


def setup_lines(plan: Plan) -> list[str]:
    variables = plan_variables(plan)
    lines = []
    for step in plan.scenario.exercise.setup:
        try:
            command = render(step.run, variables)
        except TemplateError as exc:
            command = f"{step.run}    # {exc}"
        lines.append(guest_line(step.node, command))
    return lines


# -- the feature ---------------------------------------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    from vnetlab.exercise.arguments import add_arguments

    add_arguments(parser)


def _run(args: argparse.Namespace, ctx: CliContext) -> int:
    from vnetlab.exercise.terminal import run_command

    return run_command(args, ctx)


EXERCISE_COMMAND = CliCommand(
    "exercise",
    "teaching labs where the student does the work: start, check, hints, submit; test and grade for teachers",
    "Exercises are scenarios with an `exercise:` section. A student starts one (the lab is built, then setup takes away what the "
    "tasks ask for), works in the guests, and checks the tasks: every check is graded on the wire where it can be (vnetlab's own "
    "captures must see the traffic). `submit` writes a bundle of results and evidence; a teacher's `grade` judges the bundles again "
    "from that evidence. `test` proves an exercise: every task fails after setup and passes after its solution.",
    _arguments,
    _run,
)


class Exercise(Feature):
    name = "exercise"
    model = MODEL
    check_kinds = {"answer": ANSWER}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        ex = ctx.scenario.exercise
        if ex is None:
            return None
        note = f"exercise {ctx.scenario.name!r}: `vnetlab exercise start {ctx.scenario.name}` gives it to a student, `vnetlab exercise test {ctx.scenario.name}` proves it"
        return PlanPart(data=ex, notes=(note,))

    def configure_label(self, plan: Plan) -> str | None:
        ex = plan.part("exercise", None)
        return f"Exercise setup: {len(ex.setup)} step(s) on {', '.join(dict.fromkeys(s.node for s in ex.setup))}" if ex is not None and ex.setup else None

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        logs = run_steps(plan, sessions, plan.scenario.exercise.setup, "exercise setup")
        (run_dir / "exercise-setup.log").write_text("".join(logs))

    def explain(self, plan: Plan) -> list[Section]:
        ex = plan.part("exercise", None)
        if ex is None or not ex.setup:
            return []
        return [Section("Exercise setup (takes away what the student must do)", tuple(setup_lines(plan)), stage="configure")]

    def cli_commands(self) -> list[CliCommand]:
        return [EXERCISE_COMMAND]
