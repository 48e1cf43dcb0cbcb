"""Progress of long work, and the step timings that go into the report."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from rich.console import Console


@dataclass
class StepTiming:
    name: str
    seconds: float
    ok: bool


class Progress:
    """Prints one line per finished step (and per VM event), with a spinner while a step runs on a terminal."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False):
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.steps: list[StepTiming] = []
        self._lock = threading.Lock()

    @contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        start = time.monotonic()
        ok = False
        try:
            if self.quiet or not self.console.is_terminal:
                yield
            else:
                with self.console.status(f"{label}…"):
                    yield
            ok = True
        finally:
            seconds = time.monotonic() - start
            self.steps.append(StepTiming(name, round(seconds, 3), ok))
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            self.say(f"{mark} {label} [dim]{seconds:.1f} s[/]")

    def say(self, text: str) -> None:
        if not self.quiet:
            with self._lock:
                self.console.print(text)

    def detail(self, text: str) -> None:
        self.say(f"  [dim]{text}[/]")
