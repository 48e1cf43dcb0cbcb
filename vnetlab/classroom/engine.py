"""The exercise engine's commands as the classroom server runs them: one `vnetlab exercise …`
process per operation.

A process per operation, not the engine's functions in the server's threads: a check holds the
lab's lock, installs signal handlers (only the main thread may) and reads what a hostile guest
sends; in its own process none of that can stall or crash the server, and a server killed with
`kill -9` mid-check leaves the check to finish and the exercise state whole (the engine writes it
atomically under the lab lock). Each run is bounded in time and in the output kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vnetlab.classroom.record import ClassroomError

OUTPUT_MAX = 1 << 20  # bytes kept of one command's output (stdout and stderr each)
START_TIMEOUT = 900.0  # a seat's lab: boot, configure, setup (TCG, other seats booting beside it)
CHECK_TIMEOUT = 300.0
QUICK_TIMEOUT = 60.0  # status, hint, answer
VNETLAB = [sys.executable, "-m", "vnetlab"]


class EngineError(ClassroomError):
    """An exercise command failed; `detail` is what it said (its last lines)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


async def _read_capped(stream: asyncio.StreamReader, on_line: Callable[[str], None] | None) -> str:
    kept = bytearray()
    while True:
        line = await stream.readline()
        if not line:
            return kept.decode(errors="replace")
        if len(kept) < OUTPUT_MAX:
            kept += line[: OUTPUT_MAX - len(kept)]
        if on_line is not None:
            on_line(line.decode(errors="replace").rstrip())


async def run(args: list[str], *, timeout: float, on_line: Callable[[str], None] | None = None, children: set | None = None) -> Done:
    """`vnetlab ARGS…` in its own session (a signal to the server's group is not for it); killed at
    `timeout`. While it runs it is in `children`, for the server to end on its way out."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        *VNETLAB, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, start_new_session=True, limit=1 << 16,
    )
    if children is not None:
        children.add(proc)
    try:
        out, err = await asyncio.wait_for(
            asyncio.gather(_read_capped(proc.stdout, None), _read_capped(proc.stderr, on_line)), timeout  # type: ignore[arg-type]
        )
        code = await proc.wait()
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise EngineError(f"`vnetlab {' '.join(args[:2])} …` did not finish within {timeout:g} s") from None
    except asyncio.CancelledError:
        # The server is going down: the command goes on by itself (a check finishes and records its
        # result; the engine keeps its state whole either way).
        raise
    finally:
        if children is not None:
            children.discard(proc)
    return Done(code, out, err)


class Engine:
    """The operations the classroom needs on one seat's lab."""

    def __init__(self, runner: Callable[..., object] | None = None) -> None:
        self.children: set[asyncio.subprocess.Process] = set()
        self._run = runner or (lambda args, **kw: run(args, children=self.children, **kw))

    def end_children(self) -> None:
        """SIGTERM every command still running (the server is stopping): a start tears its lab
        down, a check stops and leaves the exercise state as it was (the engine's Ctrl-C)."""
        for proc in list(self.children):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    async def _ok(self, args: list[str], timeout: float, on_line: Callable[[str], None] | None = None) -> Done:
        done: Done = await self._run(args, timeout=timeout, on_line=on_line)  # type: ignore[misc]
        if done.code != 0:
            raise EngineError(f"`vnetlab {' '.join(args[:2])}` failed (exit {done.code})", _tail(done.stderr or done.stdout))
        return done

    async def start(self, exercise: str, student: str, lab: str, on_line: Callable[[str], None] | None = None) -> None:
        await self._ok(["exercise", "start", exercise, "--student", student, "--name", lab], START_TIMEOUT, on_line)

    async def status(self, lab: str) -> dict:
        done = await self._ok(["exercise", "status", lab, "--json"], QUICK_TIMEOUT)
        try:
            return json.loads(done.stdout)
        except ValueError as exc:
            raise EngineError(f"`vnetlab exercise status {lab} --json` printed no JSON ({exc})", _tail(done.stdout)) from None

    async def check(self, lab: str, task: str | None) -> Done:
        """Exit 0: the tasks checked passed, 1: some failed (both are answers); anything else raises."""
        done: Done = await self._run(["exercise", "check", "--", lab, *([task] if task else [])], timeout=CHECK_TIMEOUT)  # type: ignore[misc]
        if done.code not in (0, 1):
            raise EngineError(f"the check of lab {lab} failed (exit {done.code})", _tail(done.stderr or done.stdout))
        return done

    async def hint(self, lab: str, task: str) -> str:
        return (await self._ok(["exercise", "hint", "--", lab, task], QUICK_TIMEOUT)).stdout

    async def answer(self, lab: str, task: str, value: str) -> Done:
        done: Done = await self._run(["exercise", "answer", "--", lab, task, value], timeout=CHECK_TIMEOUT)  # type: ignore[misc]
        if done.code not in (0, 1):
            raise EngineError(f"the answer for lab {lab} was not taken (exit {done.code})", _tail(done.stderr or done.stdout))
        return done

    async def submit(self, lab: str, out: Path) -> str:
        return (await self._ok(["exercise", "submit", lab, "--out", str(out)], CHECK_TIMEOUT)).stdout.strip()

    async def reset(self, lab: str, on_line: Callable[[str], None] | None = None) -> None:
        await self._ok(["exercise", "reset", lab], START_TIMEOUT, on_line)

    async def grade(self, bundles: list[Path], csv_path: Path) -> None:
        await self._ok(["exercise", "grade", *map(str, bundles), "--csv", str(csv_path)], CHECK_TIMEOUT)

    async def down(self, lab: str) -> None:
        await self._ok(["down", lab, "-q"], START_TIMEOUT)
