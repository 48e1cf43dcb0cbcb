"""CLI options and commands the other end-to-end tests do not reach, each checked for what it does,
not just for running: `run --keep` (and `status`/`down` of the kept lab), `--accel tcg|kvm`,
`inspect --no-guest`, `graph --format dot` on a running lab, `check --junit`, and `capture` on an
uplink.

One lab serves the module: `run vm-bridge-uplink --keep --accel tcg` (its own test), then the tests
that read the running lab, then `down` (its own test, last). The module's fixture brings the lab
down whatever happens, and nothing may be left.
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from labtools import ENV, VNETLAB, LineWatcher, Pinger, leftovers, qemu_pids_of, state_of, vnetlab

from vnetlab.backends import netns
from vnetlab.backends.linux_bridge import list_links
from vnetlab.compose import load_scenario
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import tap_prefix

pytestmark = pytest.mark.e2e
LAB_PREFIX = "cc"
SCENARIO = "vm-bridge-uplink"  # two VMs on br0, bridged out of the uplink eth0 to LAN host lan1 (10.1.1.100)
CHECKS = len(load_scenario(SCENARIOS_DIR / f"{SCENARIO}.yaml").checks)


@dataclass
class Kept:
    name: str
    result: subprocess.CompletedProcess
    report: dict
    junit: Path


@pytest.fixture(scope="module")
def kept(module_lab_name, tmp_path_factory) -> Kept:
    folder = tmp_path_factory.mktemp("kept")
    report, junit = folder / "report.json", folder / "junit.xml"
    result = vnetlab("run", SCENARIO, "--name", module_lab_name, "--keep", "--accel", "tcg", "--report", str(report), "--junit", str(junit))
    assert report.exists(), result.stdout + result.stderr
    return Kept(module_lab_name, result, json.loads(report.read_text()), junit)


def status_row(lab: str) -> str | None:
    rows = [line for line in vnetlab("status").stdout.splitlines() if f" {lab} " in line]
    return rows[0] if rows else None


def domains_of(lab: str) -> dict[str, libvirt.virDomain]:
    conn = libvirt.open("qemu:///system")
    return {vm: conn.lookupByName(f"vnl-{lab}-{vm}") for vm in ("vm1", "vm2")}


def test_run_keep_passes_and_leaves_the_lab_up(kept):
    lab = kept.name
    assert kept.result.returncode == 0, kept.result.stdout + kept.result.stderr
    assert kept.report["ok"] is True and kept.report["kept"] is True
    assert len(kept.report["checks"]) == CHECKS and all(c["ok"] for c in kept.report["checks"])
    assert f"the lab is still up: `vnetlab check {lab}`, then `vnetlab down {lab}`" in kept.result.stdout
    # Still there after the command ended: state "up", namespace, running guests, qemu processes.
    assert state_of(lab)["phase"] == "up"
    assert netns.namespace_exists(f"vnl-{lab}") and netns.namespace_exists(f"vnl-{lab}.lan1")
    assert all(dom.isActive() for dom in domains_of(lab).values())
    assert len(qemu_pids_of(lab)) == 2
    row = status_row(lab)
    assert row is not None and " up " in row and "present" in row, row
    assert f"vnl-{lab}-vm1 (running)" in row and f"vnl-{lab}-vm2 (running)" in row, row


def test_accel_tcg_is_what_the_report_and_the_domains_say(kept):
    assert kept.report["accel"] == "tcg"
    assert kept.report["accel_detail"] == {"domain_type": "qemu", "reason": "forced by --accel tcg"}
    assert "accel tcg" in kept.result.stdout
    for vm, dom in domains_of(kept.name).items():
        assert ET.fromstring(dom.XMLDesc(0)).get("type") == "qemu", vm  # libvirt's TCG domain type


def test_accel_kvm_on_this_host_is_refused_at_once_or_honoured(lab_name, tmp_path):
    """`--accel kvm` trusts no /dev/kvm blindly: it probes (8 s at most, cached per host boot). Here
    the KVM module is kvm_pvm, which hangs ordinary guests: the run must stop with the reason before
    anything is created, not boot guests that hang until --boot-timeout. Where KVM works, it is used."""
    report = tmp_path / "report.json"
    started = time.monotonic()
    result = vnetlab("run", "two-vm-ping", "--name", lab_name, "--accel", "kvm", "--boot-timeout", "60", "--report", str(report), timeout=300)
    elapsed = time.monotonic() - started
    if Path("/sys/module/kvm_pvm").exists() or not Path("/dev/kvm").exists():
        assert result.returncode == 1, result.stdout + result.stderr
        assert "error: --accel kvm cannot be honoured: " in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert elapsed < 45, elapsed  # the probe's 8 s and start-up, not a 60 s boot timeout
        assert not Layout().lab_dir(lab_name).exists() and leftovers(lab_name) == []
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        data = json.loads(report.read_text())
        assert data["accel"] == "kvm" and data["accel_detail"]["domain_type"] == "kvm"


def _swap_host_keys(lab: str) -> dict[Path, str]:
    """Pin a wrong host key for every guest (SSH to them is then refused); returns the originals."""
    from vnetlab.backends.keys import generate_host_key

    secrets = Layout().lab_dir(lab) / "secrets"
    saved = {p: p.read_text() for p in sorted(secrets.glob("*.host_key.pub"))}
    assert len(saved) == 2, saved
    for path in saved:
        path.write_text(generate_host_key().public_line + "\n")
    return saved


def test_inspect_no_guest_reports_the_chain_without_ssh(kept):
    """With SSH to the guests made impossible, plain `inspect` flags the guests; `--no-guest` does not
    try, and still reads the whole host side of the chain from the live system."""
    lab = kept.name
    saved = _swap_host_keys(lab)
    try:
        with_guests = vnetlab("inspect", lab, "--format", "json")
        no_guest = vnetlab("inspect", lab, "--no-guest", "--format", "json")
        table = vnetlab("inspect", lab, "--no-guest")
    finally:
        for path, text in saved.items():
            path.write_text(text)
    flagged = json.loads(with_guests.stdout)
    assert with_guests.returncode == 1 and flagged["ok"] is False
    assert all(any("guest not reachable over SSH" in p for p in vm["problems"]) for vm in flagged["vms"]), flagged["vms"]

    assert no_guest.returncode == 0, no_guest.stdout + no_guest.stderr
    report = json.loads(no_guest.stdout)
    assert report["ok"] is True and report["namespace_present"] is True
    assert [vm["name"] for vm in report["vms"]] == ["vm1", "vm2"]
    for vm in report["vms"]:
        assert vm["state"] == "running" and vm["problems"] == [] and vm["pid"] in qemu_pids_of(lab)
        for nic in vm["nics"]:
            fdinfo = Path(f"/proc/{vm['pid']}/fdinfo/{nic['tun_fd']}").read_text()
            assert f"iff:\t{nic['tap']}" in fdinfo  # the fd qemu holds really is this tap's queue
            assert nic["bridge"] == nic["bridge_planned"] and nic["port_state"] == "forwarding" and nic["tap_oper"] == "UP"
            assert nic["guest_iface"] is None and nic["guest_addresses"] == []  # nothing read from the guest
    assert table.returncode == 0 and "every link of the chain is in place" in table.stdout, table.stdout


def test_graph_dot_of_the_running_lab_names_its_live_taps_and_macs(kept):
    lab = kept.name
    result = vnetlab("graph", lab, "--format", "dot")
    assert result.returncode == 0, result.stderr
    dot = result.stdout
    assert dot.startswith(f'graph "{SCENARIO} (lab {lab})" {{'), dot[:200]
    live_taps = sorted(link["name"] for link in list_links(f"vnl-{lab}") if link["name"].startswith(tap_prefix(lab)))
    assert len(live_taps) == 4, live_taps  # mgmt0 and eth0 of two VMs
    for vm, dom in domains_of(lab).items():
        for iface in ET.fromstring(dom.XMLDesc(0)).findall("devices/interface"):
            tap, mac = iface.find("target").get("dev"), iface.find("mac").get("address")
            assert tap in live_taps and f"tap {tap} · {mac}" in dot, (vm, tap, mac)
    assert tap_prefix(SCENARIO) not in dot  # not the scenario's plan under its default lab name
    assert "veth eth0" in dot and "host_lan1" in dot


def flush_neighbours(lab: str) -> None:
    """Empty the ARP caches of vm1, vm2 and lan1. The scenario's capture expects the ARP exchange
    between vm1 and lan1, which a second `check` within the caches' lifetime (~30 s) never sees
    (a known limitation of `check`, see the report); with empty caches the checks are the run's."""
    for vm in ("vm1", "vm2"):
        flushed = vnetlab("ssh", lab, vm, "--", "ip neigh flush dev eth0")
        assert flushed.returncode == 0, flushed.stderr
    subprocess.run(["ip", "-n", f"vnl-{lab}.lan1", "neigh", "flush", "all"], check=True, capture_output=True, timeout=30)


def test_check_junit_has_one_testcase_per_check(kept, tmp_path):
    lab = kept.name
    junit, report = tmp_path / "check.xml", tmp_path / "check.json"
    flush_neighbours(lab)
    result = vnetlab("check", lab, "--junit", str(junit), "--report", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(report.read_text())["checks"]
    assert len(checks) == CHECKS
    text = junit.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures"), root.get("errors")) == (str(CHECKS), "0", "0")
    [suite] = root.findall("testsuite")
    assert suite.get("name") == f"{SCENARIO} (lab {lab})"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c["name"] for c in checks]
    assert [c.get("classname") for c in cases] == [f"vnetlab.{SCENARIO}.{c['kind']}" for c in checks]
    for case in cases:
        assert case.find("failure") is None and case.find("error") is None
        assert float(case.get("time")) >= 0
    assert {p.get("name"): p.get("value") for p in suite.find("properties")} == {"scenario": SCENARIO, "lab": lab, "accel": "tcg"}


def test_capture_on_the_uplink_sees_the_vms_pings_to_the_lan_host(kept):
    """eth0 is the uplink (a veth port of br0 into the LAN namespace): vm1's pings to lan1 cross it
    with vm1's own address (bridged, not NATed)."""
    lab = kept.name
    capture = subprocess.Popen([*VNETLAB, "capture", lab, "eth0", "-c", "6", "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    err = LineWatcher(capture.stderr)
    err.wait_for(f"capturing on eth0 in lab {lab}")
    with Pinger(lab, "vm1", "10.1.1.100"):  # until the capture has its 6 packets
        capture.wait(timeout=90)  # not communicate(): it would read stderr too, beside the watcher
    out = capture.stdout.read()
    stderr = err.rest()
    assert capture.returncode == 0, stderr
    lines = out.splitlines()
    assert len(lines) == 6 and "6 packet(s)" in stderr, out + stderr
    echoes = [line for line in lines if "10.1.1.2" in line and "10.1.1.100" in line and "echo" in line]
    assert echoes, out


def test_down_removes_the_kept_lab(kept):
    lab = kept.name
    down = vnetlab("down", lab)
    assert down.returncode == 0 and down.stdout.strip() == f"lab {lab}: removed", down.stdout + down.stderr
    assert leftovers(lab) == []
    assert status_row(lab) is None
    assert vnetlab("down", lab).stdout.strip() == f"lab {lab}: nothing to remove"
