"""`vnetlab classroom start|urls|status|stop|reset|resume`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vnetlab.classroom import limits
from vnetlab.classroom.record import ClassFolder, ClassRecord, ClassroomError, Seat, check_class_name, class_names, new_token
from vnetlab.paths import Layout

DEFAULT_LISTEN = "127.0.0.1:8470"

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
DOWN_RETRY = 120.0  # seconds `stop` retries a lab another command still holds (an orphaned check finishing)


def add_commands(sub: Any) -> None:
    cls = sub.add_parser(
        "classroom", help="serve an exercise to a class: a lab per student in the browser, a live teacher view",
        description="One host serves a class: one lab per student (a seat) with the student's params, a web page per student (tasks, Check, "
        "hints, terminals on the exercise's guests, the topology) and a live page for the teacher. See docs/classroom.md.",
    )
    csub = cls.add_subparsers(dest="classroom_command", metavar="SUBCOMMAND", required=True)
    start = csub.add_parser(
        "start", help="start a class: a lab per seat, the web server in the background",
        description="Bring one lab per seat up (a few seats at a time), start the web server in the background, print the teacher's URL "
        "and write one URL per student (with its token) to a file only root reads. Returns once every seat is up.",
    )
    start.add_argument("exercise", metavar="EXERCISE", help="an exercise: a name from `vnetlab exercise list`, or a YAML file")
    who = start.add_mutually_exclusive_group(required=True)
    who.add_argument("--roster", type=Path, metavar="CSV", help="the students, one a row: a header naming `id` (the student id the params are drawn from) and optionally `name`")
    who.add_argument("--seats", type=int, metavar="N", help="N seats for students s01 … sNN (each with its own params)")
    start.add_argument("--name", metavar="CLASS", help="the class's name (default: the exercise's); each seat's lab is CLASS-s01 …")
    start.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT", help=f"where the server listens (default {DEFAULT_LISTEN}: this machine only); another address needs TLS")
    start.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM) for HTTPS")
    start.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    start.add_argument("--insecure-http", action="store_true", help="allow plain HTTP on a non-loopback --listen (only on a network that is yours alone)")
    start.add_argument("--idle-timeout", type=float, default=limits.IDLE_TIMEOUT / 60, metavar="MIN", help=f"close a terminal after MIN minutes without a key pressed (default {limits.IDLE_TIMEOUT / 60:g})")
    start.add_argument("--cold", action="store_true", help="boot every seat's guests instead of restoring them from warm images (as `vnetlab run --cold`; the first seat otherwise makes the warm images the others restore from)")
    start.add_argument("--seats-at-once", type=int, default=None, metavar="K", help="seats whose labs boot at the same time (default: the host's cores + 1 guests' worth, at least 1)")
    start.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for EXERCISE by name in DIR first (repeatable)")
    start.add_argument("--no-wait", action="store_true", help="return once the server runs, while the seats still come up")
    for verb, text in (("urls", "print each seat's URL (`SEAT URL`) and the `teacher URL` line again"), ("status", "the class's server and each seat"), ("stop", "stop the server and tear every seat's lab down"), ("resume", "start the server again (after a reboot or a crash), keeping every seat's lab and exercise state")):
        p = csub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("name", nargs="?", metavar="CLASS", help="the class (default: the only one)")
    reset = csub.add_parser("reset", help="rebuild one seat's lab from scratch (same student, same params)", description="Rebuild one seat's lab from scratch for the same student (the exercise's reset); its exercise state starts over.")
    reset.add_argument("seat", metavar="SEAT", help="the seat (s01 …) or its student's id")
    reset.add_argument("--name", metavar="CLASS", help="the class (default: the only one)")


def run_command(args: argparse.Namespace, out: Console, err: Console, model: Any) -> int:
    layout = Layout()
    verb = args.classroom_command
    if verb == "start":
        return start(args, out, err, model, layout)
    folder = ClassFolder(layout, _pick(layout, args.name))
    if verb == "urls":
        out.print(folder.urls_file.read_text() if folder.urls_file.exists() else folder.load().urls_text(), end="", markup=False, soft_wrap=True)
        return EXIT_OK
    if verb == "status":
        return status(folder, out)
    if verb == "stop":
        return stop(folder, out, err)
    if verb == "resume":
        return resume(folder, out, err)
    return reset(folder, args.seat, out)


def _pick(layout: Layout, name: str | None) -> str:
    names = class_names(layout)
    if name:
        check_class_name(name)
        if name not in names:
            raise ClassroomError(f"no class named {name!r}" + (f" (classes: {', '.join(names)})" if names else " (no class runs on this host)"))
        return name
    if len(names) == 1:
        return names[0]
    raise ClassroomError("no class runs on this host" if not names else f"several classes run here: name one ({', '.join(names)})")


# -- start -------------------------------------------------------------------------


def start(args: argparse.Namespace, out: Console, err: Console, model: Any, layout: Layout) -> int:
    from vnetlab.classroom.capacity import capacity
    from vnetlab.classroom.roster import numbered_students, read_roster, seat_id
    from vnetlab.classroom.server import check_exposure, check_tls, spawn
    from vnetlab.plan.planner import PlanOptions, make_plan
    from vnetlab.run.lab import load

    path, scenario = load(args.exercise, model, args.scenarios, lambda note: err.print(escape(note), soft_wrap=True))
    if getattr(scenario, "exercise", None) is None:
        raise ClassroomError(f"{path} has no `exercise:` section: a class works on an exercise (see `vnetlab exercise list`)")
    name = args.name or scenario.name[:15].rstrip("-")
    check_class_name(name)
    check_exposure(args.listen, bool(args.tls_cert), args.insecure_http)
    check_tls(args.tls_cert, args.tls_key)
    if args.seats is not None and not 1 <= args.seats <= 500:
        raise ClassroomError("--seats: between 1 and 500")
    students = read_roster(args.roster) if args.roster else numbered_students(args.seats)
    plan = make_plan(scenario, f"{name}-s01", PlanOptions())
    room = capacity(len(students), [vm.memory for vm in plan.vms])
    if not room.fits:
        raise ClassroomError(room.refusal())
    err.print(f"memory: {escape(room.arithmetic())}: fits", soft_wrap=True)
    at_once = args.seats_at_once or max(1, round(((os.cpu_count() or 1) + 1) / max(1, len(plan.vms))))
    seats = [Seat(seat_id(i), s.id, s.name, f"{name}-{seat_id(i)}", new_token()) for i, s in enumerate(students, start=1)]
    record = ClassRecord(
        name, str(path.resolve()), seats, new_token(), listen=args.listen, tls_cert=_absolute(args.tls_cert), tls_key=_absolute(args.tls_key),
        insecure_http=args.insecure_http, idle_timeout=max(1.0, args.idle_timeout * 60), seats_at_once=max(1, at_once), cold=args.cold,
    )
    folder = ClassFolder(layout, name)
    _refuse_lab_clashes(layout, seats)
    folder.create(record)
    try:
        pid = spawn(layout, record)
    except BaseException:
        shutil.rmtree(folder.dir, ignore_errors=True)
        raise
    err.print(f"class {name}: server running (pid {pid}) on {record.base_url()}; {len(seats)} seat(s), {record.seats_at_once} booting at a time", soft_wrap=True)
    try:
        ok = True if args.no_wait else _follow(record, err)
    except KeyboardInterrupt:
        err.print(f"the class goes on starting in the background: `vnetlab classroom status {name}` follows it, `vnetlab classroom stop {name}` removes it", soft_wrap=True)
        raise
    out.print(Text(f"teacher {record.teacher_url()}"), soft_wrap=True)
    out.print(Text(f"student URLs (one per seat, root only): {folder.urls_file}   (`vnetlab classroom urls` prints them)"), soft_wrap=True)
    return EXIT_OK if ok else EXIT_FAIL


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _refuse_lab_clashes(layout: Layout, seats: list[Seat]) -> None:
    taken = [s.lab for s in seats if layout.lab_dir(s.lab).exists()]
    if taken:
        raise ClassroomError(f"lab(s) {', '.join(taken)} exist already (another class of this name?): `vnetlab down` them or pick another --name")


def _follow(record: ClassRecord, err: Console) -> bool:
    """Print each seat's progress until every seat is up or failed; True if all are up."""
    said: dict[str, str] = {}
    version = 0
    while True:
        code, data = api(record, "GET", f"/api/class?after={version}", timeout=limits.LONG_POLL + 10)
        if code != 200:
            raise ClassroomError(f"the classroom server answered {code}: {data}")
        version = data["version"]
        for row in data["seats"]:
            line = f"{row['phase']}" + (f": {row['progress']}" if row["progress"] and row["phase"] != "up" else "") + (f": {row['error']}" if row["error"] and row["phase"] == "failed" else "")
            if said.get(row["seat"]) != line:
                said[row["seat"]] = line
                err.print(Text(f"  {row['seat']} ({row['name']}): {line}"), soft_wrap=True)
        phases = [row["phase"] for row in data["seats"]]
        if all(p in ("up", "failed") for p in phases):
            failed = phases.count("failed")
            if failed:
                err.print(f"[red]{failed} seat(s) failed to start[/]: `vnetlab classroom reset SEAT` tries one again; the others are up")
            return not failed


# -- talking to the running server --------------------------------------------------


def api(record: ClassRecord, method: str, path: str, body: dict | None = None, *, timeout: float = 30.0) -> tuple[int, Any]:
    """The server's API as the teacher, over the address it listens on (loopback for 0.0.0.0 / ::)."""
    import urllib.error
    import urllib.request  # here: every command line builds the classroom's parser, few call its server

    from vnetlab.classroom.server import parse_listen

    host, port = parse_listen(record.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(f"{record.scheme}://{shown}:{port}{path}", method=method, headers={"Authorization": f"Bearer {record.teacher_token}"})
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    context = None
    if record.tls_cert:  # our own server, at the address we bound: its certificate names the public host, not this one
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if answer.headers.get_content_type() == "application/json" else raw
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ClassroomError(f"the classroom server does not answer on {record.listen} ({exc}): `vnetlab classroom resume {record.name}` starts it again") from None


# -- status, stop, resume, reset --------------------------------------------------


def status(folder: ClassFolder, out: Console) -> int:
    from vnetlab.classroom.seats import lab_ready

    record = folder.load()
    pid = folder.server_pid()
    out.print(Text(f"class {record.name}: exercise {record.exercise}; server " + (f"running (pid {pid}) on {record.base_url()}" if pid else "not running (`vnetlab classroom resume` starts it)")), soft_wrap=True)
    rows: dict[str, dict] = {}
    if pid:
        code, data = api(record, "GET", "/api/class")
        if code == 200:
            rows = {row["seat"]: row for row in data["seats"]}
    table = Table(title=f"Seats of {record.name}", title_justify="left")
    for col in ("seat", "student", "lab", "phase", "tasks", "hints", "points", "last activity"):
        table.add_column(col)
    for seat in record.seats:
        row = rows.get(seat.id)
        lab = lab_ready(folder.layout, seat.lab)
        if row is None:
            table.add_row(seat.id, Text(seat.name), seat.lab, lab, "", "", "", "")
            continue
        marks = " ".join({"passed": "✓", "failed": "✗"}.get(t["state"], "·") for t in row["tasks"])
        seen = time.strftime("%H:%M:%S", time.localtime(row["last_activity"])) if row["last_activity"] else ""
        table.add_row(seat.id, Text(seat.name), seat.lab, Text(row["phase"] + (f" ({row['progress']})" if row["progress"] and row["phase"] != "up" else "")), marks, str(row["hints_used"]), "" if row["points"] is None else str(row["points"]), seen)
    out.print(table)
    return EXIT_OK


def stop(folder: ClassFolder, out: Console, err: Console) -> int:
    """Stop the server, tear every seat's lab down, keep the submissions, remove the class."""
    from vnetlab.classroom.server import stop_server
    from vnetlab.run.lab import LabError, TeardownIncomplete

    record = folder.load()
    if stop_server(folder):
        err.print("server stopped")
    left: list[str] = []
    for seat in record.seats:
        deadline = time.monotonic() + DOWN_RETRY
        while True:
            try:
                existed = _down(seat.lab)
                out.print(Text(f"{seat.id}: lab {seat.lab} " + ("removed" if existed else "was not there")), soft_wrap=True)
                break
            except TeardownIncomplete as exc:
                left.append(seat.lab)
                err.print(Text(f"{seat.id}: lab {seat.lab}: {exc}"), soft_wrap=True)
                break
            except LabError as exc:
                if "busy" in str(exc) and time.monotonic() < deadline:  # a check or start the server began is finishing
                    time.sleep(1.0)
                    continue
                left.append(seat.lab)
                err.print(Text(f"{seat.id}: lab {seat.lab}: {exc}"), soft_wrap=True)
                break
    if left:
        err.print(Text(f"error: not every lab was removed ({', '.join(left)}); fix the cause above, then `vnetlab classroom stop {record.name}` again"), soft_wrap=True)
        return EXIT_FAIL
    kept = _keep_submissions(folder)
    shutil.rmtree(folder.dir)
    if kept is not None:
        out.print(Text(f"the students' submissions are kept in {kept}"), soft_wrap=True)
    out.print(Text(f"class {record.name} stopped: nothing of it is left"), soft_wrap=True)
    return EXIT_OK


def _down(lab: str) -> bool:
    from vnetlab.compose import registry
    from vnetlab.run.lab import LabRunner, Options
    from vnetlab.run.progress import Progress

    runner = LabRunner(Options(), Progress(Console(stderr=True, quiet=True), quiet=True), registry())
    return runner.down(lab).existed


def _keep_submissions(folder: ClassFolder) -> Path | None:
    if not folder.bundles.is_dir() or not any(folder.bundles.iterdir()):
        return None
    dest = folder.layout.runs / f"classroom-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.layout.runs.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder.bundles), dest)
    return dest


def resume(folder: ClassFolder, out: Console, err: Console) -> int:
    from vnetlab.classroom.server import spawn

    record = folder.load()
    pid = folder.server_pid()
    if pid is not None:
        out.print(Text(f"class {record.name}: the server runs already (pid {pid}) on {record.base_url()}"), soft_wrap=True)
        return EXIT_OK
    pid = spawn(folder.layout, record)
    err.print(f"class {record.name}: server running again (pid {pid}) on {record.base_url()}", soft_wrap=True)
    ok = _follow(record, err)
    out.print(Text(f"teacher {record.teacher_url()}"), soft_wrap=True)
    return EXIT_OK if ok else EXIT_FAIL


def reset(folder: ClassFolder, seat_ref: str, out: Console) -> int:
    record = folder.load()
    seat = record.seat(seat_ref)
    if seat is None:
        raise ClassroomError(f"class {record.name} has no seat {seat_ref!r} (seats: {', '.join(s.id for s in record.seats)})")
    if folder.server_pid() is None:
        raise ClassroomError(f"the server of class {record.name} is not running: `vnetlab classroom resume {record.name}` first")
    code, data = api(record, "POST", "/api/class/reset", {"seat": seat.id})
    if code != 202:
        raise ClassroomError(f"the server refused the reset ({code}): {data}")
    version = 0
    while True:  # follow the seat until its lab is up again
        code, data = api(record, "GET", f"/api/class?after={version}", timeout=limits.LONG_POLL + 10)
        version = data["version"]
        row = next(r for r in data["seats"] if r["seat"] == seat.id)
        if row["phase"] in ("up", "failed"):
            out.print(Text(f"{seat.id}: {row['phase']}" + (f": {row['error']}" if row["error"] else "")), soft_wrap=True)
            return EXIT_OK if row["phase"] == "up" else EXIT_FAIL
