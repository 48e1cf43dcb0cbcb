"""Progress of long work, and the step timings that go into the report.

On a terminal, the running step shows a spinner and, while guests come up, one live row per
VM (starting → started → console ready → SSH → addressed; a guest restored from a warm image:
restoring → restored → …). Elsewhere (CI logs, pipes) the
output is plain lines, one per finished step and per VM event, exactly as before.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

VM_STAGES = ("starting", "started", "console ready", "SSH", "addressed")
# A restored guest's first stages, shown in the columns of the booted guest's.
STAGE_COLUMN = {"restoring": "starting", "restored": "started"}


@dataclass
class StepTiming:
    name: str
    seconds: float
    ok: bool
    start: float = 0.0  # seconds from the start of the run (Progress creation)
    label: str = ""


@dataclass(frozen=True)
class VMEvent:
    """A guest reached `stage` at `at` seconds from the start of the run (for the boot waterfall)."""

    vm: str
    stage: str
    at: float


@dataclass
class VMProgress:
    stage: str
    since: float  # time.monotonic() of the first event
    at: float  # seconds from the first event to the latest stage


class Progress:
    """Prints one line per finished step (and per VM event); live VM rows while a step runs on a terminal."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False):
        self.console = console or Console(stderr=True, highlight=False, emoji=False)
        self.quiet = quiet
        self.steps: list[StepTiming] = []
        self.vms: dict[str, VMProgress] = {}
        self.events: list[VMEvent] = []
        self.restored: set[str] = set()  # guests restored from a warm image rather than booted
        self.started = time.monotonic()
        self._lock = threading.Lock()  # one printed line at a time
        self._vm_lock = threading.Lock()  # separate: printing during a live display renders __rich__
        self._label = ""

    @property
    def live(self) -> bool:
        return not self.quiet and self.console.is_terminal

    @contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        start = time.monotonic()
        ok = False
        self._label = label
        try:
            if self.live:
                with Live(self, console=self.console, refresh_per_second=8, transient=True):
                    yield
            else:
                yield
            ok = True
        finally:
            seconds = time.monotonic() - start
            self.steps.append(StepTiming(name, round(seconds, 3), ok, round(start - self.started, 3), label))
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            self.say(f"{mark} {escape(label)} [dim]{seconds:.1f} s[/]")

    def vm_stage(self, vm: str, stage: str) -> None:
        """A guest reached `stage` (one of VM_STAGES); shown live on a terminal, silent in plain output."""
        now = time.monotonic()
        with self._vm_lock:
            first = self.vms.get(vm)
            if any(e.vm == vm and e.stage == stage for e in self.events):
                return  # seen already (a guest admitted one at a time is seen ready while booting, then again by the wait)
            since = first.since if first else now
            if stage in STAGE_COLUMN:
                self.restored.add(vm)
            self.vms[vm] = VMProgress(stage, since, now - since)
            self.events.append(VMEvent(vm, stage, round(now - self.started, 3)))

    def __rich__(self) -> RenderableType:
        """What the live display shows: the running step, and the guests until all are addressed."""
        spinner = Spinner("dots", text=Text(f"{self._label}…"))
        with self._vm_lock:
            rows = dict(self.vms)
        if not rows or all(p.stage == VM_STAGES[-1] for p in rows.values()):
            return spinner
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
        table.add_column("vm")
        for stage in VM_STAGES:
            table.add_column("started/restored" if stage == "started" and self.restored else stage, justify="center")
        table.add_column("", justify="right", style="dim")
        now = time.monotonic()
        for vm, p in rows.items():
            stage = STAGE_COLUMN.get(p.stage, p.stage)
            reached = VM_STAGES.index(stage) if stage in VM_STAGES else -1
            marks = ["[green]✓[/]" if i <= reached else ("[yellow]…[/]" if i == reached + 1 else "[dim]·[/]") for i in range(len(VM_STAGES))]
            elapsed = p.at if reached == len(VM_STAGES) - 1 else now - p.since
            table.add_row(vm, *marks, f"{elapsed:.1f} s")
        return Group(spinner, table)

    def say(self, text: str) -> None:
        if not self.quiet:
            with self._lock:
                self.console.print(text, soft_wrap=True)  # one line per event, also in CI logs

    def detail(self, text: str) -> None:
        """A plain message (names, reasons, paths): printed literally, never as markup."""
        self.say(f"  [dim]{escape(text)}[/]")
