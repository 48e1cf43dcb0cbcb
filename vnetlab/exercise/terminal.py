"""`vnetlab exercise …` on a terminal: the arguments, and the engine's answers as tables and text.

Added to the command line by the exercise feature (vnetlab.features.exercise) through the
registry. A command about one lab takes the lab as an optional first argument: without it, the
one exercise lab on this host is meant (with several, it asks which).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vnetlab.exercise.grading import grade
from vnetlab.exercise.lab import ExerciseLab, TaskOutcome, exercise_labs
from vnetlab.exercise.proof import prove
from vnetlab.exercise.state import ExerciseError, ExerciseInputError
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.model.validate import load_scenario
from vnetlab.paths import Layout, find_scenarios, search_path
from vnetlab.printable import printable, printable_json
from vnetlab.run.progress import Progress

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
MARKS = {"passed": "[green]✓ passed[/]", "failed": "[red]✗ failed[/]", "untried": "[dim]· not tried[/]"}


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
    from rich.markdown import Markdown  # ~50 ms (markdown-it, pygments): only for a briefing, not every command line

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
