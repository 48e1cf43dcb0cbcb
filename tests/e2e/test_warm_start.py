"""Warm start on real guests: two guests restored from one warm image are two guests (their own
host keys, MACs, hostnames, random numbers and a clock that is right), inspect says how each
started, a warm image is made on first use, and an interrupt while it is being made leaves nothing
behind."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from labtools import leftovers, run_report, start, state_of, vnetlab, wait_until, warm_image_modes

from vnetlab.backends.warm_image import KIND, host_versions, warm_key
from vnetlab.compose import registry
from vnetlab.model.validate import load_scenario
from vnetlab.paths import Layout
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.run.configure import open_ssh
from vnetlab.run.lab import running_plan

pytestmark = pytest.mark.e2e
LAB_PREFIX = "w-"
WARM_MAC = re.compile(r"52:54:00:ff:ff:[0-9a-f]{2}")
PROBE = "hostname; cat /proc/sys/kernel/random/uuid; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; ip -o link; adjtimex; dmesg"
# The guest steps its clock to the RTC's whole second, as a booted guest's kernel does at boot, and
# QEMU's RTC ticks its seconds at its own phase: a restored guest is up to two seconds behind, as a booted one.
CLOCK_SLACK = 2.0


@pytest.mark.warm
def test_two_guests_restored_from_one_warm_image_are_two_guests(tmp_path, lab_name):
    report_path = tmp_path / "up.json"
    up = vnetlab("up", "two-vm-ping", "--name", lab_name, "--report", str(report_path))
    assert up.returncode == 0, up.stdout + up.stderr
    guests = json.loads(report_path.read_text())["guests"]
    assert {g["start"] for g in guests.values()} == {"restore"}, guests
    [key] = {g["warm_image"] for g in guests.values()}  # one warm image, both guests

    plan = running_plan(lab_name, registry())
    seen = {}
    for vm in plan.vms:
        with open_ssh(plan, vm, time.monotonic() + 60) as ssh:  # verified against the host key vnetlab pinned for this guest
            before = time.time()
            out = ssh.run(PROBE, timeout=30).stdout
            after = time.time()
        hostname, uuid, random_bytes, *rest = out.splitlines()
        links = "\n".join(line for line in rest if ": " in line and "link/" in line)
        clock = int(re.search(r"time.tv_sec:\s*(\d+)", out)[1]) + int(re.search(r"time.tv_usec:\s*(\d+)", out)[1]) / 1e6
        seen[vm.name] = (uuid, random_bytes)
        assert hostname == vm.name
        for nic in vm.all_nics:
            assert f"{nic.guest_name}: " in links and f"link/ether {nic.mac} " in links, links  # its own MAC on each NIC, named
        assert not WARM_MAC.search(links), links  # none of the warm image's MACs is left
        assert before - CLOCK_SLACK <= clock <= after + CLOCK_SLACK, (clock, before, after)  # stepped to the host's time, not the warm guest's
        assert "crng reseeded due to virtual machine fork" in out  # vmgenid told its kernel it was restored
    (vm1_uuid, vm1_bytes), (vm2_uuid, vm2_bytes) = seen["vm1"], seen["vm2"]
    assert vm1_uuid != vm2_uuid and vm1_bytes != vm2_bytes and len(vm1_bytes) == 64
    keys = {vm.name: (plan.lab_dir / "secrets" / f"{vm.name}.host_key.pub").read_text() for vm in plan.vms}
    assert keys["vm1"] != keys["vm2"]

    inspect = vnetlab("inspect", lab_name, "--format", "json")
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    assert {vm["name"]: vm["start"] for vm in json.loads(inspect.stdout)["vms"]} == {"vm1": f"warm ({KIND}-{key})", "vm2": f"warm ({KIND}-{key})"}
    listing = json.loads(vnetlab("image", "list", "--format", "json").stdout)
    [entry] = [row for row in listing if row["name"] == f"{KIND}-{key}"]
    assert entry["kind"] == KIND and entry["current"] is True and entry["size_bytes"] > 10 * 2**20, entry
    # the cache is root's: a tiny guest's warm image holds nothing qemu opens (libvirt reads the save image as root)
    modes = warm_image_modes(key)
    assert modes.pop(".")[0] == 0o711, modes  # passage, no listing (its group: qemu's if made here, root's if an older vnetlab made it)
    assert modes == {"warm.save": (0o600, "root"), "console.log": (0o600, "root"), "info.json": (0o600, "root")}

    down = vnetlab("down", lab_name, "-q")
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_a_cold_lab_says_so_in_inspect(tmp_path, lab_name):
    up = vnetlab("up", "two-vm-ping", "--name", lab_name, "--cold")
    assert up.returncode == 0, up.stdout + up.stderr
    inspect = vnetlab("inspect", lab_name, "--format", "json")
    assert {vm["name"]: vm["start"] for vm in json.loads(inspect.stdout)["vms"]} == {"vm1": "cold", "vm2": "cold"}


# A shape only this test uses (144 MiB): its warm image is removed first, so the run has to make it.
ODD_SHAPE = """name: warm-odd
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, memory: 144, nics: [{bridge: br0, address: 10.1.1.2/24}]}
checks: []
"""


@pytest.mark.warm
def test_a_warm_image_is_made_on_first_use_and_an_interrupt_while_it_is_made_leaves_nothing(tmp_path, lab_name):
    scenario = tmp_path / "odd.yaml"
    scenario.write_text(ODD_SHAPE)
    cache = Layout().images
    tiny = json.loads(vnetlab("image", "build").stdout)
    plan = make_plan(load_scenario(scenario, registry()), lab_name, PlanOptions(kernel=Path(tiny["kernel"])))  # as the run plans it under TCG
    key = warm_key(plan.vms[0].xml, host_versions())
    shutil.rmtree(cache / f"{KIND}-{key}", ignore_errors=True)

    proc = start("run", str(scenario), "--name", lab_name)
    warm_domain = f"vnl-{lab_name}.warm0"
    wait_until("the warm image's guest to be recorded", lambda: (s := state_of(lab_name)) is not None and any(r["name"] == warm_domain for r in s["resources"]), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert leftovers(lab_name) == []
    assert not (cache / f"{KIND}-{key}").exists() and not list(cache.glob(f".{KIND}-{key}.*"))  # no half-made warm image

    # The next run makes it (its own step), restores its guest from it and leaves it in the cache.
    result, report = run_report(tmp_path, str(scenario), lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [s["name"] for s in report["steps"]][:5] == ["image", "accel", "prepare", "network", "warm"], report["steps"]
    assert report["guests"]["vm1"]["start"] == "restore" and report["guests"]["vm1"]["warm_image"] == key, report["guests"]
    assert f"warm image {key}: booted in " in result.stderr, result.stderr
    info = json.loads((cache / f"{KIND}-{key}" / "info.json").read_text())
    assert info["memory_mib"] == 144 and info["nics"] == 2 and info["save_mib"] > 10, info  # the management NIC and br0's
    assert warm_image_modes(key) == {".": (0o711, "qemu"), "warm.save": (0o600, "root"), "console.log": (0o600, "root"), "info.json": (0o600, "root")}
    assert leftovers(lab_name) == []
