"""two-vm-ping on real guests through the real CLI, and nothing left behind afterwards."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from labtools import leftovers, run_report, scenario_with_checks, start_run_until_booting, vnetlab

from vnetlab.backends import linux_bridge


pytestmark = pytest.mark.e2e
LAB_PREFIX = "t-"


# How a guest starts (warm start, the default, or --cold): its first two stages and what it does before its marker.
STARTS = {
    "warm": ((), ["restoring", "restored"], "restore", "identity (keys, MACs, clock, reseed) to the readiness marker"),
    "cold": (("--cold",), ["starting", "started"], "boot", "boot to the readiness marker"),
}


@pytest.mark.parametrize("start", [pytest.param("warm", marks=pytest.mark.warm), "cold"])
def test_run_two_vm_ping_passes_and_leaves_nothing(tmp_path, lab_name, start):
    options, first_stages, how, before_marker = STARTS[start]
    result, report = run_report(tmp_path, "two-vm-ping", lab_name, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and report["scenario"] == "two-vm-ping" and report["lab"] == lab_name
    assert report["accel"] in ("kvm", "tcg")
    # "warm": the warm image made on first use (absent when it was in the cache already)
    assert [s["name"] for s in report["steps"] if s["name"] != "warm"] == ["image", "accel", "prepare", "network", "boot", "checks", "teardown"]
    assert "warm" not in [s["name"] for s in report["steps"]] or start == "warm"
    assert {vm: g["start"] for vm, g in report["guests"].items()} == {"vm1": how, "vm2": how}
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ping vm1 → vm2"]["ok"] and checks["ping vm2 → vm1"]["ok"]
    [capture] = [c for c in report["checks"] if c["kind"] == "capture"]
    counts = capture["counts"]
    assert counts["arp_request"] >= 1 and counts["arp_reply"] >= 1
    assert counts["icmp_echo_request"] >= 6 and counts["icmp_echo_reply"] >= 6 and counts["icmp_echo_pairs"] >= 6
    pcap = Path(report["artifacts"]["pcap"]["br0"])
    assert pcap.stat().st_size > 0
    for log in report["artifacts"]["console"].values():
        assert "VNETLAB-READY" in Path(log).read_text()
    # the boot waterfall: every guest's stages in order, in the report and drawn in the artifacts
    timeline = report["timeline"]
    assert [s["name"] for s in timeline["steps"]] == [s["name"] for s in report["steps"]]
    for vm in ("vm1", "vm2"):
        stages = timeline["guests"][vm]
        assert [s["stage"] for s in stages] == [*first_stages, "console ready", "SSH", "addressed"], stages
        assert [s["at"] for s in stages] == sorted(s["at"] for s in stages)
    memory = report["memory"]["guests_mib"]
    assert sorted(memory) == ["vm1", "vm2"] and all(0 < m["pss"] <= m["rss"] for m in memory.values()), memory
    cpu = report["cpu"]
    assert sorted(cpu["qemu_s"]) == ["vm1", "vm2"], cpu
    assert all(0 < c["started"] < c["up"] <= c["checked"] for c in cpu["qemu_s"].values()), cpu  # a booted guest has used more than its start
    assert cpu["vnetlab_s"] > 0, cpu
    svg = Path(report["artifacts"]["waterfall"]).read_text()
    assert svg.startswith("<svg ") and f"vm1: {before_marker}" in svg
    assert "PASS" in result.stdout
    assert leftovers(lab_name) == []


def test_up_check_down(tmp_path, lab_name):
    up = vnetlab("up", "two-vm-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    again = vnetlab("up", "two-vm-ping", "--name", lab_name)
    assert again.returncode == 1 and "already exists" in again.stderr
    status = vnetlab("status")
    assert lab_name in status.stdout
    check = vnetlab("check", lab_name)
    assert check.returncode == 0, check.stdout + check.stderr

    # A check that cannot even run (its capture bridge is gone) still leaves a report saying why.
    linux_bridge.delete_link(f"vnl-{lab_name}", "br0")
    report_path = tmp_path / "failed-check.json"
    failed = vnetlab("check", lab_name, "--report", str(report_path))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] is False and report["lab"] == lab_name
    assert "cannot start capture on 'br0'" in report["error"] and "cannot start capture on 'br0'" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr

    down = vnetlab("down", lab_name, "-q")
    assert down.returncode == 0 and down.stdout == f"lab {lab_name}: removed\n" and "Tearing down" not in down.stderr, down.stdout + down.stderr
    assert leftovers(lab_name) == []
    again = vnetlab("down", lab_name)
    assert "nothing to remove" in again.stdout


def test_ctrl_c_while_guests_boot_tears_down(lab_name):
    proc = start_run_until_booting("two-vm-ping", lab_name)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert leftovers(lab_name) == []


def test_a_failing_check_fails_the_run_and_says_what_it_saw(tmp_path, lab_name):
    """Pings to an address nobody has: 'must fail' passes, 'must succeed' fails, the run exits 1."""
    path = scenario_with_checks(
        tmp_path,
        "two-vm-ping",
        "  - ping: {from: vm1, to: 10.1.1.99, count: 2, expect: failure}\n"
        "  - ping: {from: vm1, to: 10.1.1.99, count: 2}\n",
    )
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["ok"] is False
    must_fail, must_succeed = report["checks"]
    assert must_fail["ok"] is True and "expected no echo reply from 10.1.1.99, got 0/2" in must_fail["detail"]
    assert must_succeed["ok"] is False and "expected 2/2 echo replies from 10.1.1.99, got 0/2" in must_succeed["detail"]
    assert "FAIL" in result.stdout
    assert leftovers(lab_name) == []


def test_boot_admission_starts_the_next_guest_when_one_is_ready(tmp_path, lab_name):
    """--boot-parallel 1: the second guest's domain starts only after the first one's console said it
    was ready (the report's timeline shows it); the lab passes as usual."""
    result, report = run_report(tmp_path, "two-vm-ping", lab_name, "--boot-parallel", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    boot = next(s for s in report["timeline"]["steps"] if s["name"] == "boot")
    assert "at most 1 at a time)" in boot["label"], boot
    starts = {vm: events[0]["at"] for vm, events in report["timeline"]["guests"].items()}  # starting, or restoring
    stages = {vm: {e["stage"]: e["at"] for e in events} for vm, events in report["timeline"]["guests"].items()}
    first, second = sorted(stages, key=lambda vm: starts[vm])
    assert starts[second] >= stages[first]["console ready"], stages
    assert leftovers(lab_name) == []
