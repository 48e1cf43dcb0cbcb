"""The exercise engine as the classroom server drives it: reads in a thread, every change of a
lab in a process of its own (`python -m vnetlab.classroom.ops`, the engine's Python API there).

A process per change, not the engine's functions in the server's threads: a check holds the
lab's lock, handles signals (in a main thread only) and reads what a hostile guest sends; in its
own process none of that can stall or crash the server, and a server killed with `kill -9`
mid-check leaves the check to finish and the exercise state whole (the engine writes it atomically
under the lab lock). Each process is bounded in time and in the output kept.
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
from typing import Any

from vnetlab.classroom.ops import read_seat
from vnetlab.classroom.record import ClassroomError
from vnetlab.paths import Layout

OUTPUT_MAX = 1 << 20  # bytes kept of one command's output (stdout and stderr each)
START_TIMEOUT = 900.0  # a seat's lab: boot, configure, setup (TCG, other seats booting beside it)
CHECK_TIMEOUT = 300.0
QUICK_TIMEOUT = 60.0  # status, hint, answer
OPS = ["-m", "vnetlab.classroom.ops"]
VNETLAB_CLI = ["-m", "vnetlab"]


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
    """`python ARGS…` in its own session (a signal to the server's group is not for it); killed at
    `timeout`. While it runs it is in `children`, for the server to end on its way out."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
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
        raise EngineError(f"`{' '.join(args[:3])} …` did not finish within {timeout:g} s") from None
    except asyncio.CancelledError:
        # The server is going down: the command goes on by itself (a check finishes and records its
        # result; the engine keeps its state whole either way).
        raise
    finally:
        if children is not None:
            children.discard(proc)
    return Done(code, out, err)


class Engine:
    """The operations the classroom needs on one seat's lab: reads in a thread of the server,
    changes in a process of their own (vnetlab.classroom.ops)."""

    def __init__(self, runner: Callable[..., object] | None = None, reader: Callable[[str], dict] | None = None, layout: Layout | None = None) -> None:
        self.children: set[asyncio.subprocess.Process] = set()
        self.layout = layout or Layout()
        self._run = runner or (lambda args, **kw: run(args, children=self.children, **kw))
        self._read = reader or (lambda lab: read_seat(lab, self.layout))

    def end_children(self) -> None:
        """SIGTERM every operation still running (the server is stopping): a start tears its lab
        down, a check stops and leaves the exercise state as it was (the engine's Ctrl-C)."""
        for proc in list(self.children):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    async def _op(self, args: list[str], timeout: float, on_line: Callable[[str], None] | None = None) -> dict[str, Any]:
        done: Done = await self._run([*OPS, "--root", str(self.layout.root), *args], timeout=timeout, on_line=on_line)  # type: ignore[misc]
        last = done.stdout.strip().splitlines()[-1:] or [""]
        try:
            result = json.loads(last[0])
        except ValueError:
            result = None
        if done.code != 0 or not isinstance(result, dict):
            message = result.get("error") if isinstance(result, dict) else None
            raise EngineError(message or f"the exercise operation {args[0]} failed (exit {done.code})", _tail(done.stderr or done.stdout))
        return result

    async def start(self, exercise: str, student: str, lab: str, on_line: Callable[[str], None] | None = None, *, cold: bool = False) -> None:
        await self._op(["start", *(["--cold"] if cold else []), "--", exercise, student, lab], START_TIMEOUT, on_line)

    async def status(self, lab: str) -> dict:
        try:
            return await asyncio.to_thread(self._read, lab)
        except Exception as exc:  # noqa: BLE001 — shown with the seat; the next read may succeed
            raise EngineError(f"cannot read the exercise state of lab {lab}: {exc}") from None

    async def check(self, lab: str, task: str | None) -> dict[str, Any]:
        return await self._op(["check", "--", lab, *([task] if task else [])], CHECK_TIMEOUT)

    async def hint(self, lab: str, task: str) -> dict[str, Any]:
        return await self._op(["hint", "--", lab, task], QUICK_TIMEOUT)

    async def answer(self, lab: str, task: str, value: str) -> dict[str, Any]:
        return await self._op(["answer", "--", lab, task, value], CHECK_TIMEOUT)

    async def submit(self, lab: str, out: Path) -> str:
        return str((await self._op(["submit", "--", lab, str(out)], CHECK_TIMEOUT))["bundle"])

    async def reset(self, lab: str, on_line: Callable[[str], None] | None = None) -> None:
        await self._op(["reset", "--", lab], START_TIMEOUT, on_line)

    async def grade(self, exercise: str, bundles: list[Path], csv_path: Path) -> None:
        """The gradebook (the CSV `vnetlab exercise grade` writes) of `bundles`, judged against the teacher's `exercise` file."""
        await self._op(["grade", "--", exercise, str(csv_path), *map(str, bundles)], CHECK_TIMEOUT)

    async def down(self, lab: str) -> None:
        done: Done = await self._run([*VNETLAB_CLI, "down", lab, "-q"], timeout=START_TIMEOUT)  # type: ignore[misc]
        if done.code != 0:
            raise EngineError(f"`vnetlab down {lab}` failed (exit {done.code})", _tail(done.stderr or done.stdout))
