"""Containers, outside hosts and NAT for real, without VMs: the lab's network part alone.

apply.create_network builds the lab namespace, br0 with the gateway, the
container and host namespaces on their veths, ip_forward and the masquerade
table; the tests ping, capture and measure inside those namespaces only, then
teardown removes everything from the state file.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from vnetlab.backends import netns
from vnetlab.run.apply import create_network
from vnetlab.backends.linux_bridge import list_links
from vnetlab.checks.capture import Capture, count_ipv4
from vnetlab.compose import parse_scenario
from vnetlab.checks.base import NamespaceNode
from vnetlab.features.containers import interface_addresses
from vnetlab.paths import Layout
from vnetlab.features.perf import measure
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.run.state import LabState, make_private_dir
from vnetlab.run.teardown import teardown

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

SCENARIO = """\
name: nat
description: containers behind NAT, no VMs started
bridges:
  - {name: br0, subnet: 10.2.0.0/24, gateway: 10.2.0.1, nat: eth0}
  - {name: br1, subnet: 10.1.1.0/24}
vms:
  - name: vm1
    nics: [{bridge: br0, address: 10.2.0.10/24}]
containers:
  - {name: c1, nic: {bridge: br0, address: 10.2.0.2/24}}
  - {name: c2, nic: {bridge: br0, address: 10.2.0.3/24}}
hosts:
  - {name: inet1, address: 203.0.113.2/24, uplink: {name: eth0, address: 203.0.113.1/24}}
  - {name: lan1, address: 10.1.1.100/24, uplink: {name: up0, bridge: br1}}
"""


@pytest.fixture
def lab(tmp_path: Path):
    name = f"s2-rt{secrets.token_hex(3)}"
    plan = make_plan(parse_scenario(SCENARIO, "nat.yaml"), name, PlanOptions(layout=Layout(tmp_path)))
    make_private_dir(plan.lab_dir)
    state = LabState(name, "nat", "nat.yaml", plan.namespace, "qemu", "", os.getpid())
    state.save(plan.lab_dir)
    try:
        create_network(plan, state)
        yield plan
    finally:
        problems = teardown(plan.lab_dir, state)
        assert problems == []
        left = {plan.namespace, *(n.namespace for n in plan.nodes)} & set(netns.list_namespaces())
        assert not left, f"left behind: {left}"


def ping(node: NamespaceNode, target: str, count: int = 3) -> str:
    return node.run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", target], timeout=15).stdout


def test_containers_reach_the_internet_host_only_through_masquerade(lab):
    c1, inet1 = NamespaceNode("c1", lab.nodes[0].namespace), NamespaceNode("inet1", lab.nodes[2].namespace)
    uplink = Capture(lab.namespace, "eth0", lab.lab_dir / "eth0.pcap")
    bridge = Capture(lab.namespace, "br0", lab.lab_dir / "br0.pcap")
    uplink.start()
    bridge.start()
    try:
        out = ping(c1, "203.0.113.2")
        time.sleep(0.2)
    finally:
        outside, inside = uplink.stop(), bridge.stop()
    assert "3 received" in out, out
    assert count_ipv4(outside, src="203.0.113.1", dst="203.0.113.2") == 3  # the translated source
    assert count_ipv4(outside, within="10.2.0.0/24") == 0  # no private address leaves
    assert count_ipv4(inside, src="10.2.0.2", dst="203.0.113.2") == 3  # private on the bridge
    assert "0 received" in ping(inet1, "10.2.0.2", 1) or "unreachable" in inet1.run(["ping", "-c", "1", "-W", "1", "10.2.0.2"], timeout=5).stderr


def test_the_lab_namespace_plays_the_host_and_the_root_namespace_is_untouched(lab):
    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    assert interface_addresses(lab.namespace, "br0") == ["10.2.0.1/24"]
    assert interface_addresses(lab.namespace, "br1") == []  # bridged to the LAN: no host address
    assert interface_addresses(lab.namespace, "nope") is None
    assert netns.run_in_namespace(lab.namespace, lambda: Path("/proc/sys/net/ipv4/ip_forward").read_text()).strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward
    ports = {link["name"]: link["master"] for link in list_links(lab.namespace)}
    assert ports["ve-c1"] == "br0" and ports["up0"] == "br1" and ports["eth0"] is None
    lan1 = next(n for n in lab.nodes if n.name == "lan1")
    [eth0] = [link for link in list_links(lan1.namespace) if link["name"] == "eth0"]
    assert eth0["mac"] == lan1.mac and eth0["addresses"] == ["10.1.1.100/24"]
    ours = {n.veth_mac for n in lab.nodes} | {n.mac for n in lab.nodes}
    assert not [link["name"] for link in list_links(None) if link["mac"] in ours]  # no veth end ever in the root namespace


def test_perf_measures_between_namespaces_and_fails_when_nothing_moves(lab):
    c1, c2 = NamespaceNode("c1", lab.nodes[0].namespace), NamespaceNode("c2", lab.nodes[1].namespace)
    figures = measure(c1, c2, "10.2.0.3", seconds=1, pings=2)
    assert figures.ok and figures.bytes > 0 and figures.mbit_s > 0 and figures.pings_received == 2, figures
    assert figures.rtt_avg_ms is not None
    nobody = measure(c1, c2, "10.2.0.99", seconds=1, pings=1)
    assert not nobody.ok and nobody.bytes == 0 and nobody.error


def test_unaddressed_check_reads_the_namespace_and_fails_on_the_gateway_bridge(lab):
    from vnetlab.checks.base import CheckContext
    from vnetlab.features.containers import UnaddressedCheck
    from vnetlab.features.containers import run_unaddressed

    ctx = CheckContext(lab, {}, lab.lab_dir)
    bridged = run_unaddressed(ctx, UnaddressedCheck("br1"))
    assert bridged.ok and "found none" in bridged.detail
    gateway = run_unaddressed(ctx, UnaddressedCheck("br0"))
    assert not gateway.ok and "found 10.2.0.1/24" in gateway.detail
