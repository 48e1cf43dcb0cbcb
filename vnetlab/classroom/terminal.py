"""A browser terminal on a guest: a WebSocket to an SSH PTY channel in the lab namespace.

Only a guest is ever reached (a VM or a switch guest, through the lab's pinned SSH key), never a
shell on the host or in the lab namespace: a container node is a namespace running the host's
programs, so it is never a terminal. Both ways are bounded: input at TERMINAL_IN_RATE, output at
TERMINAL_OUT_RATE (a guest flooding its terminal is slowed down through SSH's window, holding at
most paramiko's window of memory), WebSocket messages at WS_MAX_FRAME and WS_QUEUE. One session
per node and seat: a new one (a reload, a second tab) closes the old. A session nobody types into
for `idle_timeout` seconds is closed, and the page says so.

Protocol: the browser's first message is JSON {"token", "node", "cols", "rows"} (the token is
never in a URL, so never in a log); then binary messages are key presses and pastes, and JSON
{"resize": [cols, rows]} a new size. The server sends the guest's output as binary messages and
{"status": text, "closed": bool} as JSON.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

from vnetlab.backends.ssh import GuestSSH
from vnetlab.classroom import limits
from vnetlab.classroom.limits import TokenBucket
from vnetlab.plan.planner import Plan, PlannedVM
from vnetlab.printable import printable
from vnetlab.run.configure import open_ssh

CONNECT_TIMEOUT = 20.0
MIN_SIZE, MAX_COLS, MAX_ROWS = 2, 500, 200


def clamp_size(cols: object, rows: object) -> tuple[int, int]:
    def number(value: object, high: int, default: int) -> int:
        return max(MIN_SIZE, min(high, value)) if isinstance(value, int) and not isinstance(value, bool) else default

    return number(cols, MAX_COLS, 80), number(rows, MAX_ROWS, 24)


@dataclass
class Session:
    """One open terminal; `close(reason)` ends it from outside (a newer session, the server stopping)."""

    seat: str
    node: str
    websocket: WebSocket
    loop: asyncio.AbstractEventLoop
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    last_input: float = field(default_factory=time.monotonic)

    def close(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()


class Terminals:
    """The open terminals of the class, one per (seat, node)."""

    def __init__(self, idle_timeout: float = limits.IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._open: dict[tuple[str, str], Session] = {}

    def count(self) -> int:
        return len(self._open)

    def close_seat(self, seat: str, reason: str) -> None:
        for (s, _), session in list(self._open.items()):
            if s == seat:
                session.close(reason)

    def close_all(self, reason: str) -> None:
        for session in list(self._open.values()):
            session.close(reason)

    async def serve(self, websocket: WebSocket, seat: str, plan: Plan, vm: PlannedVM, cols: int, rows: int, on_input=None) -> None:
        """Run one terminal until the student leaves, the guest's shell ends, it idles out, or a newer
        session of the same node replaces it."""
        key = (seat, vm.name)
        if len(self._open) >= limits.MAX_TERMINALS and key not in self._open:
            await _say(websocket, "the server has as many terminals open as it allows; try again later", closed=True)
            return
        session = Session(seat, vm.name, websocket, asyncio.get_running_loop())
        older = self._open.get(key)
        if older is not None:
            older.close(f"{vm.name}'s terminal was opened in another window")
        self._open[key] = session
        try:
            await _run(session, plan, vm, cols, rows, self.idle_timeout, on_input)
        finally:
            if self._open.get(key) is session:
                del self._open[key]


async def _say(websocket: WebSocket, text: str, *, closed: bool = False) -> None:
    try:
        await websocket.send_text(json.dumps({"status": printable(text), "closed": closed}))  # the page writes it into the terminal
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass


async def _run(session: Session, plan: Plan, vm: PlannedVM, cols: int, rows: int, idle_timeout: float, on_input) -> None:
    ws, loop = session.websocket, session.loop
    await _say(ws, f"connecting to {vm.name} …")
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"term-{session.seat}-{vm.name}")
    ssh: GuestSSH | None = None
    channel = None
    try:
        try:
            ssh = await loop.run_in_executor(pool, open_ssh, plan, vm, time.monotonic() + CONNECT_TIMEOUT)
            channel = await loop.run_in_executor(pool, ssh.open_terminal, cols, rows)
        except Exception as exc:  # noqa: BLE001 — said to the student; the guest may be rebooting
            await _say(ws, f"cannot reach {vm.name}: {exc}", closed=True)
            return
        minutes = idle_timeout / 60
        await _say(ws, f"connected to {vm.name} (closes after {minutes:g} minute{'s' if minutes != 1 else ''} without a key pressed)")
        ended = asyncio.Event()
        reader = threading.Thread(target=_pump_out, args=(session, channel, ended), daemon=True, name=f"term-out-{session.seat}-{vm.name}")
        reader.start()
        await _pump_in(session, channel, pool, ended, idle_timeout, on_input)
        session.stop.set()
        await loop.run_in_executor(None, reader.join, 5.0)
        if session.reason:
            await _say(ws, session.reason, closed=True)
    finally:
        session.stop.set()
        if channel is not None:
            channel.close()
        if ssh is not None:
            ssh.close()
        pool.shutdown(wait=False)
        try:
            await ws.close()
        except (RuntimeError, OSError):
            pass


def _pump_out(session: Session, channel, ended: asyncio.Event) -> None:
    """Guest → browser, in a thread: at most TERMINAL_OUT_RATE; each message is sent before the next
    is read, so a slow browser slows the guest down (through SSH's window), never the server."""
    bucket = TokenBucket(limits.TERMINAL_OUT_RATE)
    channel.settimeout(0.5)
    try:
        while not session.stop.is_set():
            try:
                data = channel.recv(limits.TERMINAL_CHUNK)
            except socket.timeout:
                continue
            except (OSError, EOFError):
                break
            if not data:
                if not session.reason:
                    session.reason = f"the shell on {session.node} ended; reload the terminal to open a new one"
                break
            wait = bucket.delay(len(data))
            if wait and session.stop.wait(wait):
                break
            try:
                asyncio.run_coroutine_threadsafe(session.websocket.send_bytes(data), session.loop).result(timeout=60)
            except Exception:  # noqa: BLE001 — the browser went away (or stalled a minute): the session ends
                break
    finally:
        session.loop.call_soon_threadsafe(ended.set)


def _send(channel, data: bytes, stop: threading.Event) -> None:
    """Send all of `data` unless the session stops: a guest that does not read fills SSH's window,
    and the channel's short timeout (set by the output side) lets this look at `stop` meanwhile."""
    view = memoryview(data)
    while view and not stop.is_set():
        try:
            sent = channel.send(view)
        except socket.timeout:
            continue
        if sent == 0:
            raise EOFError("the channel is closed")
        view = view[sent:]


async def _pump_in(session: Session, channel, pool: ThreadPoolExecutor, ended: asyncio.Event, idle_timeout: float, on_input) -> None:
    """Browser → guest: key presses and pastes at most TERMINAL_IN_RATE, resizes; until the browser
    leaves, the output side ends, the session is closed from outside, or it idles out."""
    ws, loop = session.websocket, session.loop
    bucket = TokenBucket(limits.TERMINAL_IN_RATE)
    ended_wait = asyncio.ensure_future(ended.wait())
    receive: asyncio.Future | None = None
    try:
        while not session.stop.is_set():
            idle_left = session.last_input + idle_timeout - time.monotonic()
            if idle_left <= 0:
                session.close(f"closed after {idle_timeout / 60:g} minutes without a key pressed; reload the terminal to open it again")
                return
            if receive is None:
                receive = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({receive, ended_wait}, timeout=min(idle_left, 1.0), return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                if ended_wait in done:
                    return
                continue  # wakes each second to see whether the session was closed from outside or idled out
            message = receive.result()
            receive = None
            if message["type"] == "websocket.disconnect":
                session.close("")
                return
            if message.get("bytes") is not None:
                data: bytes = message["bytes"]
                session.last_input = time.monotonic()
                if on_input is not None:
                    on_input()
                for start in range(0, len(data), limits.TERMINAL_CHUNK):
                    chunk = data[start : start + limits.TERMINAL_CHUNK]
                    wait = bucket.delay(len(chunk))
                    if wait:
                        await asyncio.sleep(wait)
                    if session.stop.is_set():
                        return
                    await loop.run_in_executor(pool, _send, channel, chunk, session.stop)
            elif message.get("text") is not None:
                try:
                    size = json.loads(message["text"]).get("resize")
                    cols, rows = clamp_size(*size)
                except (ValueError, TypeError, AttributeError):
                    continue
                await loop.run_in_executor(pool, channel.resize_pty, cols, rows)
    except (WebSocketDisconnect, RuntimeError):
        session.close("")
    except (OSError, EOFError):
        session.close(f"the connection to {session.node} was lost; reload the terminal")
    finally:
        ended_wait.cancel()
        if receive is not None:
            receive.cancel()
