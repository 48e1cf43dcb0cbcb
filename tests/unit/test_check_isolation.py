"""One check that cannot cope with what a guest printed fails alone, with a readable detail;
Ctrl-C and SIGTERM still pass through (they are not check failures)."""

from __future__ import annotations

import pytest

from vnetlab.checks.base import CheckContext, CheckResult
from vnetlab.checks.runner import judge_capture, run_one
from vnetlab.compose import load_scenario
from vnetlab.errors import Interrupted
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan


@pytest.fixture
def plan():
    return make_plan(load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml"), "iso")


def test_a_crashing_runner_fails_its_own_check(plan, tmp_path):
    def crash(ctx, spec):
        int("²")  # what the WireGuard parser once did with a guest's superscript digit

    result = run_one({"ping": crash}, CheckContext(plan, {}, tmp_path), plan.scenario.checks[0])
    assert isinstance(result, CheckResult) and not result.ok
    assert result.detail.startswith("the check could not be completed: ValueError: invalid literal for int()")


def test_an_interruption_is_not_swallowed(plan, tmp_path):
    def interrupted(ctx, spec):
        raise Interrupted("SIGTERM")

    with pytest.raises(Interrupted):
        run_one({"ping": interrupted}, CheckContext(plan, {}, tmp_path), plan.scenario.checks[0])


class Unreadable:
    """Frames a judge cannot walk (e.g. the capture's file vanished under it)."""

    truncated = False

    def __iter__(self):
        raise OSError("pcap gone")

    def __len__(self):
        return 0


def test_a_judge_that_cannot_read_the_frames_fails_its_check(plan, tmp_path):
    capture = plan.scenario.checks[2].capture
    result = judge_capture(plan, capture, Unreadable(), tmp_path / "br0.pcap")
    assert not result.ok and result.detail == "the capture could not be judged: OSError: pcap gone"
