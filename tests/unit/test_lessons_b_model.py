"""Containers, outside hosts, uplinks, gateway/NAT and the capture/unaddressed/perf checks:
each broken rule is reported with file, line and field; the plan shows the new resources."""

from __future__ import annotations

import pytest

from vnetlab.compose import parse_scenario
from vnetlab.model.validate import route_to
from vnetlab.features.nat import equivalent_commands as nat_commands
from vnetlab.features.nat import ruleset
from vnetlab.features.containers import equivalent_commands
from vnetlab.paths import scenario_files
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.model.typed_yaml import ValidationError

GOOD = """\
name: t
description: test
bridges:
  - name: br0
    subnet: 10.2.0.0/24
    gateway: 10.2.0.1
    nat: eth0
vms:
  - name: vm1
    nics: [{bridge: br0, address: 10.2.0.10/24}]
containers:
  - name: c1
    nic: {bridge: br0, address: 10.2.0.2/24}
hosts:
  - name: inet1
    address: 203.0.113.2/24
    uplink: {name: eth0, address: 203.0.113.1/24}
  - name: lan1
    address: 10.2.0.100/24
    uplink: {name: up0, bridge: br0}
checks:
  - ping: {from: c1, to: inet1}
  - ping: {from: vm1, to: c1}
  - capture: {interface: eth0, between: [c1, inet1], expect: [masqueraded]}
  - capture: {interface: up0, between: [vm1, lan1], expect: [bridged]}
  - unaddressed: {interface: up0}
  - perf: {from: c1, to: inet1}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_scenario(text, "lab.yaml")
    return [str(p) for p in info.value.problems]


def test_good_scenario_loads_and_routes():
    s = parse_scenario(GOOD, "lab.yaml")
    assert [c.name for c in s.containers] == ["c1"] and [h.name for h in s.hosts] == ["inet1", "lan1"]
    assert str(route_to(s, "c1", "inet1")) == "203.0.113.2/24"  # through br0's NAT uplink
    assert str(route_to(s, "vm1", "lan1")) == "10.2.0.100/24"  # same bridge
    assert route_to(s, "inet1", "c1") is None  # nothing routes back into the NATed subnet


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("address: 10.2.0.2/24", "address: 10.9.0.2/24", "lab.yaml:13: containers[0].nic.address: 10.9.0.2/24 is not in subnet 10.2.0.0/24 of bridge 'br0'"),
        ("address: 10.2.0.2/24", "address: 10.2.0.10/24", "lab.yaml:13: containers[0].nic.address: 10.2.0.10 is already used by vm1 eth0"),
        ("address: 10.2.0.2/24", "address: 10.2.0.1/24", "lab.yaml:13: containers[0].nic.address: 10.2.0.1 is already used by the gateway of br0"),
        ("{bridge: br0, address: 10.2.0.2/24}", "{bridge: br7, address: 10.2.0.2/24}", "lab.yaml:13: containers[0].nic.bridge: no bridge named 'br7' (bridges: br0)"),
        ("  - name: c1\n", "  - name: vm1\n", "lab.yaml:12: containers[0].name: 'vm1' is already the name of a VM, container or host (each node has its own namespace)"),
        ("  - name: lan1\n", "  - name: c1\n", "lab.yaml:18: hosts[1].name: 'c1' is already the name of a VM, container or host (each node has its own namespace)"),
        ("  - name: c1\n", "  - name: c1-longer-name\n", "containers[0].name: 'c1-longer-name' is 14 characters long; at most 12 allowed"),
        ("{name: up0, bridge: br0}", "{name: br0, bridge: br0}", "lab.yaml:20: hosts[1].uplink.name: 'br0' is already an interface of the lab namespace (or reserved)"),
        ("{name: up0, bridge: br0}", "{name: eth0, bridge: br0}", "lab.yaml:20: hosts[1].uplink.name: 'eth0' is already an interface of the lab namespace (or reserved)"),
        ("{name: up0, bridge: br0}", "{name: up0}", "lab.yaml:20: hosts[1].uplink: expected exactly one of: bridge (bridged uplink), address (routed uplink)"),
        ("address: 10.2.0.100/24", "address: 10.3.0.100/24", "lab.yaml:19: hosts[1].address: 10.3.0.100/24 is not in subnet 10.2.0.0/24 of bridge 'br0' (the uplink bridges it)"),
        ("address: 203.0.113.2/24", "address: 198.51.100.2/24", "lab.yaml:16: hosts[0].address: 198.51.100.2/24 is not in subnet 203.0.113.0/24 of uplink 'eth0'"),
        ("{name: eth0, address: 203.0.113.1/24}", "{name: eth0, address: 10.2.0.200/24}", "lab.yaml:17: hosts[0].uplink.address: 10.2.0.0/24 overlaps 10.2.0.0/24, a subnet already in the lab (the outside needs its own)"),
        ("    gateway: 10.2.0.1\n", "    gateway: 10.3.0.1\n", "lab.yaml:6: bridges[0].gateway: 10.3.0.1/24 is not in subnet 10.2.0.0/24 of bridge 'br0'"),
        ("    gateway: 10.2.0.1\n", "", "lab.yaml:6: bridges[0].nat: NAT needs a gateway on the bridge (the containers' next hop)"),
        ("    nat: eth0\n", "    nat: up0\n", "lab.yaml:7: bridges[0].nat: no routed uplink named 'up0' (routed uplinks: eth0)"),
        ("{from: c1, to: inet1}\n", "{from: inet1, to: c1}\n", "lab.yaml:22: checks[0].ping.to: 'inet1' has no route to 'c1' (no common subnet, and no NAT uplink of its bridge leading there)"),
        ("{from: c1, to: inet1}\n", "{from: c9, to: inet1}\n", "lab.yaml:22: checks[0].ping.from: no VM, container or host named 'c9'"),
        ("{from: c1, to: inet1}\n", "{from: c1, to: c1}\n", "lab.yaml:22: checks[0].ping.to: a node pinging itself proves nothing about the network"),
        ("{interface: eth0, between: [c1, inet1]", "{interface: eth9, between: [c1, inet1]", "lab.yaml:24: checks[2].capture.interface: no uplink named 'eth9' (uplinks: eth0, up0)"),
        ("{interface: eth0, between: [c1, inet1], expect: [masqueraded]}", "{interface: up0, between: [vm1, lan1], expect: [masqueraded]}", "lab.yaml:24: checks[2].capture.expect: masqueraded is judged on a routed uplink (interface:) leading to between[1]"),
        ("{interface: up0, between: [vm1, lan1], expect: [bridged]}", "{interface: eth0, between: [c1, inet1], expect: [bridged]}", "lab.yaml:25: checks[3].capture.expect: bridged is judged on a bridged uplink (interface:) leading to between[1]"),
        ("{interface: eth0, between: [c1, inet1], expect: [masqueraded]}", "{interface: eth0, between: [vm1, inet1], expect: [masqueraded]}", "checks[2].capture.between: 'vm1' has no route to 'inet1'"),
        ("{interface: eth0, between: [c1, inet1]", "{interface: eth0, bridge: br0, between: [c1, inet1]", "lab.yaml:24: checks[2].capture: expected exactly one of: bridge, interface, link"),
        ("unaddressed: {interface: up0}", "unaddressed: {interface: nope}", "lab.yaml:26: checks[4].unaddressed.interface: no bridge or uplink named 'nope'"),
        ("perf: {from: c1, to: inet1}", "perf: {from: inet1, to: c1}", "lab.yaml:27: checks[5].perf.to: 'inet1' has no route to 'c1'"),
        ("perf: {from: c1, to: inet1}", "perf: {from: c1, to: inet1, seconds: 60}", "lab.yaml:27: checks[5].perf.seconds: expected an integer from 1 to 10, got 60"),
    ],
)
def test_located_problems(old, new, expected):
    assert old in GOOD
    found = problems(GOOD.replace(old, new, 1))
    assert any(expected in p for p in found), found


def test_two_routed_uplinks_need_their_own_subnets():
    text = GOOD.split("checks:")[0] + "  - name: inet2\n    address: 203.0.113.3/24\n    uplink: {name: eth1, address: 203.0.113.4/24}\n"
    assert any("hosts[2].uplink.address: 203.0.113.0/24 overlaps 203.0.113.0/24" in p for p in problems(text))


def test_plan_lists_namespaces_and_veths_before_guests_and_nat_rules():
    plan = make_plan(parse_scenario(GOOD, "lab.yaml"), "s2-lab", PlanOptions())
    kinds = [(r.kind, r.name) for r in plan.resources]
    assert ("namespace", "vnl-s2-lab.c1") in kinds and ("veth", "ve-c1") in kinds
    assert ("namespace", "vnl-s2-lab.inet1") in kinds and ("veth", "eth0") in kinds
    first_tap = next(i for i, (k, _) in enumerate(kinds) if k == "tap")
    assert all(i < first_tap for i, (k, _) in enumerate(kinds) if k == "veth")
    assert kinds.index(("namespace", "vnl-s2-lab.c1")) < kinds.index(("veth", "ve-c1"))  # its namespace exists before the veth
    assert next(b for b in plan.bridges if b.name == "br0").cidr == "10.2.0.1/24"
    c1 = next(n for n in plan.nodes if n.name == "c1")
    assert (c1.bridge, c1.gateway, c1.veth_cidr) == ("br0", "10.2.0.1", None)
    inet1 = next(n for n in plan.nodes if n.name == "inet1")
    assert (inet1.bridge, inet1.veth_cidr, inet1.gateway) == (None, "203.0.113.1/24", None)
    macs = [n.mac for n in plan.nodes] + [n.veth_mac for n in plan.nodes] + [n.mac for v in plan.vms for n in v.all_nics]
    assert len(set(macs)) == len(macs)
    text = ruleset(plan.part("nat"))
    assert 'ip saddr 10.2.0.0/24 oifname "eth0" masquerade' in text and "type nat hook postrouting" in text
    assert "ip -n vnl-s2-lab.c1 route add default via 10.2.0.1" in equivalent_commands(plan, c1)
    explained = nat_commands(plan.namespace, plan.part("nat"))
    assert explained[0] == "ip netns exec vnl-s2-lab sysctl -w net.ipv4.ip_forward=1"
    assert explained[1] == "ip netns exec vnl-s2-lab nft -f - <<'EOF'" and explained[-1] == "EOF"


def test_node_namespaces_of_one_lab_never_name_another_labs_namespace():
    """Lab names cannot contain '.', so vnl-<lab>.<node> is never vnl-<other lab>."""
    s = parse_scenario(GOOD, "lab.yaml")
    a = make_plan(s, "s2-a", PlanOptions())
    b = make_plan(s, "s2-a-c1", PlanOptions())
    assert {n.namespace for n in a.nodes}.isdisjoint({b.namespace})


def test_shipped_lesson_scenarios_are_valid():
    names = {p.stem for p in scenario_files()}
    assert {"vm-bridge-uplink", "container-bridge-nat", "vm-vs-container-perf"} <= names


# -- the bridged / masqueraded judges on packets built in memory (never sent) --

def _frame(src_mac: str, src: str, dst: str, kind: int = 8):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    return Ether(src=src_mac, dst="02:00:00:00:00:ff") / IP(src=src, dst=dst) / ICMP(type=kind)


def _judge(expect: str, packets: list):
    from vnetlab.checks.runner import judge_capture

    plan = make_plan(parse_scenario(GOOD, "lab.yaml"), "s2-lab", PlanOptions())
    check = next(c.capture for c in plan.scenario.checks if c.capture is not None and c.capture.expect == [expect])
    return plan, judge_capture(plan, check, packets, plan.lab_dir / "x.pcap")


def test_masqueraded_needs_the_translated_source_and_no_private_address():
    translated = [_frame("02:00:00:00:00:01", "203.0.113.1", "203.0.113.2") for _ in range(3)]
    _, good = _judge("masqueraded", translated)
    assert good.ok and good.counts == {"translated": 3, "private": 0}
    _, leaked = _judge("masqueraded", translated + [_frame("02:00:00:00:00:01", "10.2.0.2", "203.0.113.2")])
    assert not leaked.ok and leaked.counts["private"] == 1 and "1 with a private address" in leaked.detail
    _, none = _judge("masqueraded", [])
    assert not none.ok and "≥3 packets 203.0.113.1 (translated) → 203.0.113.2" in none.detail


ROUTER_NAT = """\
name: t
bridges:
  - {name: br0, subnet: 10.2.0.0/24}
  - {name: wan, subnet: 203.0.113.0/24}
containers:
  - name: c1
    nic: {bridge: br0, address: 10.2.0.2/24}
  - name: c2
    nic: {bridge: br0, address: 10.2.0.3/24}
hosts:
  - name: inet1
    address: 203.0.113.2/24
    uplink: {name: up0, bridge: wan}
vms:
  - name: router
    nics: [{bridge: br0, address: 10.2.0.1/24}, {bridge: wan, address: 203.0.113.1/24}]
checks:
  - ping: {from: c1, to: 203.0.113.2, count: 2}
  - ping: {from: c2, to: 203.0.113.2}
  - capture: {bridge: wan, between: [router, inet1], expect: [masqueraded]}
"""


def test_masqueraded_by_a_router_vm_is_judged_on_its_outside_bridge():
    from vnetlab.checks.runner import judge_capture

    plan = make_plan(parse_scenario(ROUTER_NAT, "lab.yaml"), "s2-lab", PlanOptions())
    check = plan.scenario.checks[2].capture
    translated = [_frame("52:54:00:00:00:01", "203.0.113.1", "203.0.113.2") for _ in range(5)]
    good = judge_capture(plan, check, translated, plan.lab_dir / "x.pcap")
    assert good.ok and good.counts == {"translated": 5, "private": 0}
    assert good.detail.startswith("expected ≥5 packets 203.0.113.1 (router, translated) → 203.0.113.2 on wan and none with an address of 10.2.0.0/24 (behind router)")
    leaked = judge_capture(plan, check, translated + [_frame("52:54:00:00:00:01", "10.2.0.3", "203.0.113.2")], plan.lab_dir / "x.pcap")
    assert not leaked.ok and leaked.counts == {"translated": 5, "private": 1}  # forwarded, not masqueraded
    too_few = judge_capture(plan, check, translated[:4], plan.lab_dir / "x.pcap")
    assert not too_few.ok
    from vnetlab.features.nat import behind_router

    assert behind_router(plan, "router", "wan") == (["10.2.0.0/24"], ["c1", "c2"])


@pytest.mark.parametrize(
    "between,expected",
    [
        ("[c1, inet1]", "checks[2].capture.between[0]: masqueraded on bridge 'wan' is judged from the VM that masquerades: a VM addressed on 'wan' and on another bridge, got 'c1'"),
        ("[inet1, router]", "checks[2].capture.between[0]: masqueraded on bridge 'wan' is judged from the VM that masquerades: a VM addressed on 'wan' and on another bridge, got 'inet1'"),
        ("[router, c1]", "checks[2].capture.between[1]: masqueraded on bridge 'wan' needs between[1] addressed on it, where the translated packets go; 'c1' is not"),
    ],
)
def test_masqueraded_on_a_bridge_names_the_router_first(between, expected):
    text = ROUTER_NAT.replace("between: [router, inet1]", f"between: {between}")
    found = problems(text)
    assert any(p.endswith(expected) for p in found), found


def test_bridged_needs_the_vms_own_mac():
    plan, _ = _judge("bridged", [])
    vm1 = plan.vm("vm1").nics[0]
    _, good = _judge("bridged", [_frame(vm1.mac, "10.2.0.10", "10.2.0.100")])
    assert good.ok and good.counts == {"bridged_own_mac": 1, "bridged_from_a": 1}
    _, routed = _judge("bridged", [_frame("02:00:00:00:00:01", "10.2.0.10", "10.2.0.100")])
    assert not routed.ok and routed.counts == {"bridged_own_mac": 0, "bridged_from_a": 1}
