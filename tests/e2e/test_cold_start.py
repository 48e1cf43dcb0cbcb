"""An exercise with `--cold` (issue 28: warm start on by default, `--cold` boots as before).

`make test` runs every lesson and exercise with warm start on, the default: every guest that can be
is restored from a warm image (guests on another hypervisor and guests with `shares:` are booted
anyway, saying why). The booted path is covered beside it without running every lab twice (which
would add a third to the suite's time): two-vm-ping (tests/e2e/test_two_vm_ping.py) and a user's
cloud image (test_distro_guests.py) run warm and `--cold`, and this module proves an exercise
with `vnetlab exercise test --cold` (each task fails after setup and passes after its solution),
its guests booted, and its `reset` booting them again. `make test-cold` runs the whole suite with
every guest booted ($VNETLAB_COLD), where this module would only repeat it and is skipped.
"""

from __future__ import annotations

import json

import pytest
from labtools import leftovers, starts_of, vnetlab

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
