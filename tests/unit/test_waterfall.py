"""The boot waterfall drawn from a run's step timings and guest events (no guests needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from vnetlab.run.progress import StepTiming, VMEvent
from vnetlab.tools.waterfall import timeline, waterfall_svg

SVG = "{http://www.w3.org/2000/svg}"
STEPS = [StepTiming("boot", 0.8, True, 0.1, "Starting 2 guest(s)"), StepTiming("wait", 4.5, True, 0.9, "Waiting"), StepTiming("checks", 0.4, False, 5.5, "Running")]
EVENTS = [
    VMEvent("vm1", "starting", 0.1), VMEvent("vm1", "started", 0.6), VMEvent("vm1", "console ready", 3.9),
    VMEvent("<vm&2>", "starting", 0.1), VMEvent("vm1", "SSH", 4.2), VMEvent("<vm&2>", "started", 0.9), VMEvent("vm1", "addressed", 5.4),
]


def test_the_svg_has_a_row_per_step_and_per_guest_with_each_segment_timed() -> None:
    text = waterfall_svg("run <x>", STEPS, EVENTS)
    root = ET.fromstring(text)  # well-formed: names are escaped
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "Starting 2 guest(s): 0.80 s from 0.10 s" in titles
    assert "Running: 0.40 s from 5.50 s (failed)" in titles
    assert "vm1: boot to the readiness marker, 3.30 s (0.60 → 3.90 s)" in titles
    assert "vm1: SSH handshake, 0.30 s (3.90 → 4.20 s)" in titles
    assert "<vm&2>: domain start, taps into the lab, 0.80 s (0.10 → 0.90 s)" in titles
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"boot", "wait", "checks", "vm1", "<vm&2>", "run <x>"} <= set(labels)
    failed = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#e45756"]
    assert len(failed) == 1  # the failed step stands out


def test_the_report_carries_the_same_times() -> None:
    data = timeline(STEPS, EVENTS)
    assert data["steps"][1] == {"name": "wait", "label": "Waiting", "start": 0.9, "seconds": 4.5, "ok": True}
    assert [e["stage"] for e in data["guests"]["vm1"]] == ["starting", "started", "console ready", "SSH", "addressed"]
    assert data["guests"]["<vm&2>"] == [{"stage": "starting", "at": 0.1}, {"stage": "started", "at": 0.9}]


def test_an_empty_run_still_draws() -> None:
    ET.fromstring(waterfall_svg("nothing ran", [], []))


def test_memory_is_reported_per_guest_and_in_all() -> None:
    from vnetlab.run.lab import Outcome

    outcome = Outcome("s", "l", memory_kib={"vm1": {"pss": 102400, "rss": 204800, "pss_last": 81920}, "vm2": {"pss": 51200, "rss": 60000, "pss_last": 51200}})
    assert outcome.memory_json()["guests_mib"] == {"vm1": {"pss": 100.0, "rss": 200.0, "pss_last": 80.0}, "vm2": {"pss": 50.0, "rss": 58.6, "pss_last": 50.0}}
    assert outcome.memory_json()["total_pss_last_mib"] == 130.0
    assert outcome.memory_json()["total_pss_mib"] == 150.0


def test_cpu_is_reported_per_guest_and_moment() -> None:
    from vnetlab.run.lab import CPU_MOMENTS, Outcome

    outcome = Outcome("s", "l", qemu_cpu_s={"vm1": {"started": 0.194, "up": 2.61}}, vnetlab_cpu_s=0.5549)
    cpu = outcome.cpu_json()
    assert cpu["qemu_s"] == {"vm1": {"started": 0.19, "up": 2.61}} and cpu["vnetlab_s"] == 0.55
    assert list(cpu["moments"]) == [name for name, _ in CPU_MOMENTS] == ["started", "up", "checked"]
    assert Outcome("s", "l").cpu_json()["vnetlab_s"] is None  # `vnetlab check` does not measure itself



def test_a_restored_guest_is_drawn_restored_and_what_it_does_before_its_marker_is_not_a_boot() -> None:
    events = [VMEvent("vm1", "restoring", 0.2), VMEvent("vm1", "restored", 0.6), VMEvent("vm1", "console ready", 0.9),
              VMEvent("vm2", "starting", 0.2), VMEvent("vm2", "started", 0.5), VMEvent("vm2", "console ready", 2.9)]
    root = ET.fromstring(waterfall_svg("warm", STEPS, events))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "vm1: domain restored from a warm image, taps into the lab, 0.40 s (0.20 → 0.60 s)" in titles
    assert "vm1: identity (keys, MACs, clock, reseed) to the readiness marker, 0.30 s (0.60 → 0.90 s)" in titles
    assert "vm2: boot to the readiness marker, 2.40 s (0.50 → 2.90 s)" in titles
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert "domain restored from a warm image, taps into the lab" in legend and "boot to the readiness marker" in legend
    width = float(root.get("width"))
    assert all(float(t.get("x")) < width for t in root.iter(f"{SVG}text"))  # the legend wraps rather than leaving the picture
    assert "domain restored from a warm image, taps into the lab" not in [t.text for t in ET.fromstring(waterfall_svg("cold", STEPS, EVENTS)).iter(f"{SVG}text")]


def test_the_live_rows_show_a_restored_guest_in_the_booted_guests_columns() -> None:
    from rich.console import Console

    from vnetlab.run.progress import Progress

    progress = Progress(Console(record=True, width=200, force_terminal=True))
    progress.vm_stage("vm1", "restoring")
    progress.vm_stage("vm1", "restored")
    progress.vm_stage("vm2", "starting")
    progress.console.print(progress.__rich__())
    text = progress.console.export_text()
    assert "started/restored" in text and progress.restored == {"vm1"}
    vm1 = next(line for line in text.splitlines() if line.strip().startswith("vm1"))
    assert vm1.count("✓") == 2  # restoring and restored: the first two columns


def test_the_words_after_the_latest_bars_fit_in_the_picture() -> None:
    """teardown ends last, and a guest's 'addressed at …' may: their words were cut off at the right edge."""
    from vnetlab.tools.waterfall import TRAIL, WIDTH

    root = ET.fromstring(waterfall_svg("run", STEPS, EVENTS))
    trailing = [float(t.get("x")) for t in root.iter(f"{SVG}text") if t.get("fill") == "#555"]
    assert trailing and max(trailing) + TRAIL - 4 <= WIDTH


def test_the_guests_step_row_says_how_the_guests_started() -> None:
    """The row reads restore when every guest was restored, boot + restore for a mix; report.json's
    step name stays "boot"."""
    restored = [VMEvent(vm, stage, at) for vm in ("vm1", "vm2") for stage, at in (("restoring", 0.1), ("restored", 0.4), ("console ready", 0.6))]
    mixed = restored[:3] + [VMEvent("vm2", "starting", 0.1), VMEvent("vm2", "started", 0.5)]

    def step_row(events) -> str:
        labels = [t.text for t in ET.fromstring(waterfall_svg("r", STEPS, events)).iter(f"{SVG}text")]
        return next(label for label in labels if label in ("boot", "restore", "boot + restore"))

    assert step_row(restored) == "restore"
    assert step_row(mixed) == "boot + restore"
    assert step_row(EVENTS) == "boot"
    assert timeline(STEPS, restored)["steps"][0]["name"] == "boot"
