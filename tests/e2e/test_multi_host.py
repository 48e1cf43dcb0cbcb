"""Labs over several hypervisors, through the real remote transport: simulated hypervisors are
namespaces on a lab underlay with their own sshd; vnetlab reaches them over qemu+ssh (libvirt) and
SSH/SFTP (their network and files), and stretches the bridges over VXLAN. Proven here: both
scenarios pass, the underlay carries only VXLAN between the hypervisors, `graph` draws each
hypervisor as a cluster, and kill -9 mid-boot then `down` leaves nothing on any of them."""

from __future__ import annotations

import json
import signal
import socket

import pytest
from labtools import leftovers, run_report, start, state_of, vnetlab, wait_until

from vnetlab.backends.linux_bridge import set_link_down, set_link_up
from vnetlab.backends.netns import run_in_namespace
from vnetlab.paths import Layout

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
        assert lab_name in status.stdout and "running" in status.stdout, status.stdout
        inspected = vnetlab("inspect", lab_name, "--format", "json")
        assert inspected.returncode == 0, inspected.stdout + inspected.stderr
        view = json.loads(inspected.stdout)
        vm2 = next(v for v in view["vms"] if v["name"] == "vm2")  # its taps read on hv2, over SSH
        assert vm2["state"] == "running" and not vm2["problems"] and not any(n["problems"] for n in vm2["nics"]), vm2
        assert vm2["host"] == "hv2" and vm2["pid"] is None, vm2  # its qemu runs there
        assert [n["bridge"] for n in vm2["nics"]] == ["vnl-mgmt", "br0"], vm2
        rows = {r["what"]: r for r in view["others"] if r["what"].startswith("hypervisor")}
        assert set(rows) == {"hypervisor hv1 (this machine)", f"hypervisor hv2 namespace vnl-{lab_name}.hv2-lab"}, rows
        assert not any(r["problems"] for r in rows.values()), rows
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


def _answers(namespace: str, address: str) -> bool:
    """Whether sshd accepts a TCP connection at address:22 from the namespace."""
    sock = run_in_namespace(namespace, socket.socket)
    try:
        sock.settimeout(1.0)
        return sock.connect_ex((address, 22)) == 0
    finally:
        sock.close()


DEBIAN_ON_HV2 = """\
name: debian-elsewhere
description: a tiny guest here, a debian guest (disk overlay over a staged base) on a simulated hypervisor
hypervisors: {hv1: {}, hv2: {simulate: true}}
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
  - {name: vm2, on: hv2, image: debian, memory: 256, nics: [{bridge: br0, address: 10.1.1.3/24}]}
checks:
  - ping: {from: vm1, to: vm2}
  - ping: {from: vm2, to: vm1}
"""


def test_a_disk_guest_on_another_hypervisor_boots_from_an_overlay_made_there(tmp_path, lab_name):
    path = tmp_path / "debian-elsewhere.yaml"
    path.write_text(DEBIAN_ON_HV2)
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True, True], [c["detail"] for c in report["checks"]]
    assert report["guests"]["vm2"]["image"].startswith("debian"), report["guests"]
    assert leftovers(lab_name) == []


def test_kill_9_while_a_remote_guest_boots_then_down_leaves_nothing(lab_name):
    proc = start("run", "two-hosts-ping", "--name", lab_name)
    wait_until("the remote guest's domain to be recorded", lambda: (s := state_of(lab_name)) is not None and any(r["kind"] == "domain" and r.get("uri") for r in s["resources"]), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kinds = [r["kind"] for r in state_of(lab_name)["resources"]]
    assert {"sim-sshd", "host-namespace", "host-taps", "domain"} <= set(kinds), kinds
    down = vnetlab("down", lab_name)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_a_hypervisor_that_does_not_answer_at_down_keeps_its_records_until_a_later_down(lab_name):
    up = vnetlab("up", "two-hosts-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    stack = f"vnl-{lab_name}.hv2"
    set_link_down(stack, "ul0")  # hv2 stops answering on the underlay
    try:
        down = vnetlab("down", lab_name)
        assert down.returncode != 0, down.stdout + down.stderr
        assert f"run `vnetlab down {lab_name}` again once it answers" in down.stdout + down.stderr, down.stdout + down.stderr
        resources = state_of(lab_name)["resources"]
        left = {r["kind"] for r in resources}
        assert {"host-namespace", "host-files", "sim-sshd", "sim-host", "namespace"} <= left, left  # hv2's, and what reaches it
        assert [r["name"] for r in resources if r["kind"] == "domain"] == [f"vnl-{lab_name}-vm2"], resources  # vm1's went
    finally:
        set_link_up(stack, "ul0")
    wait_until("hv2 to answer on its underlay again", lambda: _answers(f"vnl-{lab_name}", "192.0.2.2"), timeout=30)  # "once it answers"
    again = vnetlab("down", lab_name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert leftovers(lab_name) == []


def test_a_guest_left_on_a_simulated_hypervisor_keeps_that_hypervisor_for_a_later_down(lab_name):
    """libvirt cannot reach hv2 (its ssh wrapper is gone) while the shell still can: hv2's network
    and files go, its guest stays, and so do hv2's sshd and namespace, through which a later down
    removes the guest."""
    up = vnetlab("up", "two-hosts-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    wrapper = Layout().lab_dir(lab_name) / "hosts" / "hv2" / "ssh"
    aside = wrapper.with_name("ssh.aside")
    wrapper.rename(aside)
    try:
        down = vnetlab("down", lab_name)
        assert down.returncode != 0, down.stdout + down.stderr
        left = {(r["kind"], r["name"]) for r in state_of(lab_name)["resources"]}
        assert ("domain", f"vnl-{lab_name}-vm2") in left, left
        assert {"sim-sshd", "sim-host", "namespace"} <= {kind for kind, _ in left}, left
        assert not {"host-namespace", "host-files"} & {kind for kind, _ in left}, left  # the shell still reached hv2
    finally:
        aside.rename(wrapper)
    again = vnetlab("down", lab_name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert leftovers(lab_name) == []
