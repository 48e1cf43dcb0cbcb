"""The pytest plugin drives an exercise (a teacher's own tests): started once for this module as
student dave, a task checked (fails), solved, checked (passes), the student's work done by hand."""

from __future__ import annotations

import os

import pytest
from labtools import leftovers

from vnetlab.compose import load_scenario
from vnetlab.paths import SCENARIOS_DIR

LAB = f"t-xp{os.getpid() % 10000}"
pytestmark = [pytest.mark.e2e, pytest.mark.vnetlab_exercise("ex-two-vm-ping", student="dave", name=LAB)]


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    """Set up before the lab, so torn down after it: the plugin's teardown must leave nothing."""
    yield
    assert leftovers(LAB) == []


def test_a_task_fails_then_passes_after_its_solution(vnetlab_exercise):
    assert vnetlab_exercise.name == LAB
    before = vnetlab_exercise.check("address vm2")
    assert not before.passed and "no echo reply crossed br0" in before.results[0].detail
    vnetlab_exercise.solve("address vm2")
    after = vnetlab_exercise.check(1)
    assert after.passed and after.points == 2, [r.detail for r in after.results]


def test_the_answer_task_by_the_students_own_hand(vnetlab_exercise):
    mac = vnetlab_exercise.exec("vm2", "cat /sys/class/net/eth0/address").stdout.strip()
    assert not vnetlab_exercise.answer("whose MAC", "00:00:00:00:00:00").passed
    assert vnetlab_exercise.answer("whose MAC", mac).passed
    status = vnetlab_exercise.status()
    assert status.student == "dave" and status.params == load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml", "dave").param_values
    assert [t.state for t in status.tasks] == ["passed", "passed"] and status.points == 3
