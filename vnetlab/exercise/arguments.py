"""The arguments of `vnetlab exercise` and its subcommands, apart from what runs them
(vnetlab.exercise.terminal): every command line builds the whole parser, and only `exercise` needs
the exercise engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnetlab.model.params import DEFAULT_STUDENT


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
