"""One check that cannot cope with what a guest printed fails alone, with a readable detail, whether
its collector or its judge stumbles; Ctrl-C and SIGTERM still pass through (they are not check failures)."""

from __future__ import annotations

import pytest

from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.checks.ping import judge_ping
from vnetlab.checks.runner import judge_capture, judge_one, run_one
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

    result = run_one({"ping": CheckKind(crash, judge_ping)}, CheckContext(plan, {}, tmp_path), plan.scenario.checks[0])
    assert isinstance(result, CheckResult) and not result.ok
    assert result.detail.startswith("the check could not be completed: ValueError: invalid literal for int()")


def test_a_crashing_judge_fails_its_own_check_and_so_does_it_again(plan):
    def crash(plan, spec, evidence):
        return evidence.data["nothing"]

    kind = CheckKind(lambda ctx, spec: Evidence({}), crash)
    for _ in range(2):  # judging is pure: the same evidence gives the same verdict
        result = judge_one(kind, plan, plan.scenario.checks[0], Evidence({"stdout": "x"}), {})
        assert not result.ok and result.detail == "the check could not be judged: KeyError: 'nothing'"


def test_evidence_of_a_failed_collection_is_judged_as_that_failure(plan):
    result = judge_one(CheckKind(None, judge_ping), plan, plan.scenario.checks[0], Evidence(error="OSError: gone"), {})
    assert not result.ok and result.detail == "the check could not be completed: OSError: gone"


def test_an_interruption_is_not_swallowed(plan, tmp_path):
    def interrupted(ctx, spec):
        raise Interrupted("SIGTERM")

    with pytest.raises(Interrupted):
        run_one({"ping": CheckKind(interrupted, judge_ping)}, CheckContext(plan, {}, tmp_path), plan.scenario.checks[0])


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
