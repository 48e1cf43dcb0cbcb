"""The exercise engine's API (vnetlab.exercise.lab.ExerciseLab) as the classroom uses it.

`read_seat(lab)` is what a page shows of a seat: the exercise's title, intro and tasks rendered
with the student's values, each task's state, points, the hints revealed so far, its last check's
details and evidence pcaps, and the guests the exercise opens to students. It only reads (the
engine writes its state atomically), so the server calls it in a thread.

Everything that changes a lab runs here as its own process, `python -m vnetlab.classroom.ops OP
LAB …`, which prints its result as one JSON line: in the main thread of its own process the
engine's Ctrl-C/SIGTERM handling works as on the command line, a hostile guest's output is bounded
away from the server, and a server killed with `kill -9` leaves the operation to finish (the lab's
lock and the exercise state stay the engine's business).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vnetlab.paths import Layout

PCAP_MAX = 16  # evidence files listed per task


def _exercise_lab(lab: str, layout: Layout | None = None):
    from vnetlab.compose import registry
    from vnetlab.exercise.lab import ExerciseLab

    return ExerciseLab(lab, registry(), layout or Layout())


def read_seat(lab: str, layout: Layout | None = None) -> dict[str, Any]:
    from vnetlab.exercise.content import intro_text
    from vnetlab.model.templates import render
    from vnetlab.plan.variables import plan_variables

    ex_lab = _exercise_lab(lab, layout)
    state = ex_lab.state()
    status = ex_lab.status()
    plan = ex_lab.plan()
    ex = plan.scenario.exercise
    variables = plan_variables(plan)
    guests = {vm.name for vm in plan.vms}
    reach = [n for n in (list(ex.students_reach) or [v.name for v in plan.scenario.vms]) if n in guests]
    tasks = []
    for task, now, record in zip(ex.tasks, status.tasks, state.tasks):
        run = Path(record.run) if record.run else None
        pcaps = sorted(run.rglob("*.pcap"))[:PCAP_MAX] if run is not None and run.is_dir() else []
        tasks.append({
            "name": task.name,
            "text": render(task.text, variables),
            "points_max": task.points,
            "earned": now.points,
            "state": now.state,
            "hints_used": now.hints_used,
            "hints_total": now.hints,
            "hint_cost": now.hint_cost,
            "hints": [render(h, variables) for h in task.hints[: record.hints_used]],
            "answer": any(getattr(c, "kind", None) == "answer" for c in task.checks),
            "answered": now.answered,
            "checked_at": now.checked_at,
            "details": [{"name": c.get("name", ""), "ok": bool(c.get("ok")), "detail": str(c.get("detail", ""))} for c in record.checks if isinstance(c, dict)],
            "evidence": [str(p) for p in pcaps],
        })
    return {
        "exercise": {"name": status.exercise, "title": status.title, "intro": render(intro_text(plan.scenario), variables), "time_limit": ex.time_limit, "students_reach": reach},
        "student": status.student,
        "started": status.started,
        "time_used": status.time_used_s,
        "time_limit_s": status.time_limit_s,
        "points": status.points,
        "max_points": status.max_points,
        "tasks": tasks,
        "submissions": status.submissions,
    }


# -- operations, each in its own process ------------------------------------------------------


def _run(op: str, args: argparse.Namespace) -> Any:
    from vnetlab.compose import registry
    from vnetlab.exercise.lab import ExerciseLab
    from vnetlab.run.progress import Progress

    layout = Layout(args.root)
    progress = Progress(quiet=False)  # its step lines on stderr are the seat's progress on the pages
    if op == "grade":
        return _grade(args)
    if op == "start":
        ExerciseLab.start(args.exercise, registry(), student=args.student, lab=args.lab, layout=layout, progress=progress, cold=args.cold)
        return {"lab": args.lab}
    ex_lab = ExerciseLab(args.lab, registry(), layout, progress)
    if op == "check":
        outcomes = ex_lab.check(args.task)
        return {"passed": all(o.passed for o in outcomes), "tasks": [{"name": o.name, "passed": o.passed, "checks": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in o.results]} for o in outcomes]}
    if op == "hint":
        hint = ex_lab.hint(args.task)
        return {"hint": hint.revealed[-1] if hint.revealed else "", "new": hint.new, "left": hint.hints - len(hint.revealed)}
    if op == "answer":
        outcome = ex_lab.answer(args.task, args.value)
        return {"passed": outcome.passed, "tasks": [{"name": outcome.name, "passed": outcome.passed, "checks": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in outcome.results]}]}
    if op == "reset":
        ex_lab.reset()
        return {"lab": args.lab}
    if op == "submit":
        return {"bundle": str(ex_lab.submit(args.out))}
    raise SystemExit(f"unknown operation {op!r}")


def _grade(args: argparse.Namespace) -> dict[str, Any]:
    """The gradebook of the bundles, judged again from their evidence against the teacher's file."""
    from vnetlab.compose import registry
    from vnetlab.exercise.grading import grade
    from vnetlab.files import write_private

    book = grade(args.bundles, registry(), exercise=args.exercise, layout=Layout(args.root))
    write_private(args.csv, book.csv().encode())
    return {"rows": len(book.rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vnetlab.classroom.ops", description="One exercise operation for the classroom server; prints its result as JSON.")
    p.add_argument("--root", type=Path, default=Layout().root)
    sub = p.add_subparsers(dest="op", required=True)
    start = sub.add_parser("start")
    start.add_argument("--cold", action="store_true")
    start.add_argument("exercise")
    start.add_argument("student")
    start.add_argument("lab")
    for name in ("check", "hint"):
        sp = sub.add_parser(name)
        sp.add_argument("lab")
        sp.add_argument("task", nargs="?" if name == "check" else None)
    answer = sub.add_parser("answer")
    answer.add_argument("lab")
    answer.add_argument("task")
    answer.add_argument("value")
    sub.add_parser("reset").add_argument("lab")
    submit = sub.add_parser("submit")
    submit.add_argument("lab")
    submit.add_argument("out", type=Path)
    grading = sub.add_parser("grade")
    grading.add_argument("exercise", type=Path)
    grading.add_argument("csv", type=Path)
    grading.add_argument("bundles", type=Path, nargs="+")
    args = p.parse_args(argv)
    try:
        result = _run(args.op, args)
    except Exception as exc:  # noqa: BLE001 — the server shows the message; exit 3 says it is one
        from vnetlab.errors import VnetlabError

        print(json.dumps({"error": str(exc), "expected": isinstance(exc, VnetlabError)}), flush=True)
        return 3
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
