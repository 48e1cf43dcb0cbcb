"""The boot waterfall: where a run's time went, as an SVG picture in its artifacts.

One row per step of the run (image, accelerator, network, warm images made, guests, features'
set-up, checks, teardown) and one row per guest, whose bar is split at each stage it reached:
domain start → started (taps moved, resumed) → readiness marker on the console → SSH →
addressed; a guest restored from a warm image: restoring → restored → its identity steps to the
readiness marker → SSH → addressed. All times are
seconds from the start of the run, the same numbers report.json carries under "timeline".
The SVG is written byte for byte (names escaped), with no scripts or external references.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from vnetlab.run.progress import VM_STAGES, StepTiming, VMEvent

WIDTH = 960
LABEL_WIDTH = 170
TRAIL = 130  # room right of the latest bar for the words after it ('addressed at 12.34 s'), so they are never cut off
ROW = 22
BAR = 14
TOP = 46
LEGEND_LINE = 18
# A guest's segments, named by the stage they end at: what the guest was doing until then.
SEGMENTS = {
    "started": ("domain start, taps into the lab", "#9aa5b1"),
    "console ready": ("boot to the readiness marker", "#4c78a8"),
    "SSH": ("SSH handshake", "#f58518"),
    "addressed": ("data NICs addressed", "#54a24b"),
    "restored": ("domain restored from a warm image, taps into the lab", "#b279a2"),
}
# A restored guest does not boot: what it does between the restore and its marker.
AFTER_RESTORE = ("identity (keys, MACs, clock, reseed) to the readiness marker", "#72b7b2")
STEP_COLOUR, FAILED_COLOUR = "#b8c4d6", "#e45756"


def timeline(steps: Sequence[StepTiming], events: Sequence[VMEvent]) -> dict:
    """What report.json carries: every step's start and length, and every guest's stages."""
    guests: dict[str, list[dict]] = {}
    for e in events:
        guests.setdefault(e.vm, []).append({"stage": e.stage, "at": e.at})
    return {
        "steps": [{"name": s.name, "label": s.label, "start": s.start, "seconds": s.seconds, "ok": s.ok} for s in steps],
        "guests": guests,
    }


def row_name(step: StepTiming, guests: dict[str, list[VMEvent]]) -> str:
    """A step's row label: its name, except that the guests' step says how they started. report.json
    keeps the name "boot" (programs read it); the picture says "restore" when no guest booted."""
    if step.name != "boot" or not guests:
        return step.name
    restored = sum(any(e.stage == "restored" for e in events) for events in guests.values())
    return "boot" if restored == 0 else "restore" if restored == len(guests) else "boot + restore"


def waterfall_svg(title: str, steps: Sequence[StepTiming], events: Sequence[VMEvent]) -> str:
    guests: dict[str, list[VMEvent]] = {}
    for e in events:
        guests.setdefault(e.vm, []).append(e)
    end = max([s.start + s.seconds for s in steps] + [e.at for e in events] + [0.001])
    scale = (WIDTH - LABEL_WIDTH - TRAIL) / end
    rows = len(steps) + len(guests)
    restored = any(e.stage == "restored" for e in events)
    height = TOP + rows * ROW + 70 + (LEGEND_LINE if restored else 0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    out += _axis(end, scale, TOP - 8, TOP + rows * ROW)
    y = TOP
    for s in steps:
        x = LABEL_WIDTH + s.start * scale
        tip = f"{s.label or s.name}: {s.seconds:.2f} s from {s.start:.2f} s" + ("" if s.ok else " (failed)")
        out.append(f'<text x="10" y="{y + BAR - 2}">{escape(row_name(s, guests))}</text>')
        out.append(_bar(x, y, max(1.0, s.seconds * scale), STEP_COLOUR if s.ok else FAILED_COLOUR, tip))
        out.append(f'<text x="{x + max(1.0, s.seconds * scale) + 4:.1f}" y="{y + BAR - 2}" fill="#555">{s.seconds:.2f} s</text>')
        y += ROW
    for vm, vm_events in guests.items():
        out.append(f'<text x="10" y="{y + BAR - 2}" font-weight="bold">{escape(vm)}</text>')
        for before, after in zip(vm_events, vm_events[1:]):
            what, colour = AFTER_RESTORE if (before.stage, after.stage) == ("restored", "console ready") else SEGMENTS.get(after.stage, (after.stage, "#bab0ac"))
            tip = f"{vm}: {what}, {after.at - before.at:.2f} s ({before.at:.2f} → {after.at:.2f} s)"
            out.append(_bar(LABEL_WIDTH + before.at * scale, y, max(1.0, (after.at - before.at) * scale), colour, tip))
        if vm_events:
            last = vm_events[-1]
            out.append(f'<text x="{LABEL_WIDTH + last.at * scale + 4:.1f}" y="{y + BAR - 2}" fill="#555">{escape(last.stage)} at {last.at:.2f} s</text>')
        y += ROW
    out += _legend(y + 24, restored)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _bar(x: float, y: float, width: float, colour: str, tip: str) -> str:
    return f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR}" fill="{colour}"><title>{escape(tip)}</title></rect>'


def _axis(end: float, scale: float, top: float, bottom: float) -> list[str]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1e9) if end / s <= 12)
    out, t = [], 0.0
    while t <= end + 1e-9:
        x = LABEL_WIDTH + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 4}" fill="#777" text-anchor="middle">{t:g} s</text>')
        t += step
    return out


def _legend(y: float, restored: bool) -> list[str]:
    """The segments' colours, on a second line when a restored guest's two do not fit on the first."""
    out, x = [], 10.0
    for what, colour in [SEGMENTS[stage] for stage in VM_STAGES[1:]] + ([SEGMENTS["restored"], AFTER_RESTORE] if restored else []):
        if x + 16 + 7 * len(what) > WIDTH:
            x, y = 10.0, y + LEGEND_LINE
        out.append(f'<rect x="{x:.1f}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{y}">{escape(what)}</text>')
        x += 30 + 7 * len(what)
    out.append(f'<text x="10" y="{y + 20}" fill="#777">{escape("rows above the guests: the run" + chr(39) + "s steps; hover a bar for its times")}</text>')
    return out

