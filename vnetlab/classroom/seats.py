"""The seats as the server runs them: bringing their labs up a few at a time, queueing their Check
runs, and telling the pages when anything changed.

Every change bumps a version (the seat's and the class's); a page asks "anything after version
N?" and is answered as soon as there is (long polling), so the teacher's grid follows the class
within a moment of a student's Check. Check runs are queued per seat, one at a time: presses of
the same Check while one waits join it, so hammering the button queues at most one more run,
and CHECKS_AT_ONCE bounds the runs of the whole class.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnetlab.classroom import limits
from vnetlab.classroom.engine import Engine, EngineError
from vnetlab.classroom.record import ClassFolder, ClassRecord, Seat
from vnetlab.exercise.state import STATE_FILE as EXERCISE_STATE_FILE
from vnetlab.paths import Layout
from vnetlab.run.state import LabState, owner_alive

log = logging.getLogger("vnetlab.classroom")

WAITING, STARTING, UP, FAILED, RESETTING = "waiting", "starting", "up", "failed", "resetting"
PROGRESS_MAX = 200  # characters of a progress line kept
STATE_POLL = 3.0  # seconds between looks at the seats' exercise state files


@dataclass
class SeatRun:
    """What the server knows of one seat now."""

    seat: Seat
    phase: str = WAITING
    progress: str = ""  # the last step its lab's start said
    error: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # `exercise status --json`, as last read
    last_check: dict[str, Any] = field(default_factory=dict)  # the last Check's task, time, answer and output
    last_activity: float | None = None  # the student's last request or key press (epoch seconds)
    checking: str | None = None  # the Check running now ("" : all tasks)
    version: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one lab operation at a time (check, answer, reset)
    pending: dict[str, asyncio.Future] = field(default_factory=dict)  # queued Check runs by task ("" : all)


def lab_ready(layout: Layout, lab: str) -> str:
    """ready | starting (another process is on it) | broken (its start died) | missing."""
    try:
        state = LabState.load(layout.lab_dir(lab))
    except FileNotFoundError:
        return "missing" if not layout.lab_dir(lab).exists() else "broken"
    except (ValueError, TypeError, KeyError):
        return "broken"
    if state.phase == "up" and not state.held:
        return "ready"
    return "starting" if owner_alive(state) else "broken"


def check_text(done: dict[str, Any]) -> str:
    """A check's verdicts as lines: ✓/✗ task: check: detail (details may quote a guest: shown as text)."""
    lines = []
    for task in done.get("tasks", []):
        for check in task.get("checks", []):
            lines.append(f"{'✓' if check.get('ok') else '✗'} {task.get('name')}: {check.get('name')}: {check.get('detail')}")
    return "\n".join(lines)[-20000:]


class Seats:
    def __init__(self, record: ClassRecord, folder: ClassFolder, engine: Engine | None = None) -> None:
        self.record = record
        self.folder = folder
        self.engine = engine or Engine()
        self.runs = {s.id: SeatRun(s) for s in record.seats}
        self.version = 0
        self._changed = asyncio.Condition()
        self._checks = asyncio.Semaphore(limits.CHECKS_AT_ONCE)
        self._admission = asyncio.Semaphore(max(1, record.seats_at_once))
        self._tasks: set[asyncio.Task] = set()
        runtime = folder.load_runtime()
        for seat_id, saved in runtime.get("seats", {}).items():
            run = self.runs.get(seat_id)
            if run is not None:
                run.last_activity = saved.get("last_activity")
                run.last_check = saved.get("last_check", {})

    # -- change notification ---------------------------------------------------

    def touch(self, run: SeatRun, *, persist: bool = True) -> None:
        """Something of the seat changed: wake the pages; with `persist`, keep it for a restarted server."""
        self.version += 1
        run.version = self.version
        self._spawn(self._notify())
        if persist:
            self.persist()

    def persist(self) -> None:
        self.folder.save_runtime({"seats": {r.seat.id: {"phase": r.phase, "last_activity": r.last_activity, "last_check": r.last_check} for r in self.runs.values()}})

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_newer(self, version: int, seat: str | None = None, timeout: float = limits.LONG_POLL) -> None:
        """Return once the class (or that seat) has a version above `version`, or at the timeout."""

        def newer() -> bool:
            return (self.runs[seat].version if seat else self.version) > version

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(newer), timeout)
            except asyncio.TimeoutError:
                pass

    def active(self, run: SeatRun) -> None:
        run.last_activity = time.time()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- bringing seats up ------------------------------------------------------

    def bring_up_all(self) -> None:
        """Each seat as its lab is found: ready labs are taken as they are (a resumed server), a
        start another process runs is waited for, a broken one is removed and started again.
        Then the seats' exercise states are watched for changes made outside this server."""
        for run in self.runs.values():
            self._spawn(self._bring_up(run))
        self._spawn(self._watch_states())

    async def _watch_states(self) -> None:
        """Read a seat again when its exercise state changed behind the server's back: a check
        that outlived a killed server and finished after `resume`, a teacher's `vnetlab exercise`
        command on a seat's lab. The engine writes the state atomically, so its mtime says it."""
        seen: dict[str, float] = {}
        while True:
            await asyncio.sleep(STATE_POLL)
            for run in self.runs.values():
                if run.phase != UP or run.lock.locked():  # the server's own operation refreshes it when done
                    continue
                try:
                    mtime = (self.folder.layout.lab_dir(run.seat.lab) / EXERCISE_STATE_FILE).stat().st_mtime
                except OSError:
                    continue
                if seen.get(run.seat.id, mtime) != mtime:
                    await self.refresh(run)
                seen[run.seat.id] = mtime

    async def _bring_up(self, run: SeatRun, *, fresh: bool = False) -> None:
        lab = run.seat.lab
        found = await asyncio.to_thread(lab_ready, self.folder.layout, lab)
        while found == "starting" and not fresh:  # a start from before a server restart is still running
            run.phase, run.progress = STARTING, "its lab is still being started"
            self.touch(run)
            await asyncio.sleep(2.0)
            found = await asyncio.to_thread(lab_ready, self.folder.layout, lab)
        if found == "ready" and not fresh:
            run.phase, run.progress, run.error = UP, "", ""
            await self.refresh(run)
            return
        run.phase, run.progress, run.error = WAITING, "waiting for a boot slot", ""
        self.touch(run)
        async with self._admission:
            run.phase = STARTING
            self.touch(run)
            try:
                if found in ("broken", "starting"):
                    run.progress = "removing what a start that died left"
                    self.touch(run)
                    await self.engine.down(lab)
                await self.engine.start(self.record.exercise, run.seat.student, lab, cold=self.record.cold, on_line=lambda line: self._progress(run, line))
            except EngineError as exc:
                run.phase, run.error = FAILED, f"{exc}\n{exc.detail}".strip()
                log.warning("seat %s: %s", run.seat.id, run.error)
                self.touch(run)
                return
        run.phase, run.progress = UP, ""
        await self.refresh(run)

    def _progress(self, run: SeatRun, line: str) -> None:
        text = line.strip()
        if text:
            run.progress = text[:PROGRESS_MAX]
            self.touch(run, persist=False)

    async def refresh(self, run: SeatRun) -> None:
        """Read the seat's exercise status again (after anything that may have changed it)."""
        try:
            run.status = await self.engine.status(run.seat.lab)
        except EngineError as exc:
            run.error = f"{exc}\n{exc.detail}".strip()
        self.touch(run)

    # -- the student's operations ----------------------------------------------

    async def check(self, run: SeatRun, task: str | None) -> dict[str, Any]:
        """Queue a Check of `task` (None: every task); presses while one of the same waits join it."""
        key = task or ""
        waiting = run.pending.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        run.pending[key] = future
        self._spawn(self._run_check(run, key, future))
        return await asyncio.shield(future)

    async def _run_check(self, run: SeatRun, key: str, future: asyncio.Future) -> None:
        try:
            async with run.lock:
                run.pending.pop(key, None)  # from here on, a new press queues the next run
                async with self._checks:
                    run.checking = key
                    self.touch(run)
                    try:
                        done = await self.engine.check(run.seat.lab, key or None)
                        result = {"task": key or None, "at": time.time(), "passed": bool(done.get("passed")), "output": check_text(done)}
                    except EngineError as exc:
                        result = {"task": key or None, "at": time.time(), "passed": False, "error": str(exc), "output": exc.detail}
                    finally:
                        run.checking = None
                run.last_check = result
                await self.refresh(run)
            future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 — whoever waits hears it
            run.pending.pop(key, None)
            if not future.done():
                future.set_exception(exc)
            raise

    async def hint(self, run: SeatRun, task: str) -> str:
        """The task's next hint (the last one again when none is left)."""
        answer = await self.engine.hint(run.seat.lab, task)
        await self.refresh(run)
        return str(answer.get("hint", ""))

    async def answer(self, run: SeatRun, task: str, value: str) -> dict[str, Any]:
        async with run.lock:
            try:
                done = await self.engine.answer(run.seat.lab, task, value)
                result = {"task": task, "at": time.time(), "passed": bool(done.get("passed")), "output": check_text(done)}
            except EngineError as exc:  # e.g. an answer the engine does not take: said to the student
                result = {"task": task, "at": time.time(), "passed": False, "error": str(exc), "output": exc.detail}
            run.last_check = result
            await self.refresh(run)
        return result

    async def submit(self, run: SeatRun) -> str:
        """A result bundle of the seat's work, in a new folder under the class's bundles/SEAT/."""
        out = self.folder.bundles / run.seat.id
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        async with run.lock:
            where = await self.engine.submit(run.seat.lab, out)
        await self.refresh(run)
        return where

    def begin_reset(self, run: SeatRun, on_reset: Callable[[], None] | None = None) -> None:
        """Rebuild the seat's lab from scratch for the same student (the engine's reset), in the
        background; the seat says `resetting` from this moment until its lab is up again."""
        run.phase, run.progress, run.error = RESETTING, "waiting for the seat's running operation", ""
        self.touch(run)
        self._spawn(self._reset(run, on_reset))

    async def _reset(self, run: SeatRun, on_reset: Callable[[], None] | None) -> None:
        async with run.lock:
            if on_reset is not None:
                on_reset()
            run.progress, run.last_check = "rebuilding the lab", {}
            self.touch(run)
            try:
                async with self._admission:
                    if await asyncio.to_thread(lab_ready, self.folder.layout, run.seat.lab) == "ready":
                        await self.engine.reset(run.seat.lab, on_line=lambda line: self._progress(run, line))
                    else:  # its start failed (or it was removed by hand): start it afresh
                        await self.engine.down(run.seat.lab)
                        await self.engine.start(self.record.exercise, run.seat.student, run.seat.lab, cold=self.record.cold, on_line=lambda line: self._progress(run, line))
            except EngineError as exc:
                run.phase, run.error = FAILED, f"{exc}\n{exc.detail}".strip()
                self.touch(run)
                return
            run.phase, run.progress = UP, ""
            await self.refresh(run)

    def latest_bundles(self) -> list[Path]:
        """Each seat's newest submission (a seat that never submitted has none)."""
        out = []
        for run in self.runs.values():
            folder = self.folder.bundles / run.seat.id
            submitted = [p for p in folder.iterdir() if (p / "result.json").is_file()] if folder.is_dir() else []
            if submitted:
                out.append(max(submitted, key=lambda p: p.stat().st_mtime))
        return out

    async def close(self) -> None:
        self.persist()  # the last activity of each seat, for the next server
        for task in list(self._tasks):
            task.cancel()
