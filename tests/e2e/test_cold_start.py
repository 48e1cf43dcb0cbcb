"""Every shipped lesson and exercise passes with `--cold` too (issue 28: "every lesson and exercise
passes in make test with warm start on and with --cold").

The rest of the suite runs each lesson and exercise with warm start on, the default: every guest
that can be is restored from a warm image (guests on another hypervisor and guests with `shares:`
are booted anyway, saying why). This module runs each of them once more with every guest booted:
a lesson through `vnetlab run NAME --cold`, an exercise through `vnetlab exercise test NAME --cold`
(each task fails after setup and passes after its solution), and its `reset` boots again.

With $VNETLAB_COLD set (`make test-cold`) the whole suite boots its guests, so this module would
only repeat it: it is skipped then, saying so.
"""

from __future__ import annotations

import json

import pytest
from labtools import leftovers, run_report, vnetlab

from vnetlab.compose import load_scenario
from vnetlab.paths import scenario_files
from vnetlab.run.lab import COLD_ENV, cold_by_environment

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(cold_by_environment(), reason=f"{COLD_ENV} is set: the whole suite runs cold already"),
]
LAB_PREFIX = "c-"

SHIPPED = {p.stem: load_scenario(p).exercise is not None for p in scenario_files()}
LESSONS = sorted(name for name, exercise in SHIPPED.items() if not exercise)
EXERCISES = sorted(name for name, exercise in SHIPPED.items() if exercise)


def test_the_shipped_scenarios_are_lessons_and_exercises():
    assert "two-vm-ping" in LESSONS and "ex-two-vm-ping" in EXERCISES, SHIPPED


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_lesson_passes_cold(tmp_path, lab_name, lesson):
    result, report = run_report(tmp_path, lesson, lab_name, "--cold")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and report["checks"] and all(c["ok"] for c in report["checks"]), [(c["name"], c["detail"]) for c in report["checks"]]
    assert report["guests"] and {g["start"] for g in report["guests"].values()} == {"boot"}, report["guests"]
    assert "warm" not in [s["name"] for s in report["steps"]]  # no warm image made or looked for
    assert leftovers(lab_name) == []


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_exercise_is_proven_cold_and_its_reset_boots_again(lab_name, exercise):
    proof = vnetlab("exercise", "test", exercise, "--cold", "--name", lab_name, "--keep", "--json", timeout=1800)
    assert proof.returncode == 0, proof.stdout + proof.stderr
    phases = json.loads(proof.stdout)["phases"]
    assert phases and all(p["ok"] for p in phases), phases

    def starts() -> set[str]:
        inspect = vnetlab("inspect", lab_name, "--format", "json", "--no-guest")
        assert inspect.returncode == 0, inspect.stdout + inspect.stderr
        return {vm["start"] for vm in json.loads(inspect.stdout)["vms"]}

    assert starts() == {"cold"}
    reset = vnetlab("exercise", "reset", lab_name, "-q")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert starts() == {"cold"}  # the lab rebuilt as it was built: booted
