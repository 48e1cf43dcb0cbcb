"""Waiting for a guest's readiness marker: seen, failed, died, abandoned — each ends the wait promptly.

The serial log and libvirt's "is it running" are faked: this pins the polling loop, not a guest
(tests/e2e boots real ones). The 10 s deadlines are never meant to be reached.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vnetlab.run import configure
from vnetlab.run.configure import GuestError, wait_for_marker
from vnetlab.backends.image import GUEST_FAILED_MARKER, GUEST_READY_MARKER, console_says
from vnetlab.compose import load_scenario
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import PlanOptions, make_plan


@pytest.fixture
def vm(tmp_path: Path):
    scenario = load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml")
    plan = make_plan(scenario, "wait", PlanOptions(kernel=tmp_path / "vmlinux", layout=Layout(tmp_path)))
    vm = plan.vm("vm1")
    vm.console_log.parent.mkdir(parents=True)
    return vm


def write_later(path: Path, text: str, after: float) -> threading.Timer:
    timer = threading.Timer(after, path.write_text, args=(text,))
    timer.start()
    return timer


def test_returns_soon_after_the_marker_appears(vm) -> None:
    start = time.monotonic()  # before the timer starts: a descheduled test thread must not shorten what it measures
    write_later(vm.console_log, f"booting\n{GUEST_READY_MARKER} host=vm1\n", after=0.3)
    wait_for_marker(vm, time.monotonic() + 10, lambda _vm: True, threading.Event())
    assert 0.3 <= time.monotonic() - start < 3  # well before the 10 s deadline


def test_another_guests_marker_does_not_count(vm) -> None:
    vm.console_log.write_text(f"{GUEST_READY_MARKER} host=vm2\n")
    with pytest.raises(GuestError, match="no readiness marker"):
        wait_for_marker(vm, time.monotonic() + 0.3, lambda _vm: True, threading.Event())


def test_failure_marker_ends_the_wait_with_the_console_tail(vm) -> None:
    vm.console_log.write_text(f"modprobe: virtio_net not found\n{GUEST_FAILED_MARKER} host=vm1 reason=cannot load virtio_net\n")
    with pytest.raises(GuestError, match="(?s)init failed.*virtio_net not found"):
        wait_for_marker(vm, time.monotonic() + 10, lambda _vm: True, threading.Event())


def test_a_guest_that_stops_is_noticed_within_the_liveness_interval(vm) -> None:
    vm.console_log.write_text("Kernel panic - not syncing\n")
    stopped_at = time.monotonic() + 0.2
    asked: list[float] = []

    def is_running(_vm) -> bool:
        asked.append(time.monotonic())
        return time.monotonic() < stopped_at

    with pytest.raises(GuestError, match="(?s)stopped before it was ready.*Kernel panic"):
        wait_for_marker(vm, time.monotonic() + 10, is_running, threading.Event())
    # libvirt is asked once per LIVENESS_POLL, not on every read of the console
    assert len(asked) == 2 and asked[1] - asked[0] >= configure.LIVENESS_POLL


def test_stop_abandons_the_wait(vm) -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    with pytest.raises(GuestError, match="abandoned"):
        wait_for_marker(vm, time.monotonic() + 10, lambda _vm: True, stop)
    assert time.monotonic() - start < 3  # well before the 10 s deadline


def test_a_console_flood_is_followed_in_bounded_reads_and_the_marker_still_found(vm) -> None:
    """A guest writing megabytes to its console: each poll reads only what is new, at most CONSOLE_READ_MAX."""
    follower = configure.ConsoleFollower(vm.console_log)
    with vm.console_log.open("wb") as f:
        f.write(b"y\n" * (3 * configure.CONSOLE_READ_MAX))
        f.write(f"{GUEST_READY_MARKER} host=vm1\n".encode())
    reads = []
    while follower.offset < vm.console_log.stat().st_size:
        text = follower.new_text()
        reads.append(len(text))
    assert max(reads) <= configure.CONSOLE_READ_MAX + follower.keep
    assert f"{GUEST_READY_MARKER} host=vm1" in text


def test_a_marker_split_across_two_reads_is_found(vm) -> None:
    follower = configure.ConsoleFollower(vm.console_log)
    line = f"{GUEST_READY_MARKER} host=vm1\n"
    vm.console_log.write_text("boot\n" + line[:7])
    assert line.strip() not in follower.new_text()
    vm.console_log.write_text("boot\n" + line)
    assert line.strip() in follower.new_text()


def test_console_tail_reads_only_the_end_of_a_huge_log(vm) -> None:
    with vm.console_log.open("wb") as f:
        f.write(b"x" * (8 * configure.CONSOLE_TAIL_BYTES) + b"\nlast line\n")
    assert configure.console_tail(vm.console_log).endswith("last line")


@pytest.mark.parametrize(
    ("text", "ready"),
    [
        (f"{GUEST_READY_MARKER} host=v", False),  # the read ended inside the line
        (f"{GUEST_READY_MARKER} host=vm1", False),  # not yet ended: it could still be host=vm10
        (f"{GUEST_READY_MARKER} host=vm10\r\n", False),
        (f"{GUEST_READY_MARKER} host=vm1\r\n", True),
        (f"boot\n{GUEST_READY_MARKER} host=vm1\n", True),
    ],
)
def test_only_a_whole_marker_line_counts(text: str, ready: bool) -> None:
    assert console_says(text, GUEST_READY_MARKER, "vm1") is ready


def test_a_failure_line_with_its_reason_counts_once_whole() -> None:
    line = f"{GUEST_FAILED_MARKER} host=vm1 reason=no data NIC eth1\n"
    assert console_says(line, GUEST_FAILED_MARKER, "vm1")
    assert not console_says(line[:-1], GUEST_FAILED_MARKER, "vm1")
