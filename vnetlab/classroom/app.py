"""The classroom's HTTP API and pages (Starlette).

Who asks is decided on every route from the bearer token (`Authorization: Bearer <token>`; a
WebSocket sends it as its first message), compared in constant time against every token of the
class (SHA-256 digests through hmac.compare_digest, all of them each time): a student token
reaches its own seat only, the teacher token the class routes. No token or an unknown one is
401, a token on a route or seat that is not its own 403, and nothing has changed then. Tokens
are never logged: the request log shows the seat, and the page paths /s/… and /t/… without them.

    GET  /s/<token>, /t/<token>     the student's and the teacher's page (static HTML; the page's
                                     script takes the token from its address)
    GET  /api/seat                   the caller's seat (?after=N waits for a newer version)
    POST /api/seat/check             {"task": name} or {} for every task: queued, one at a time per seat
    POST /api/seat/hint              {"task": name}
    POST /api/seat/answer            {"task": name, "value": text}
    POST /api/seat/submit            {}
    GET  /api/seat/topology.svg, /api/seat/links, /api/seat/evidence/<n>
    GET  /api/class                  teacher: every seat (?after=N)
    POST /api/class/reset            teacher: {"seat": id}
    GET  /api/class/grades.csv       teacher: the gradebook of the seats' last submissions
    WS   /ws/terminal                a terminal on a guest the exercise opens to students
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from vnetlab.classroom import limits
from vnetlab.classroom.engine import EngineError
from vnetlab.classroom.links import LinkWatch, drawing
from vnetlab.classroom.record import ClassFolder, ClassRecord
from vnetlab.classroom.seats import UP, SeatRun, Seats
from vnetlab.classroom.terminal import Terminals, clamp_size
from vnetlab.classroom.view import class_row, exercise_view, seat_view
from vnetlab.paths import CLASSROOM_WEB_DIR, Layout
from vnetlab.printable import printable, printable_data

log = logging.getLogger("vnetlab.classroom")
WEB_DIR = CLASSROOM_WEB_DIR
PAGE_FILES = {"student.js": "text/javascript", "teacher.js": "text/javascript", "common.js": "text/javascript", "style.css": "text/css"}
LIBRARY_FILES = {  # served from what `vnetlab setup` installed from npm (Layout.web)
    "xterm.js": ("node_modules/@xterm/xterm/lib/xterm.js", "text/javascript"),
    "xterm.css": ("node_modules/@xterm/xterm/css/xterm.css", "text/css"),
    "addon-fit.js": ("node_modules/@xterm/addon-fit/lib/addon-fit.js", "text/javascript"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
TOKEN_PATH = re.compile(r"^/([st])/[^/]+")


@dataclass(frozen=True)
class Caller:
    role: str  # student | teacher
    seat: str | None = None


class Tokens:
    """Who a token is, in constant time: every token's digest is compared, whatever matched."""

    def __init__(self, record: ClassRecord) -> None:
        self._entries = [(_digest(record.teacher_token), Caller("teacher"))]
        self._entries += [(_digest(s.token), Caller("student", s.id)) for s in record.seats]

    def who(self, token: str | None) -> Caller | None:
        if not token or len(token) > limits.MAX_TOKEN:
            return None
        digest = _digest(token)
        found = None
        for known, caller in self._entries:
            if hmac.compare_digest(known, digest):
                found = caller
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class ShownJSON(JSONResponse):
    """Every API answer: its strings printable (vnetlab.printable), since a seat's check details,
    errors and the engine's messages quote what a guest printed or a student typed. The pages put
    them in with textContent too; this keeps escape sequences and bidi overrides out of both."""

    def render(self, content: Any) -> bytes:
        return super().render(printable_data(content))


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _fail(status: int, message: str) -> ShownJSON:
    headers = {"WWW-Authenticate": 'Bearer realm="vnetlab classroom"'} if status == 401 else None
    return ShownJSON({"error": message}, status_code=status, headers=headers)


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


class Classroom:
    """The running class: its record, seats, terminals and each seat's plan (read on first need)."""

    def __init__(self, record: ClassRecord, folder: ClassFolder, seats: Seats | None = None, *, web: Path | None = None) -> None:
        self.record = record
        self.folder = folder
        self.seats = seats or Seats(record, folder)
        self.tokens = Tokens(record)
        self.terminals = Terminals(record.idle_timeout)
        self.web = web or folder.layout.web
        self._plans: dict[str, Any] = {}
        self._drawings: dict[str, tuple[bytes, LinkWatch]] = {}

    # -- who asks -------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        token = _bearer(request)
        if token is None:
            raise Denied(401, "no token: send Authorization: Bearer <token>")
        caller = self.tokens.who(token)
        if caller is None:
            raise Denied(401, "this token is not one of this class's")
        return caller

    def student_seat(self, request: Request, asked: str | None = None) -> SeatRun:
        """The caller's own seat (a student); `asked` (a seat id) must be that seat."""
        caller = self.caller(request)
        if caller.role != "student":
            raise Denied(403, "this route is a student's: the teacher sees the seats through /api/class")
        run = self.seats.runs[caller.seat or ""]
        if asked is not None and asked not in (run.seat.id, run.seat.student):
            raise Denied(403, "a student token reaches its own seat only")
        self.seats.active(run)
        return run

    def viewed_seat(self, request: Request) -> tuple[SeatRun, bool]:
        """GET routes: a student's own seat, or (teacher) the seat named by ?seat=."""
        caller = self.caller(request)
        asked = request.query_params.get("seat")
        if caller.role == "teacher":
            run = self.seats.runs.get(asked or "") or next((r for r in self.seats.runs.values() if r.seat.student == asked), None)
            if run is None:
                raise Denied(404 if asked else 400, f"no seat {asked!r}" if asked else "the teacher names a seat: ?seat=ID")
            return run, True
        return self.student_seat(request, asked), False

    def teacher(self, request: Request) -> None:
        if self.caller(request).role != "teacher":
            raise Denied(403, "this route is the teacher's")

    # -- a seat's lab -----------------------------------------------------------

    def plan(self, run: SeatRun):
        if run.seat.id not in self._plans:
            from vnetlab.compose import registry
            from vnetlab.run.lab import running_plan

            self._plans[run.seat.id] = running_plan(run.seat.lab, registry(), self.folder.layout)
        return self._plans[run.seat.id]

    async def drawing(self, run: SeatRun) -> tuple[bytes, LinkWatch]:
        """The seat's SVG and the watch on its links (drawn once per lab)."""
        if run.seat.id not in self._drawings:
            plan = await asyncio.to_thread(self.plan, run)
            svg, found = await asyncio.to_thread(drawing, plan)
            self._drawings[run.seat.id] = (svg, LinkWatch(plan, found))
        return self._drawings[run.seat.id]

    def forget_lab(self, run: SeatRun) -> None:
        """After a reset: the lab is new (same names; re-read anyway)."""
        self._plans.pop(run.seat.id, None)
        self._drawings.pop(run.seat.id, None)
        self.terminals.close_seat(run.seat.id, "your lab is being rebuilt; reload the terminal once it is up")

    def terminal_nodes(self, run: SeatRun) -> list[str]:
        """Guests the exercise opens to students (`exercise: students-reach:`), else its VMs; never a
        node that is not a guest (a container is the host's programs in a namespace)."""
        if run.phase != UP:
            return []
        try:
            plan = self.plan(run)
        except Exception:  # noqa: BLE001 — the lab is not there (yet): no terminals to offer
            return []
        guests = {vm.name: vm for vm in plan.vms}
        reach = ((run.status or {}).get("exercise") or {}).get("students_reach")
        if not isinstance(reach, list):
            return [vm.name for vm in plan.vms if vm.role == "vm"]
        return [str(n) for n in reach if str(n) in guests]

    def evidence(self, run: SeatRun) -> list[Path]:
        """The pcaps of the seat's last check, as the engine's status names them (its lab's runs)."""
        found = [str(p) for task in (run.status or {}).get("tasks") or [] for p in task.get("evidence") or []]
        runs = self.folder.layout.runs.resolve()
        out = []
        for name in dict.fromkeys(found):
            path = Path(name).resolve()
            inside = runs in path.parents and path.relative_to(runs).parts[0].startswith(f"{run.seat.lab}-")  # this seat's runs only
            if inside and path.suffix == ".pcap" and path.is_file():
                out.append(path)
        return out

    def view(self, run: SeatRun, teacher: bool = False) -> dict[str, Any]:
        return seat_view(run, terminals=self.terminal_nodes(run), idle_timeout=self.record.idle_timeout, evidence=[p.name for p in self.evidence(run)], teacher=teacher)


# -- request helpers --------------------------------------------------------------


async def body_json(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Denied(415, "send JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.MAX_BODY):
        raise Denied(413, f"a request body holds at most {limits.MAX_BODY} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limits.MAX_BODY:
            raise Denied(413, f"a request body holds at most {limits.MAX_BODY} bytes")
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        raise Denied(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise Denied(400, "the body must be a JSON object")
    return value


def _text(body: dict[str, Any], key: str, *, required: bool = True, most: int = 200) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > most:
        raise Denied(400, f"{key!r}: a string of 1 to {most} characters")
    return value


def _task(run: SeatRun, name: str | None) -> str | None:
    tasks = [t.get("name") for t in (run.status or {}).get("tasks") or [] if isinstance(t, dict)]
    if name is not None and tasks and name not in tasks:
        raise Denied(404, f"no task {name!r} (tasks: {', '.join(map(str, tasks))})")
    return name


async def _after(request: Request, classroom: Classroom, seat: str | None) -> None:
    after = request.query_params.get("after")
    if after is not None and after.isdigit():
        await classroom.seats.wait_newer(int(after), seat)


def _need_up(run: SeatRun) -> None:
    if run.phase != UP:
        raise Denied(409, f"the lab is not up yet ({run.phase}{': ' + run.progress if run.progress else ''})")


# -- routes ------------------------------------------------------------------------


def build_app(classroom: Classroom) -> Starlette:
    async def page(request: Request) -> Response:
        kind = request.url.path[1]
        caller = classroom.tokens.who(request.path_params["token"])
        wanted = "student" if kind == "s" else "teacher"
        if caller is None or caller.role != wanted:
            return Response("<!doctype html><title>vnetlab classroom</title><p>This link is not valid for this class. Ask your teacher for yours.</p>", 404, media_type="text/html")
        return FileResponse(WEB_DIR / ("student.html" if kind == "s" else "teacher.html"), media_type="text/html")

    async def index(request: Request) -> Response:
        return Response("<!doctype html><title>vnetlab classroom</title><p>vnetlab classroom: open the link your teacher gave you.</p>", media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name in PAGE_FILES:
            return FileResponse(WEB_DIR / name, media_type=PAGE_FILES[name], headers={"Cache-Control": "no-cache"})
        if name in LIBRARY_FILES:
            rel, kind = LIBRARY_FILES[name]
            path = classroom.web / rel
            if not path.is_file():
                return Response(f"/* {name} is not installed: run `vnetlab setup` */", 404, media_type=kind)
            return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=3600"})
        return Response("not found", 404)

    async def seat(request: Request) -> Response:
        run, teacher = classroom.viewed_seat(request)
        await _after(request, classroom, run.seat.id)
        return ShownJSON(classroom.view(run, teacher))

    async def check(request: Request) -> Response:
        body = await body_json(request)
        run = classroom.student_seat(request, body.get("seat"))
        _need_up(run)
        task = _task(run, _text(body, "task", required=False))
        result = await classroom.seats.check(run, task)
        return ShownJSON({"result": result, "seat": classroom.view(run)})

    async def hint(request: Request) -> Response:
        body = await body_json(request)
        run = classroom.student_seat(request, body.get("seat"))
        _need_up(run)
        task = _task(run, _text(body, "task"))
        text = await classroom.seats.hint(run, task or "")
        return ShownJSON({"hint": text.strip(), "seat": classroom.view(run)})

    async def answer(request: Request) -> Response:
        body = await body_json(request)
        run = classroom.student_seat(request, body.get("seat"))
        _need_up(run)
        task = _task(run, _text(body, "task"))
        value = _text(body, "value", most=limits.MAX_ANSWER)
        result = await classroom.seats.answer(run, task or "", value or "")
        return ShownJSON({"result": result, "seat": classroom.view(run)})

    async def submit(request: Request) -> Response:
        body = await body_json(request)
        run = classroom.student_seat(request, body.get("seat"))
        _need_up(run)
        where = await classroom.seats.submit(run)
        return ShownJSON({"submitted": Path(where.splitlines()[-1]).name if where else "", "seat": classroom.view(run)})

    async def topology_svg(request: Request) -> Response:
        run, _ = classroom.viewed_seat(request)
        _need_up(run)
        svg, _ = await classroom.drawing(run)
        return Response(svg, media_type="image/svg+xml")

    async def links(request: Request) -> Response:
        run, _ = classroom.viewed_seat(request)
        _need_up(run)
        _, watch = await classroom.drawing(run)
        return ShownJSON({"links": await asyncio.to_thread(watch.read)})

    async def evidence(request: Request) -> Response:
        run, _ = classroom.viewed_seat(request)
        name = request.path_params["name"]
        found = next((p for p in classroom.evidence(run) if p.name == name), None)
        if found is None:
            raise Denied(404, "no such evidence file in the last check")
        return FileResponse(found, media_type="application/vnd.tcpdump.pcap", filename=f"{run.seat.id}-{found.name}")

    async def class_view(request: Request) -> Response:
        classroom.teacher(request)
        await _after(request, classroom, None)
        seats = classroom.seats
        return ShownJSON({
            "class": classroom.record.name,
            "exercise": next((class_exercise(r) for r in seats.runs.values() if r.status), {}),
            "version": seats.version,
            "seats": [class_row(r) for r in seats.runs.values()],
            "terminals_open": classroom.terminals.count(),
            "now": time.time(),
        })

    async def class_reset(request: Request) -> Response:
        classroom.teacher(request)
        body = await body_json(request)
        ref = _text(body, "seat", most=80)
        seat_record = classroom.record.seat(ref or "")
        if seat_record is None:
            raise Denied(404, f"no seat {ref!r}")
        run = classroom.seats.runs[seat_record.id]
        classroom.seats.begin_reset(run, on_reset=lambda: classroom.forget_lab(run))
        return ShownJSON({"seat": run.seat.id, "resetting": True}, status_code=202)

    async def grades(request: Request) -> Response:
        classroom.teacher(request)
        bundles = classroom.seats.latest_bundles()
        if not bundles:
            raise Denied(404, "no seat has submitted yet: the gradebook grades each seat's last submission (the student's Submit)")
        with tempfile.TemporaryDirectory(prefix="vnetlab-grades-") as tmp:
            out = Path(tmp) / "grades.csv"
            await classroom.seats.engine.grade(classroom.record.exercise, bundles, out)
            data = out.read_bytes()
        return Response(data, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{classroom.record.name}-grades.csv"'})

    async def terminal(websocket: WebSocket) -> None:
        if not _same_origin(websocket):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        try:
            first = await asyncio.wait_for(websocket.receive_text(), 10.0)
            hello = json.loads(first)
            if not isinstance(hello, dict):
                raise ValueError("not an object")
        except (asyncio.TimeoutError, ValueError, KeyError, WebSocketDisconnect, RuntimeError):
            await _close(websocket, 4400, "the first message names the token and the node")
            return
        caller = classroom.tokens.who(hello.get("token") if isinstance(hello.get("token"), str) else None)
        if caller is None:
            await _close(websocket, 4401, "this token is not one of this class's")
            return
        if caller.role != "student":
            await _close(websocket, 4403, "terminals are the students'")
            return
        run = classroom.seats.runs[caller.seat or ""]
        node = hello.get("node")
        nodes = classroom.terminal_nodes(run)
        if not isinstance(node, str) or node not in nodes:
            await _close(websocket, 4403, f"no terminal on {node!r} in this exercise (open: {', '.join(nodes) or 'none yet'})")
            return
        cols, rows = clamp_size(hello.get("cols"), hello.get("rows"))
        plan = classroom.plan(run)
        log.info("terminal opened: seat %s node %s", run.seat.id, node)
        classroom.seats.active(run)
        await classroom.terminals.serve(websocket, run.seat.id, plan, plan.vm(node), cols, rows, on_input=lambda: classroom.seats.active(run))
        log.info("terminal closed: seat %s node %s", run.seat.id, node)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", index),
        Route("/favicon.ico", no_icon),
        Route("/s/{token}", page),
        Route("/t/{token}", page),
        Route("/static/{name}", static),
        Route("/api/seat", seat),
        Route("/api/seat/check", check, methods=["POST"]),
        Route("/api/seat/hint", hint, methods=["POST"]),
        Route("/api/seat/answer", answer, methods=["POST"]),
        Route("/api/seat/submit", submit, methods=["POST"]),
        Route("/api/seat/topology.svg", topology_svg),
        Route("/api/seat/links", links),
        Route("/api/seat/evidence/{name}", evidence),
        Route("/api/class", class_view),
        Route("/api/class/reset", class_reset, methods=["POST"]),
        Route("/api/class/grades.csv", grades),
        WebSocketRoute("/ws/terminal", terminal),
    ]

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        return _fail(exc.status, exc.message)

    async def engine_failed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EngineError)
        return ShownJSON({"error": str(exc), "detail": exc.detail}, status_code=502)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return ShownJSON({"error": exc.detail}, status_code=exc.status_code)

    app = Starlette(routes=routes, exception_handlers={Denied: denied, EngineError: engine_failed, HTTPException: http_error})
    app.add_middleware(_Guard)
    app.state.classroom = classroom
    return app


def class_exercise(run: SeatRun) -> dict[str, Any]:
    view = exercise_view(run.status)
    tasks = run.status.get("tasks") if isinstance(run.status.get("tasks"), list) else []
    return {"title": view["title"], "name": view["name"], "tasks": [str(t.get("name", "")) for t in tasks if isinstance(t, dict)]}


def _same_origin(websocket: WebSocket) -> bool:
    """A browser always sends Origin on a WebSocket: another site's page is refused (scripts and
    tests that send none are judged by their token alone)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    return re.sub(r"^[a-z]+://", "", origin.lower()).rstrip("/") == host.lower()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.send_text(json.dumps({"status": printable(reason), "closed": True}))  # the page writes it into the terminal
        await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass


def redact(path: str) -> str:
    """A page's path without its token, for the log."""
    return TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/…", path)


class _Guard:
    """Security headers on every answer, and the request log (never a token)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status_seen = [0]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in {h.lower() for h in SECURITY_HEADERS} or k.decode().lower() == "cache-control"]
                present = {k.decode().lower() for k, _ in headers}
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.lower() not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info("%s %s %s %.0f ms", scope.get("method"), redact(scope.get("path", "")), status_seen[0], (time.monotonic() - started) * 1000)


def make_classroom(layout: Layout, name: str) -> Classroom:
    folder = ClassFolder(layout, name)
    return Classroom(folder.load(), folder)
