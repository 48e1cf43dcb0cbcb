"""Every shipped lab and exercise with `--cold` (issue 28: warm start on by default, `--cold` boots as before).

`make test` runs every lesson and exercise with warm start on, the default: every guest that can be
is restored from a warm image (guests on another hypervisor and guests with `shares:` are booted
anyway, saying why); their own tests look closely at what each lab proves. This module runs each
of them once more with every guest booted: each shipped lab through `vnetlab run --cold` (all its
checks pass, every guest says it booted, nothing is left), each exercise through `vnetlab exercise
test --cold` (each task fails after setup and passes after its solution), and one exercise's
`reset` booting its guests again. `make test-cold` runs the whole suite with every guest booted
($VNETLAB_COLD), where this module would only repeat it and is skipped.
"""

from __future__ import annotations

import json

import pytest
from labtools import leftovers, run_report, starts_of, vnetlab

from vnetlab.paths import exercise_files, lesson_files
from vnetlab.run.lab import COLD_ENV, cold_by_environment

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(cold_by_environment(), reason=f"{COLD_ENV} is set: the whole suite runs cold already"),
]
LAB_PREFIX = "c-"


def test_an_exercise_is_proven_cold_and_its_reset_boots_again(lab_name):
    proof = vnetlab("exercise", "test", "ex-two-vm-ping", "--cold", "--name", lab_name, "--keep", "--json", timeout=1800)
    assert proof.returncode == 0, proof.stdout + proof.stderr
    phases = json.loads(proof.stdout)["phases"]
    assert phases and all(p["ok"] for p in phases), phases
    assert starts_of(lab_name) == {"vm1": "cold", "vm2": "cold"}
    reset = vnetlab("exercise", "reset", lab_name, "-q")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert starts_of(lab_name) == {"vm1": "cold", "vm2": "cold"}  # rebuilt as it was built: booted
    down = vnetlab("down", lab_name, "-q")
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


@pytest.mark.parametrize("name", [p.stem for p in lesson_files()])
def test_every_shipped_lab_passes_with_its_guests_booted(tmp_path, name, lab_name):
    result, report = run_report(tmp_path, name, lab_name, "--cold")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and report["checks"] and all(c["ok"] for c in report["checks"]), [c["detail"] for c in report["checks"] if not c["ok"]]
    assert report["guests"] and {vm: g["start"] for vm, g in report["guests"].items()} == dict.fromkeys(report["guests"], "boot")
    assert leftovers(lab_name) == []


@pytest.mark.parametrize("name", [p.stem for p in exercise_files() if p.stem != "ex-two-vm-ping"])  # that one: above, with its reset
def test_every_other_exercise_is_proven_with_its_guests_booted(name, lab_name):
    proof = vnetlab("exercise", "test", name, "--cold", "--name", lab_name, "--json", timeout=1800)
    assert proof.returncode == 0, proof.stdout + proof.stderr
    phases = json.loads(proof.stdout)["phases"]
    assert phases and all(p["ok"] for p in phases), phases
    assert leftovers(lab_name) == []
