"""Labs over several hypervisors, through the real remote transport: simulated hypervisors are
namespaces on a lab underlay with their own sshd; vnetlab reaches them over qemu+ssh (libvirt) and
SSH/SFTP (their network and files), and stretches the bridges over VXLAN. Proven here: both
scenarios pass, the underlay carries only VXLAN between the hypervisors, `graph` draws each
hypervisor as a cluster, and kill -9 mid-boot then `down` leaves nothing on any of them."""

from __future__ import annotations

import signal

import pytest
from labtools import leftovers, run_report, start, state_of, vnetlab, wait_until

pytestmark = pytest.mark.e2e
LAB_PREFIX = "h-"


def test_two_hosts_ping(tmp_path, lab_name):
    result, report = run_report(tmp_path, "two-hosts-ping", lab_name, "--keep")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        checks = report["checks"]
        assert [c["ok"] for c in checks] == [True] * 4, [c["detail"] for c in checks]
        underlay = checks[3]["counts"]
        assert underlay["inner_icmp_echo_pairs"] >= 6 and underlay["stray_datagrams"] == 0 and underlay["plain_icmp_echo"] == 0, checks[3]["detail"]
        assert report["placement"] == ["hypervisor hv1: vm1 (this machine)", "hypervisor hv2: vm2 (simulated)"], report["placement"]
        status = vnetlab("status")
        assert lab_name in status.stdout, status.stdout
        dot = vnetlab("graph", lab_name, "--format", "dot")
        assert dot.returncode == 0, dot.stderr
        assert 'subgraph cluster_hv_hv2 {\n    label="hypervisor hv2 (simulated)"' in dot.stdout, dot.stdout
    finally:
        down = vnetlab("down", lab_name)
        assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_three_hosts_vxlan_any_to_any(tmp_path, lab_name):
    result, report = run_report(tmp_path, "three-hosts-vxlan", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * 7, [c["detail"] for c in report["checks"]]
    underlay = report["checks"][6]
    assert underlay["counts"]["inner_icmp_echo_pairs"] >= 6, underlay["detail"]  # vm2 ↔ vm3: hv2 ↔ hv3 directly
    assert leftovers(lab_name) == []


def test_kill_9_while_a_remote_guest_boots_then_down_leaves_nothing(lab_name):
    proc = start("run", "two-hosts-ping", "--name", lab_name)
    wait_until("the remote guest's domain to be recorded", lambda: (s := state_of(lab_name)) is not None and any(r["kind"] == "host-domain" for r in s["resources"]), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kinds = [r["kind"] for r in state_of(lab_name)["resources"]]
    assert {"sim-sshd", "host-namespace", "host-taps", "host-domain"} <= set(kinds), kinds
    down = vnetlab("down", lab_name)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []
