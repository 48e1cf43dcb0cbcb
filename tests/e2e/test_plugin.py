"""The pytest plugin on real guests: two-vm-ping up once for this module, torn down at its end."""

from __future__ import annotations

import pytest
from labtools import leftovers

from vnetlab.backends.linux_bridge import attach_to_bridge, detach_from_bridge
from vnetlab.backends.ssh import SSHError

LAB = "t5-plugin"
pytestmark = [pytest.mark.e2e, pytest.mark.vnetlab_scenario("two-vm-ping", name=LAB)]


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    """Set up before the lab, so torn down after it: the plugin's teardown must leave nothing."""
    yield
    assert leftovers(LAB) == []


def test_run_in_guests(vnetlab_lab):
    assert vnetlab_lab.name == LAB
    assert vnetlab_lab.run("vm1", "hostname").stdout.strip() == "vm1"
    addresses = vnetlab_lab.run("vm2", "ip -o -4 addr").stdout
    assert "10.1.1.3/24" in addresses


def test_a_failing_command_raises_unless_unchecked(vnetlab_lab):
    with pytest.raises(SSHError, match="exited with 3"):
        vnetlab_lab.run("vm1", "exit 3")
    assert vnetlab_lab.run("vm1", "exit 3", check=False).exit_code == 3


def test_ping_both_ways_and_an_absent_address(vnetlab_lab):
    for a, b in (("vm1", "vm2"), ("vm2", "vm1")):
        result = vnetlab_lab.ping(a, b)
        assert result.ok, result.detail
    nobody = vnetlab_lab.ping("vm1", "10.1.1.99", count=2, expect="failure")
    assert nobody.ok and "got 0/2" in nobody.detail


def test_capture_counts_the_exchange(vnetlab_lab):
    with vnetlab_lab.capture("br0") as cap:
        assert vnetlab_lab.ping("vm1", "vm2", count=4).ok
    counts = cap.counts("vm1", "vm2")
    assert counts.icmp_echo_request == 4 and counts.icmp_echo_reply == 4 and counts.icmp_echo_pairs == 4
    assert cap.pcap.stat().st_size > 0 and len(cap.packets) >= 8


def test_a_detached_tap_cuts_the_link_and_reattaching_restores_it(vnetlab_lab):
    """The tutorial's lesson: a tap that is no bridge port carries nothing."""
    tap = vnetlab_lab.plan.vm("vm2").nic_on("br0").tap
    detach_from_bridge(vnetlab_lab.namespace, tap)
    try:
        cut = vnetlab_lab.ping("vm1", "vm2", count=2)
        assert not cut.ok and "got 0/2" in cut.detail
    finally:
        attach_to_bridge(vnetlab_lab.namespace, tap, "br0")
    restored = vnetlab_lab.ping("vm1", "vm2", count=2)
    assert restored.ok, restored.detail


def test_exec_copy_and_command_check(vnetlab_lab, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(hostname)\n")
    vnetlab_lab.copy("vm1", script, "/usr/local/bin/hello", mode=0o755)
    assert vnetlab_lab.exec("vm1", "hello").stdout == "hello from vm1\n"
    assert vnetlab_lab.exec("vm2", "exit 3", check=False).exit_code == 3
    ok = vnetlab_lab.command_check("vm2", "ping -c 1 -W 2 {{ vm1.ip }}", stdout="1 packets received", name="vm2 reaches vm1")
    assert ok.ok and ok.name == "vm2 reaches vm1" and "ran `ping -c 1 -W 2 10.1.1.2` on vm2" in ok.detail
    bad = vnetlab_lab.command_check("vm1", "hello", stdout="goodbye", retry_for=2)
    assert not bad.ok and "expected exit 0 and stdout matching 'goodbye'" in bad.detail and "attempt(s)" in bad.detail
