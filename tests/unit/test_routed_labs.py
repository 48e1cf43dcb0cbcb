"""Routed labs as a new user writes them (issue 26), without root: a ping names its target by node
across a router, by NIC or by template; a capture on a bridge a routed path crosses judges both
directions by the endpoints' addresses; and the small things the new user tripped over — the
regexes `--explain` prints, the image in `graph`, the images `init`'s CI workflow builds, the
guest's wget applet renamed under its wrapper."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from vnetlab.backends.image import rename_applet
from vnetlab.checks.ping import ping_target
from vnetlab.checks.runner import judge_capture
from vnetlab.compose import load_scenario
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools.explain import explain
from vnetlab.tools.graph import to_dot, topology
from vnetlab.tools.init import init_lab
from scenario_helpers import checks_appended, plan_of, problems

ROUTED = """\
name: routed
bridges:
  - {name: lan, subnet: 10.1.1.0/24}
  - {name: dmz, subnet: 10.2.2.0/24}
vms:
  - name: client
    nics: [{bridge: lan, address: 10.1.1.10/24}]
  - name: router
    nics: [{bridge: lan, address: 10.1.1.1/24}, {bridge: dmz, address: 10.2.2.1/24}]
  - name: web
    nics: [{bridge: dmz, address: 10.2.2.80/24}]
"""


def test_a_ping_by_node_name_across_a_router_takes_the_nodes_address():
    plan = plan_of(checks_appended(ROUTED, "ping: {from: client, to: web}", "ping: {from: web, to: router}", "ping: {from: client, to: router.eth1}", 'ping: {from: client, to: "{{ web.ip }}"}'), "r")
    assert [ping_target(plan, c.ping) for c in plan.scenario.checks] == ["10.2.2.80", "10.2.2.1", "10.2.2.1", "10.2.2.80"]  # the router: its address on dmz, the subnet web shares


def test_without_a_router_between_them_the_ping_by_name_is_refused_as_before():
    alone = ROUTED.replace("  - name: router\n    nics: [{bridge: lan, address: 10.1.1.1/24}, {bridge: dmz, address: 10.2.2.1/24}]\n", "")
    assert problems(checks_appended(alone, "ping: {from: client, to: web}")) == ["lab.yaml:11: checks[0].ping.to: 'client' and 'web' have no addressed NICs on a common subnet"]


@pytest.mark.parametrize("to, found", [
    ("web.eth1", "lab.yaml:13: checks[0].ping.to: 'web' has no addressed interface named 'eth1' (expected NODE.NIC like web.eth0; its addressed interfaces: eth0)"),
    ('"{{ web.eth1.ip }}"', "lab.yaml:13: checks[0].ping.to: template variable 'dict object' has no attribute 'eth1' (variables: every node by name, nodes['…'], bridges['…'])"),
    ('"{{ web.eth0.mac }}"', "lab.yaml:13: checks[0].ping.to: expected a VM name or an IPv4 or IPv6 address, got '00:00:00:00:00:00' (from '{{ web.eth0.mac }}')"),
])
def test_bad_targets_are_located(to, found):
    assert problems(checks_appended(ROUTED, f"ping: {{from: client, to: {to}}}")) == [found]


def test_a_capture_on_the_bridge_a_routed_path_crosses_judges_both_directions():
    text = checks_appended(ROUTED, "ping: {from: client, to: web, count: 2}", "capture: {bridge: dmz, between: [client, web], expect: [icmp-echo, routed]}")
    plan = plan_of(text, "r")
    router_mac, web = plan.vm("router").nics[1].mac, plan.vm("web").nics[0]
    frames = []
    for seq in (1, 2):  # as seen on dmz: the router's MAC on both, the client's address in the packets
        frames.append(Ether(src=router_mac, dst=web.mac) / IP(src="10.1.1.10", dst="10.2.2.80", ttl=63) / ICMP(type=8, id=7, seq=seq))
        frames.append(Ether(src=web.mac, dst=router_mac) / IP(src="10.2.2.80", dst="10.1.1.10", ttl=64) / ICMP(type=0, id=7, seq=seq))
    result = judge_capture(plan, plan.scenario.checks[1].capture, frames, Path("dmz.pcap"))
    assert result.ok, result.detail
    assert result.detail.startswith("expected ≥2 ICMP echo request/reply pairs between 10.1.1.10 and 10.2.2.80 (routed: client is not on dmz, whose frames carry a router's MAC: judged by the addresses)")
    assert result.counts["icmp_echo_pairs"] == 2 and result.counts["routed_requests"] == 2
    lost = judge_capture(plan, plan.scenario.checks[1].capture, frames[::2], Path("dmz.pcap"))  # the replies never crossed dmz
    assert not lost.ok


def test_arp_still_needs_both_nodes_on_the_captured_bridge():
    text = checks_appended(ROUTED, "capture: {bridge: dmz, between: [client, web], expect: [arp, icmp-echo]}")
    assert problems(text) == ["lab.yaml:13: checks[0].capture.between[0]: VM 'client' has no addressed NIC on bridge 'dmz'"]


def test_the_routed_lesson_loads_and_its_checks_name_their_targets():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "routed-web.yaml"), "routed-web", PlanOptions(kernel=Path("/var/lib/vnetlab/images/golden/vmlinux")))
    pings = [c.ping for c in plan.scenario.checks if c.ping is not None]
    assert [(p.to, ping_target(plan, p), p.expect) for p in pings] == [
        ("web", "10.2.2.80", "success"), ("client.eth0", "10.1.1.10", "success"), ("{{ router.eth1.ip }}", "10.2.2.1", "success"), ("10.9.9.9", "10.9.9.9", "failure"),
    ]


def test_explain_prints_a_regex_as_written_and_graph_names_each_vms_image(tmp_path):
    plan = make_plan(load_scenario(SCENARIOS_DIR / "static-routing.yaml"), "static-routing")
    text = explain(plan)
    assert "stdout matching '10\\.2\\.2\\.0/24 via 10\\.1\\.1\\.1 dev eth0'" in text and "\\\\." not in text
    dot = to_dot(topology(make_plan(load_scenario(SCENARIOS_DIR / "mixed-images.yaml"), "mixed-images")))
    assert "tiny · 1 vCPU" in dot and "debian + bridge-utils · 1 vCPU" in dot


def test_inits_ci_workflow_builds_every_image_the_lab_names(tmp_path):
    init_lab(tmp_path / "lab", "{}", "mixed-images")
    workflow = (tmp_path / "lab" / ".github" / "workflows" / "lab.yml").read_text()
    assert "sudo vnetlab image build lab.yaml" in workflow


def test_the_wget_applet_is_renamed_in_place_or_left_alone():
    names = b"\0uuencode\0vconfig\0watchdog\0wc\0wget\0which\0who\0"
    renamed, done = rename_applet(b"ELF" + names, b"wget", b"wgeT")
    assert done and renamed == b"ELF" + names.replace(b"\0wget\0", b"\0wgeT\0")
    assert rename_applet(b"ELF" + names, b"wget", b"wgetx") == (b"ELF" + names, False)  # another length would shift the table
    assert rename_applet(b"ELF\0wc\0which\0", b"wget", b"wgeT")[1] is False  # no such applet
    assert rename_applet(b"\0wget\0wgeT\0", b"wget", b"wgeT")[1] is False  # the new name must still sort between its neighbours
    host = Path("/bin/busybox")
    if host.exists():  # the same busybox-static the image takes (Debian 12): its name table has wget once
        assert rename_applet(host.read_bytes(), b"wget", b"wgeT")[1]
