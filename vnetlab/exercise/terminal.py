"""`vnetlab exercise …` on a terminal: the arguments, and the engine's answers as tables and text.

Added to the command line by the exercise feature (vnetlab.features.exercise) through the
registry. A command about one lab takes the lab as an optional first argument: without it, the
one exercise lab on this host is meant (with several, it asks which).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vnetlab.exercise.grading import grade
from vnetlab.exercise.lab import ExerciseLab, TaskOutcome, exercise_labs
from vnetlab.exercise.proof import prove
from vnetlab.exercise.state import ExerciseError, ExerciseInputError
from vnetlab.model.params import DEFAULT_STUDENT
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.model.validate import load_scenario
from vnetlab.paths import Layout, find_scenarios, search_path
from vnetlab.printable import printable, printable_json
from vnetlab.run.progress import Progress

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
MARKS = {"passed": "[green]✓ passed[/]", "failed": "[red]✗ failed[/]", "untried": "[dim]· not tried[/]"}


def _scenarios(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for exercises by name in DIR first (repeatable; then $VNETLAB_PATH, then the built-in ones)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="exercise_command", metavar="SUBCOMMAND", required=True)
    lst = sub.add_parser("list", help="the exercises of the search path: title, tasks, points, time limit")
    _scenarios(lst)

    start = sub.add_parser("start", help="build an exercise's lab for a student and show what to do", description="Build the lab (named NAME-ID unless --name), apply the exercise's setup, and print its title, intro, tasks and how to get in. The lab stays up until `vnetlab down LAB` (which ends the exercise).")
    start.add_argument("exercise", metavar="NAME|FILE", help="an exercise's name (see `vnetlab exercise list`) or its YAML file")
    start.add_argument("--student", default=DEFAULT_STUDENT, metavar="ID", help=f"the student's id: their params are drawn from it (default {DEFAULT_STUDENT})")
    start.add_argument("--name", metavar="LAB", help="lab name (default: NAME-ID)")
    start.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="kvm, tcg, or auto: probe whether KVM really boots a guest (default)")
    start.add_argument("--boot-timeout", type=float, default=180.0, metavar="S", help="seconds a guest may take to become reachable (default 180)")
    start.add_argument("--cold", action="store_true", help="boot the guests instead of restoring them from warm images (as `vnetlab run --cold`); `reset` boots them again")
    start.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _scenarios(start)

    status = sub.add_parser("status", help="the tasks: passed, failed or not tried, points, hints used, time used")
    status.add_argument("lab", nargs="?", metavar="LAB")
    status.add_argument("--json", action="store_true", help="the same as JSON (each task with name, state passed|failed|untried, points)")

    check = sub.add_parser("check", help="check the tasks now (or one), graded on the wire", description="Run the checks of every task (or of TASK: its number or name) on the live lab. vnetlab's own captures must see the traffic of every check that has a wire signature. Passing is remembered with the time; a task can fail again later. Waits for another command working on the lab. Exit 0 iff every task checked passed.")
    check.add_argument("args", nargs="*", metavar="[LAB] [TASK]")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    hint = sub.add_parser("hint", help="reveal a task's next hint (recorded; it may cost points)")
    hint.add_argument("args", nargs="+", metavar="[LAB] TASK")

    answer = sub.add_parser("answer", help="answer a task's question, then check the task")
    answer.add_argument("args", nargs="+", metavar="[LAB] TASK VALUE")
    answer.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    submit = sub.add_parser("submit", help="write a result bundle (results, evidence, digests) and print its folder", description="Write result.json, junit.xml and the evidence of each task's last check (pcaps, outputs, their SHA-256) into a new folder; submitting again keeps the earlier bundles.")
    submit.add_argument("lab", nargs="?", metavar="LAB")
    submit.add_argument("--out", type=Path, metavar="DIR", help="where the bundle's folder goes (default /var/lib/vnetlab/submissions)")

    reset = sub.add_parser("reset", help="rebuild the lab from scratch for the same student", description="Tear the lab down and build it again, with setup, for the same student and exercise file. The tasks are untried again; hints used, answers, submissions and the start time go on.")
    reset.add_argument("lab", nargs="?", metavar="LAB")
    reset.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    test = sub.add_parser("test", help="prove an exercise: each task fails after setup and passes after its solution", description="On a lab of its own: for every task in order, its checks must FAIL before its solution and PASS after it; at the end every task must pass. Exit 0 iff all hold.")
    test.add_argument("exercise", metavar="NAME|FILE")
    test.add_argument("--student", default=DEFAULT_STUDENT, metavar="ID", help=f"prove it with this student's params (default {DEFAULT_STUDENT})")
    test.add_argument("--name", metavar="LAB", help="lab name (default NAME-<random>)")
    test.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML here: one testcase per task and phase")
    test.add_argument("--json", action="store_true", help="print the proof as JSON")
    test.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    test.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    test.add_argument("--cold", action="store_true", help="boot the guests instead of restoring them from warm images (as `vnetlab run --cold`)")
    test.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _scenarios(test)

    grade_ = sub.add_parser("grade", help="grade result bundles from their evidence (teachers)", description="For each bundle (or folder of bundles): recompute the params from the student id, judge every task again from the bundle's evidence with the teacher's exercise file, verify every digest and the signature, and print a gradebook. `mismatch` lists where the bundle's claims and the evidence disagree; `from guests` the checks judged on a guest's output alone. Exit 1 when a bundle shows a mismatch or cannot be graded.")
    grade_.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE")
    grade_.add_argument("--csv", type=Path, metavar="FILE", help="also write the gradebook as CSV")
    grade_.add_argument("--exercise", type=Path, metavar="FILE", help="the teacher's exercise file (default: by the bundles' exercise name in the search path)")
    grade_.add_argument("--json", action="store_true", help="print the gradebook as JSON")
    _scenarios(grade_)


# -- which lab ------------------------------------------------------------------------------------------------------


def pick_lab(args: list[str], after: int, layout: Layout) -> tuple[str, list[str]]:
    """(the lab, the rest) of `[LAB] REST…`, REST being `after` values: one more in front names the
    lab; without it, the one exercise lab on this host."""
    labs = exercise_labs(layout)
    if len(args) > after:
        if args[0] not in labs:
            raise ExerciseError(f"no exercise lab named {args[0]!r}" + (f" (exercise labs: {', '.join(labs)})" if labs else ""))
        return args[0], args[1:]
    if not labs:
        raise ExerciseError("no exercise lab on this host: `vnetlab exercise start NAME` builds one")
    if len(labs) > 1:
        raise ExerciseError(f"several exercise labs on this host ({', '.join(labs)}): name one first")
    return labs[0], args


def _progress(ctx: Any, args: argparse.Namespace) -> Progress:
    return Progress(ctx.err, quiet=getattr(args, "quiet", False))


def _waiting(ctx: Any, lab: str):
    return lambda: ctx.err.print(Text(f"waiting: another command is working on lab {lab} (Ctrl-C stops waiting)"), soft_wrap=True)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# -- what is printed ----------------------------------------------------------------------------------------------------


def _text_width(console: Any) -> int:
    """Markdown is laid out to the width it is given: a terminal's, else a readable one (a pipe's console is very wide)."""
    return min(console.width, 100)


def print_briefing(ctx: Any, xlab: ExerciseLab) -> None:
    b = xlab.briefing()
    out = ctx.out
    out.print(Text(b.title, style="bold"))
    if b.intro.strip():
        out.print(Markdown(b.intro), width=_text_width(out))
    if b.time_limit_s:
        out.print(Text(f"Time limit: {_minutes(b.time_limit_s)} (shown in `vnetlab exercise status`; the lab stays up after it)"))
    for t in b.tasks:
        out.print(Text(f"\nTask {t['number']}: {t['name']} ({t['points']} point{'s' if t['points'] != 1 else ''})", style="bold"))
        if t["text"].strip():
            out.print(Markdown(t["text"]), width=_text_width(out))
    out.print(Text("\nGet in:", style="bold"))
    for line in b.access:
        out.print(Text(f"  {line}"), soft_wrap=True)
    out.print(Text(f"\nThen: vnetlab exercise check [TASK] · hint TASK · answer TASK VALUE · status · submit (lab {b.lab})"), soft_wrap=True)


def print_outcomes(ctx: Any, lab: str, outcomes: list[TaskOutcome]) -> None:
    for o in outcomes:
        table = Table(title=f"Task {o.number}: {o.name}", title_justify="left")
        table.add_column("", width=2)
        table.add_column("check")
        table.add_column("detail", overflow="fold")
        for r in o.results:
            table.add_row("[green]✓[/]" if r.ok else "[red]✗[/]", Text(printable(r.name)), Text(printable(r.detail)))  # guest text: never markup, never escape sequences
        ctx.out.print(table)
        if o.passed:
            ctx.out.print(f"[green]✓ passed[/] — {o.points:g} point(s)")
        else:
            more = f"; a hint is available: vnetlab exercise hint {lab} {o.number}" if o.hints_left > 0 else ""
            ctx.out.print(Text.assemble(("✗ failed", "red"), more), soft_wrap=True)


def print_status(ctx: Any, xlab: ExerciseLab) -> None:
    s = xlab.status()
    limit = f" of {_minutes(s.time_limit_s)}" if s.time_limit_s else ""
    over = bool(s.time_limit_s) and s.time_used_s > s.time_limit_s
    ctx.out.print(Text(f"{s.title} — lab {s.lab}, student {s.student}: {s.points:g}/{s.max_points} points, time used {_minutes(s.time_used_s)}{limit}" + (" (over the limit)" if over else "")), soft_wrap=True)
    table = Table(title_justify="left")
    for column in ("#", "task", "state", "points", "hints", "last check"):
        table.add_column(column)
    now = time.time()
    for t in s.tasks:
        last = f"{_minutes(now - t.checked_at)} ago" if t.checked_at else ""
        table.add_row(str(t.number), Text(t.name), MARKS[t.state], f"{t.points:g}/{t.max_points}", f"{t.hints_used}/{t.hints}" + (f" (−{t.hint_cost:g} each)" if t.hints and t.hint_cost else ""), last)
    ctx.out.print(table)
    for sub in s.submissions:
        ctx.out.print(Text(f"submitted {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(sub['at']))}: {sub['bundle']}"), soft_wrap=True)


# -- the subcommands -----------------------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace, ctx: Any) -> int:
    layout = Layout()
    command = args.exercise_command
    if command == "list":
        return _list(args, ctx)
    if command == "start":
        xlab = ExerciseLab.start(args.exercise, ctx.model, student=args.student, lab=args.name, layout=layout, progress=_progress(ctx, args), scenario_dirs=args.scenarios, accel=args.accel, boot_timeout=args.boot_timeout, cold=args.cold)
        print_briefing(ctx, xlab)
        return EXIT_OK
    if command == "test":
        return _test(args, ctx, layout)
    if command == "grade":
        return _grade(args, ctx, layout)
    if command in ("status", "submit", "reset"):
        lab, _ = pick_lab([args.lab] if args.lab else [], 0, layout)
        xlab = ExerciseLab(lab, ctx.model, layout, _progress(ctx, args))
        if command == "status":
            if args.json:
                ctx.write_exact(printable_json(xlab.status().to_json(), indent=2) + "\n")
            else:
                print_status(ctx, xlab)
            return EXIT_OK
        if command == "submit":
            folder = xlab.submit(args.out, wait=_waiting(ctx, lab))
            ctx.out.print(Text(str(folder)), soft_wrap=True)
            return EXIT_OK
        print_briefing(ctx, xlab.reset())
        return EXIT_OK
    if command == "check":
        if len(args.args) > 2:
            raise ExerciseInputError("check takes at most a lab and a task: vnetlab exercise check [LAB] [TASK]")
        names_a_lab = len(args.args) == 2 or (args.args and args.args[0] in exercise_labs(layout))
        lab, rest = pick_lab(args.args, len(args.args) - 1 if names_a_lab else len(args.args), layout)
        xlab = ExerciseLab(lab, ctx.model, layout, _progress(ctx, args))
        outcomes = xlab.check(rest[0] if rest else None, wait=_waiting(ctx, lab))
        print_outcomes(ctx, lab, outcomes)
        return EXIT_OK if all(o.passed for o in outcomes) else EXIT_FAIL
    if command == "hint":
        lab, rest = _lab_and(args.args, 1, layout, "hint [LAB] TASK")
        hint = ExerciseLab(lab, ctx.model, layout).hint(rest[0], wait=_waiting(ctx, lab))
        if not hint.hints:
            ctx.out.print(Text(f"task {hint.task!r} has no hints"))
            return EXIT_OK
        for n, text in enumerate(hint.revealed, 1):
            new = hint.new and n == len(hint.revealed)
            ctx.out.print(Text.assemble((f"Hint {n}/{hint.hints}{' (new)' if new else ''}: ", "bold"), text), soft_wrap=True)
        if not hint.new:
            ctx.out.print(Text(f"no more hints: all {hint.hints} are shown above"))
        elif hint.cost:
            ctx.out.print(Text(f"each hint costs {hint.cost:g} point(s) of the task once it passes"))
        return EXIT_OK
    if command == "answer":
        lab, rest = _lab_and(args.args, 2, layout, "answer [LAB] TASK VALUE")
        outcome = ExerciseLab(lab, ctx.model, layout, _progress(ctx, args)).answer(rest[0], rest[1], wait=_waiting(ctx, lab))
        print_outcomes(ctx, lab, [outcome])
        return EXIT_OK if outcome.passed else EXIT_FAIL
    raise ExerciseError(f"unknown exercise command {command!r}")


def _lab_and(args: list[str], count: int, layout: Layout, usage: str) -> tuple[str, list[str]]:
    if len(args) not in (count, count + 1):
        raise ExerciseInputError(f"usage: vnetlab exercise {usage}")
    return pick_lab(args, count, layout)


def _list(args: argparse.Namespace, ctx: Any) -> int:
    table = Table(title="Exercises", title_justify="left")
    for column in ("name", "title", "tasks", "points", "time limit", "params", "where"):
        table.add_column(column)
    for found in find_scenarios(search_path(args.scenarios)):
        try:
            scenario = load_scenario(found.path, ctx.model)
        except ValidationError:
            continue  # `vnetlab list` says what is wrong with it
        ex = getattr(scenario, "exercise", None)
        if ex is None:
            continue
        table.add_row(
            Text(found.name), Text(ex.title), str(len(ex.tasks)), str(sum(t.points for t in ex.tasks)), ex.time_limit or "",
            ", ".join(scenario.params) or "", "built in" if found.builtin else Text(str(found.path)),
        )
    ctx.out.print(table)
    return EXIT_OK


def _test(args: argparse.Namespace, ctx: Any, layout: Layout) -> int:
    proof = prove(args.exercise, ctx.model, student=args.student, lab=args.name, layout=layout, progress=_progress(ctx, args), scenario_dirs=args.scenarios, accel=args.accel, keep=args.keep, cold=args.cold)
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(proof.junit(), encoding="utf-8")
    if args.json:
        ctx.write_exact(printable_json(proof.to_json(), indent=2) + "\n")
        return EXIT_OK if proof.ok else EXIT_FAIL
    table = Table(title=f"Proof of {proof.exercise} (lab {proof.lab}, student {proof.student})", title_justify="left")
    for column in ("", "task", "phase", "detail"):
        table.add_column(column, overflow="fold" if column == "detail" else None)
    for p in proof.phases:
        table.add_row("[green]✓[/]" if p.ok else "[red]✗[/]", Text(p.task), p.phase, Text(printable(p.detail)))
    ctx.out.print(table)
    if proof.error:
        ctx.out.print(f"[red]error:[/] {escape(printable(proof.error))}", soft_wrap=True)
    ctx.out.print(f"{'[bold green]PASS[/]' if proof.ok else '[bold red]FAIL[/]'} {escape(proof.exercise)}: {sum(p.ok for p in proof.phases)}/{len(proof.phases)} phases hold")
    return EXIT_OK if proof.ok else EXIT_FAIL


def _grade(args: argparse.Namespace, ctx: Any, layout: Layout) -> int:
    book = grade(args.bundles, ctx.model, exercise=args.exercise, scenario_dirs=args.scenarios, layout=layout)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        args.csv.write_text(book.csv(), encoding="utf-8")
    if args.json:
        ctx.write_exact(printable_json(book.to_json(), indent=2) + "\n")
    else:
        header, rows = book.table()
        table = Table(title="Gradebook", title_justify="left")
        for column in header:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        ctx.out.print(table)
        if args.csv:
            ctx.err.print(Text(f"wrote {args.csv}"), soft_wrap=True)
    bad = any(b.mismatch or b.error for b in book.rows)
    return EXIT_FAIL if bad else EXIT_OK
