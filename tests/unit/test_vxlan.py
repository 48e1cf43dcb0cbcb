"""The vxlan feature without guests: its rules (each message at its line), the default underlay, the
route across the joined bridges, its plan part, resources and YAML, `--explain`, the graph, the
`vxlan` and `unencapsulated` judges on synthetic scapy packets, inspect on a stand-in kernel — and,
as root, the network part for real (containers on both sides, no VMs): the checks pass through the
real check runner, inspect reads the devices back, teardown leaves nothing."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from vnetlab.backends import linux_bridge, netns
from vnetlab.checks.base import CaptureSubject
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.features import vxlan
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.run.state import LabState, RecordedResource, make_private_dir
from vnetlab.tools import explain as ex
from vnetlab.tools.graph import topology
from scenario_helpers import checks_appended, problems

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")

BASE = """\
name: vx-lab
bridges:
  - {name: bra, subnet: 10.1.1.0/24}
  - {name: brb, subnet: 10.1.1.0/24}
vxlan:
  - {name: vx10, vni: 10, bridges: [bra, brb]}
vms:
  - name: vm1
    nics: [{bridge: bra, address: 10.1.1.1/24}]
  - name: vm2
    nics: [{bridge: brb, address: 10.1.1.2/24}]
"""


def with_checks(*checks: str, base: str = BASE) -> str:
    return checks_appended(base, *checks)


def plan_of(text: str = BASE, lab: str = "x-lab"):
    return make_plan(parse_scenario(text, "lab.yaml"), lab, PlanOptions(kernel=KERNEL))


def lesson_plan():
    return make_plan(load_scenario(SCENARIOS_DIR / "vxlan-overlay.yaml"), "vxlan-overlay", PlanOptions(kernel=KERNEL))


# -- the model: shape and rules, each at its line ----------------------------------------------


def test_the_lesson_loads_and_both_bridges_declare_one_subnet():
    scenario = load_scenario(SCENARIOS_DIR / "vxlan-overlay.yaml")
    (vx,) = scenario.vxlan
    assert (vx.name, vx.vni, vx.bridges, vx.underlay) == ("vx10", 10, ["bra", "brb"], "192.168.100.0/24")
    assert [b.subnet for b in scenario.bridges] == ["10.1.1.0/24", "10.1.1.0/24"]
    assert [c.kind for c in scenario.checks] == ["ping", "ping", "capture", "capture"]
    assert load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml").vxlan == []


def test_the_scenario_file_names_its_schema_first_and_explains_the_mtu():
    text = (SCENARIOS_DIR / "vxlan-overlay.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schema/scenario.schema.json"
    assert "1550" in text and yaml.safe_load(text)["name"] == "vxlan-overlay"
    assert "1550" in vxlan.__doc__ and "1450" in vxlan.__doc__


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("vni: 10", "vni: 0", "lab.yaml:6: vxlan[0].vni: expected an integer from 1 to 16777215, got 0"),
        ("vni: 10", "vni: 16777216", "lab.yaml:6: vxlan[0].vni: expected an integer from 1 to 16777215, got 16777216"),
        ("name: vx10", "name: abcdefghijklmn", "lab.yaml:6: vxlan[0].name: 'abcdefghijklmn' is 14 characters long; at most 13 allowed"),
        ("bridges: [bra, brb]", "bridges: [bra, brb, bra]", "lab.yaml:6: vxlan[0]: bridges: expected exactly two different bridge names (one per side of the tunnel), got 3"),
        ("bridges: [bra, brb]", "bridges: [bra, brx]", "lab.yaml:6: vxlan[0].bridges[1]: no bridge named 'brx' (bridges: bra, brb)"),
        ("vni: 10,", "vni: 10, underlay: 10.1.1.0/25,", "lab.yaml:6: vxlan[0].underlay: 10.1.1.0/25 overlaps the subnet of bridge bra: the underlay needs a subnet of its own (both hypervisors route it)"),
        ("vni: 10,", "vni: 10, underlay: 172.30.255.0/24,", "lab.yaml:6: vxlan[0].underlay: 172.30.255.0/24 overlaps the management subnet: the underlay needs a subnet of its own (both hypervisors route it)"),
    ],
)
def test_bad_vxlans_are_located(old, new, expected):
    found = problems(BASE.replace(old, new))
    assert found == [expected]


def test_an_underlay_may_not_overlap_another_or_a_routed_uplink():
    two = BASE.replace(
        "  - {name: vx10, vni: 10, bridges: [bra, brb]}\n",
        "  - {name: vx10, vni: 10, bridges: [bra, brb], underlay: 192.168.7.0/24}\n  - {name: vx20, vni: 20, bridges: [brb, brc], underlay: 192.168.7.0/25}\n",
    ).replace("bridges:\n  - {name: bra", "bridges:\n  - {name: brc}\n  - {name: bra")
    assert problems(two) == ["lab.yaml:8: vxlan[1].underlay: 192.168.7.0/25 overlaps the underlay of vxlan[0]: the underlay needs a subnet of its own (both hypervisors route it)"]
    host = BASE.replace("vms:", "hosts:\n  - {name: inet1, address: 192.168.100.2/24, uplink: {name: eth0, address: 192.168.100.1/24}}\nvms:").replace(
        "bridges: [bra, brb]}", "bridges: [bra, brb], underlay: 192.168.100.0/24}"
    )
    assert problems(host) == ["lab.yaml:6: vxlan[0].underlay: 192.168.100.0/24 overlaps host inet1: the underlay needs a subnet of its own (both hypervisors route it)"]


def test_the_default_underlay_is_the_first_free_one():
    scenario = parse_scenario(BASE, "lab.yaml")
    assert [str(n) for n in vxlan.underlays(scenario)] == ["192.168.100.0/24"]
    crowded = BASE.replace("subnet: 10.1.1.0/24}\n  - {name: brb", "subnet: 10.1.1.0/24}\n  - {name: brc, subnet: 192.168.100.0/23}\n  - {name: brb").replace(
        "  - {name: vx10, vni: 10, bridges: [bra, brb]}\n",
        "  - {name: vx10, vni: 10, bridges: [bra, brb]}\n  - {name: vx20, vni: 20, bridges: [brb, brd], underlay: 192.168.103.0/24}\n  - {name: vx30, vni: 30, bridges: [brd, bre]}\n",
    ).replace("vxlan:", "  - {name: brd}\n  - {name: bre}\nvxlan:")
    assert [str(n) for n in vxlan.underlays(parse_scenario(crowded, "lab.yaml"))] == ["192.168.102.0/24", "192.168.103.0/24", "192.168.104.0/24"]


def test_vms_on_the_two_bridges_ping_by_name_only_across_a_vxlan():
    assert problems(with_checks("ping: {from: vm1, to: vm2}", "ping: {from: vm2, to: vm1}")) == []
    without = BASE.replace("vxlan:\n  - {name: vx10, vni: 10, bridges: [bra, brb]}\n", "")
    assert problems(with_checks("ping: {from: vm1, to: vm2}", base=without)) == [
        "lab.yaml:11: checks[0].ping.to: 'vm1' and 'vm2' have no addressed NICs on a common subnet"
    ]


def test_a_vxlan_and_bridge_links_make_one_segment_for_routing():
    chain = BASE.replace("vxlan:", "  - {name: brc}\nbridge-links:\n  - between: [brb, brc]\nvxlan:").replace("nics: [{bridge: brb,", "nics: [{bridge: brc,")
    assert problems(with_checks("ping: {from: vm1, to: vm2}", base=chain)) == []


def test_capture_expectations_are_checked_against_the_vxlan():
    assert problems(with_checks("capture: {interface: vx10-u, between: [vm1, vm2], expect: [vxlan]}", "capture: {bridge: brb, between: [vm2, vm1], expect: [unencapsulated]}")) == []
    assert problems(with_checks("capture: {interface: vx11-u, between: [vm1, vm2], expect: [vxlan]}")) == [
        "lab.yaml:13: checks[0].capture.interface: no uplink named 'vx11-u' (uplinks: vx10-u)"
    ]
    # the core's arp/icmp-echo judge VMs on the captured bridge only: vm2 is behind the VXLAN
    assert problems(with_checks("capture: {bridge: bra, between: [vm1, vm2], expect: [arp, icmp-echo]}")) == [
        "lab.yaml:13: checks[0].capture.between[1]: VM 'vm2' has no addressed NIC on bridge 'bra'"
    ]


# -- plan, YAML --------------------------------------------------------------------------------


def test_plan_names_addresses_mtus_and_macs():
    plan = plan_of()
    (vx,) = plan.part("vxlan")
    assert (vx.name, vx.vni, vx.port, vx.underlay, vx.underlay_iface, vx.namespace) == ("vx10", 10, 4789, "192.168.100.0/24", "vx10-u", "vnl-x-lab.vx10")
    assert (vx.mtu, vx.underlay_mtu) == (1500, 1550)
    assert [(s.bridge, s.device, s.address) for s in vx.sides] == [("bra", "vx10-a", "192.168.100.1/24"), ("brb", "vx10-b", "192.168.100.2/24")]
    macs = [m for s in vx.sides for m in (s.device_mac, s.underlay_mac)]
    others = {b.mac for b in plan.bridges} | {n.mac for vm in plan.vms for n in vm.all_nics}
    assert len(set(macs)) == 4 and not set(macs) & others and all(m.startswith("02:00:00:") for m in macs)
    assert plan_of().part("vxlan") == plan.part("vxlan")  # deterministic
    assert all(len(name) <= 15 for name in vxlan.devices("a" * vxlan.NAME_MAX))


def test_resources_come_after_the_bridges_each_before_what_needs_it():
    kinds = [(r.kind, r.name) for r in plan_of().resources]
    mine = kinds[kinds.index(("namespace", "vnl-x-lab.vx10")):][:4]
    assert mine == [("namespace", "vnl-x-lab.vx10"), ("veth", "vx10-u"), ("vxlan", "vx10-a"), ("vxlan", "vx10-b")]
    assert kinds.index(("bridge", "brb")) < kinds.index(("namespace", "vnl-x-lab.vx10")) < kinds.index(("tap", plan_of().vms[0].mgmt.tap))


def test_a_bridge_mtu_raises_the_vxlan_and_the_underlay():
    (vx,) = plan_of(BASE.replace("{name: brb, subnet: 10.1.1.0/24}", "{name: brb, subnet: 10.1.1.0/24, mtu: 9000}")).part("vxlan")
    assert (vx.mtu, vx.underlay_mtu) == (9000, 9050)
    (top,) = plan_of(BASE.replace("{name: brb, subnet: 10.1.1.0/24}", "{name: brb, subnet: 10.1.1.0/24, mtu: 65535}")).part("vxlan")
    assert (top.mtu, top.underlay_mtu) == (65485, 65535)


def test_dump_and_no_part_without_vxlan():
    plan = plan_of()
    (entry,) = plan_data(plan)["vxlan"]
    assert entry["vni"] == 10 and entry["dstport"] == 4789 and entry["mtu"] == 1500
    assert entry["underlay"] == {"subnet": "192.168.100.0/24", "interface": "vx10-u", "mtu": 1550, "namespace_b": "vnl-x-lab.vx10"}
    assert [(s["device"], s["created_in"], s["underlay_address"]) for s in entry["sides"]] == [
        ("vx10-a", "vnl-x-lab", "192.168.100.1/24"), ("vx10-b", "vnl-x-lab.vx10", "192.168.100.2/24"),
    ]
    plain = make_plan(load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml"), "x", PlanOptions(kernel=KERNEL))
    assert plain.part("vxlan", None) is None and "vxlan" not in plan_data(plain)
    assert vxlan.explain_lines(plain) == [] and vxlan.inspect_rows(plain) == []


# -- explain, graph ----------------------------------------------------------------------------


def test_explain_builds_side_b_inside_its_namespace_then_moves_it():
    plan = lesson_plan()
    (vx,) = plan.part("vxlan")
    sections = {s.title: s for s in ex.sections(plan)}
    section = sections["VXLAN overlays: two hypervisor stacks joined by an underlay"]
    lab, ns = "vnl-vxlan-overlay", "vnl-vxlan-overlay.vx10"
    assert section.stage == "network"
    assert section.lines == (
        f"# VXLAN vx10, VNI 10: bra behind hypervisor A (the lab namespace's stack), brb behind hypervisor B ({ns})",
        f"ip netns add {ns}",
        f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        f"ip -n {ns} link set lo up",
        "# the underlay 192.168.100.0/24: MTU 1550, so that the guests keep 1500 (VXLAN adds 50 bytes)",
        f"ip -n {lab} link add vx10-u address {vx.a.underlay_mac} mtu 1550 type veth peer name vx10-u netns {ns} address {vx.b.underlay_mac} mtu 1550",
        f"ip -n {lab} addr add 192.168.100.1/24 dev vx10-u",
        f"ip -n {lab} link set vx10-u up",
        f"ip -n {ns} addr add 192.168.100.2/24 dev vx10-u",
        f"ip -n {ns} link set vx10-u up",
        "# side A: its VXLAN device in the lab namespace, a port of bra",
        f"ip -n {lab} link add vx10-a address {vx.a.device_mac} mtu 1500 type vxlan id 10 local 192.168.100.1 remote 192.168.100.2 dstport 4789 dev vx10-u",
        f"ip -n {lab} link set vx10-a master bra up",
        "# side B: made inside hypervisor B's namespace (its UDP socket stays there), then moved into the lab namespace as a port of brb",
        f"ip netns exec {ns} ip link add vx10-b address {vx.b.device_mac} mtu 1500 type vxlan id 10 local 192.168.100.2 remote 192.168.100.1 dstport 4789 dev vx10-u",
        f"ip netns exec {ns} ip link set vx10-b netns {lab}",
        f"ip -n {lab} link set vx10-b master brb up",
        f"# to watch the encapsulated frames cross the underlay: ip netns exec {lab} tcpdump -eni vx10-u udp port 4789",
    )
    assert f"ip netns del {ns}    # its bridges, taps and veths go with it" in sections["Teardown (newest first)"].lines


def test_graph_joins_the_two_bridges_with_the_vni():
    topo = topology(lesson_plan())
    ids = {n.label[0]: n.id for n in topo.bridges}
    (edge,) = [e for e in topo.edges if {e.a, e.b} == {ids["bra"], ids["brb"]}]
    assert edge.label == ["VXLAN VNI 10, UDP 4789", "underlay 192.168.100.0/24 (vx10-u)"] and edge.overlay


# -- the judges, on synthetic packets ----------------------------------------------------------


def _subject(plan, frames):
    return CaptureSubject("vm1", plan.vm("vm1").nics[0], "vm2", plan.vm("vm2").nics[0], frames)


def _echo(plan, kind: str, seq: int):
    a, b = plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]
    if kind == "request":
        return Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / ICMP(type=8, id=7, seq=seq)
    return Ether(src=b.mac, dst=a.mac) / IP(src=b.ip, dst=a.ip) / ICMP(type=0, id=7, seq=seq)


def _arp(plan):
    a, b = plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]
    return [
        Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a.mac, psrc=a.ip, pdst=b.ip),
        Ether(src=b.mac, dst=a.mac) / ARP(op=2, hwsrc=b.mac, psrc=b.ip, hwdst=a.mac, pdst=a.ip),
    ]


def _encapsulated(vx, inner, vni=None, forward=True):
    src, dst = (vx.a, vx.b) if forward else (vx.b, vx.a)
    outer = Ether(src=src.underlay_mac, dst=dst.underlay_mac) / IP(src=src.ip, dst=dst.ip) / UDP(sport=40000, dport=4789)
    return Ether(bytes(outer / VXLAN(vni=vx.vni if vni is None else vni) / inner))  # as the capture parses it


def _pings(plan, n: int = 6):
    return [_echo(plan, kind, seq) for seq in range(n) for kind in ("request", "reply")]


def _lesson_checks(plan):
    return [c.capture for c in plan.scenario.checks if c.capture is not None]


def test_vxlan_judge_finds_the_vni_and_the_echo_inside():
    plan = lesson_plan()
    (vx,) = plan.part("vxlan")
    underlay_check, _ = _lesson_checks(plan)
    frames = [_encapsulated(vx, f, forward=i % 2 == 0) for i, f in enumerate(_arp(plan) + _pings(plan))]
    j = vxlan.judge_vxlan(plan, underlay_check, _subject(plan, frames))
    assert j.ok, j
    assert j.expected == "UDP 4789 datagrams between 192.168.100.1 and 192.168.100.2 with VNI 10, carrying ≥6 ICMP echo request/reply pairs between 10.1.1.1 (vm1) and 10.1.1.2 (vm2)"
    assert j.seen == "14 UDP 4789 datagram(s), 14 with VNI 10; inside them 6 echo request(s), 6 reply(ies), 6 pair(s), 1 ARP request(s), 1 reply(ies)"
    assert j.counts == {
        "vxlan_datagrams": 14, "vxlan_vni_datagrams": 14, "inner_icmp_echo_request": 6, "inner_icmp_echo_reply": 6,
        "inner_icmp_echo_pairs": 6, "inner_arp_request": 1, "inner_arp_reply": 1,
    }


def test_vxlan_judge_fails_on_another_vni_plain_frames_or_too_few_pings():
    plan = lesson_plan()
    (vx,) = plan.part("vxlan")
    check, _ = _lesson_checks(plan)
    other = vxlan.judge_vxlan(plan, check, _subject(plan, [_encapsulated(vx, f, vni=11) for f in _pings(plan)]))
    assert not other.ok and other.counts["vxlan_datagrams"] == 12 and other.counts["vxlan_vni_datagrams"] == 0
    plain = vxlan.judge_vxlan(plan, check, _subject(plan, _pings(plan)))
    assert not plain.ok and plain.seen.startswith("0 UDP 4789 datagram(s)")
    few = vxlan.judge_vxlan(plan, check, _subject(plan, [_encapsulated(vx, f) for f in _pings(plan, 5)]))
    assert not few.ok and few.counts["inner_icmp_echo_pairs"] == 5
    junk = Ether() / IP(src=vx.a.ip, dst=vx.b.ip) / UDP(sport=1, dport=4789) / b"\x08"
    stray = Ether() / IP(src="192.168.100.9", dst=vx.b.ip) / UDP(sport=1, dport=4789) / VXLAN(vni=10) / _pings(plan)[0]
    j = vxlan.judge_vxlan(plan, check, _subject(plan, [Ether(bytes(junk)), stray, *(_encapsulated(vx, f) for f in _pings(plan))]))
    assert j.ok and j.counts["vxlan_datagrams"] == 13 and j.counts["vxlan_vni_datagrams"] == 12  # junk counted, unreadable; stray ignored


def test_unencapsulated_judge_wants_plain_echo_and_no_vxlan_on_the_bridge():
    plan = lesson_plan()
    (vx,) = plan.part("vxlan")
    _, bridge_check = _lesson_checks(plan)
    j = vxlan.judge_unencapsulated(plan, bridge_check, _subject(plan, _arp(plan) + _pings(plan)))
    assert j.ok, j
    assert j.expected == "≥6 ICMP echo request/reply pairs between 10.1.1.1 (vm1) and 10.1.1.2 (vm2) as plain frames, and no UDP 4789 (VXLAN) datagram on bra"
    assert j.counts == {"plain_icmp_echo_pairs": 6, "plain_arp_request": 1, "plain_arp_reply": 1, "vxlan_datagrams_on_bridge": 0}
    leaked = vxlan.judge_unencapsulated(plan, bridge_check, _subject(plan, _pings(plan) + [_encapsulated(vx, _pings(plan)[0])]))
    assert not leaked.ok and leaked.counts["vxlan_datagrams_on_bridge"] == 1
    assert not vxlan.judge_unencapsulated(plan, bridge_check, _subject(plan, _pings(plan, 2))).ok


# -- inspect and teardown, with stand-ins ------------------------------------------------------


def _live(plan, **changes):
    (vx,) = plan.part("vxlan")
    devices = {
        "vx10-a": {"kind": "vxlan", "vni": 10, "local": "192.168.100.1", "remote": "192.168.100.2", "port": 4789, "master": "bra", "mtu": 1500, "state": "up", "addresses": []},
        "vx10-b": {"kind": "vxlan", "vni": 10, "local": "192.168.100.2", "remote": "192.168.100.1", "port": 4789, "master": "brb", "mtu": 1500, "state": "up", "addresses": []},
        "vx10-u": {"kind": "veth", "master": None, "mtu": 1550, "state": "up", "addresses": ["192.168.100.1/24"]},
    }
    for name, fields in changes.items():
        if fields is None:
            devices.pop(name)
        else:
            devices[name] = {**devices[name], **fields}
    return devices


def _inspect(monkeypatch, plan, live):
    monkeypatch.setattr(vxlan, "read_devices", lambda ns: live)
    monkeypatch.setattr(vxlan.netns, "namespace_exists", lambda ns: True)
    return vxlan.inspect_rows(plan)


def test_inspect_reads_each_device_back(monkeypatch):
    plan = lesson_plan()
    rows = _inspect(monkeypatch, plan, _live(plan))
    assert [(r.what, r.state, r.problems) for r in rows] == [
        ("VXLAN vx10-a", "VNI 10, local 192.168.100.1, remote 192.168.100.2, port 4789, master bra, MTU 1500, up", []),
        ("VXLAN vx10-b", "VNI 10, local 192.168.100.2, remote 192.168.100.1, port 4789, master brb, MTU 1500, up", []),
        ("VXLAN vx10 underlay vx10-u", "192.168.100.1/24, MTU 1550, up", []),
    ]
    assert rows[0].planned == rows[0].state


def test_inspect_flags_what_differs_or_is_missing(monkeypatch):
    plan = lesson_plan()
    rows = _inspect(monkeypatch, plan, _live(plan, **{"vx10-a": {"master": None, "vni": 11}, "vx10-b": None, "vx10-u": {"mtu": 1500}}))
    assert [r.problems for r in rows] == [
        ["vx10-a vni is 11, planned 10", "vx10-a master is None, planned bra"],
        ["no VXLAN device vx10-b in vnl-vxlan-overlay"],
        ["underlay vx10-u differs from the plan"],
    ]
    assert _inspect(monkeypatch, plan, {})[2].problems == ["no underlay vx10-u in vnl-vxlan-overlay"]


def test_the_remover_deletes_the_device_in_the_lab_namespace(monkeypatch):
    deleted = []
    monkeypatch.setattr(vxlan.linux_bridge, "delete_link", lambda ns, name: deleted.append((ns, name)))
    state = LabState("x", "vxlan-overlay", "f.yaml", "vnl-x", "qemu", "", 1)
    vxlan.remove_device(RecordedResource("vxlan", "vx10-b"), state, Path("/nonexistent"))
    assert deleted == [("vnl-x", "vx10-b")]
    assert vxlan.Vxlan().removers == {"vxlan": vxlan.remove_device}


# -- for real, as root: the network part with containers on both sides -------------------------

REAL = (
    BASE.replace("name: vx-lab", "name: vx-real").replace("  - name: vm2\n    nics: [{bridge: brb, address: 10.1.1.2/24}]\n", "")
    + "containers:\n  - {name: c1, nic: {bridge: bra, address: 10.1.1.11/24}}\n  - {name: c2, nic: {bridge: brb, address: 10.1.1.12/24}}\n"
    + "checks:\n"
    + "".join(f"  - {c}\n" for c in (
        "ping: {from: c1, to: c2}",
        "ping: {from: c2, to: c1}",
        'command: {node: c1, run: "ping -c 2 -W 2 -M do -s 1472 10.1.1.12"}',  # 1500-byte packets cross: the underlay's 1550 makes room
        "capture: {interface: vx10-u, between: [c1, c2], expect: [vxlan]}",
        "capture: {bridge: bra, between: [c1, c2], expect: [unencapsulated]}",
    ))
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_the_overlay_for_real_without_vms(tmp_path):
    from vnetlab.checks.runner import run_checks
    from vnetlab.run.apply import create_network
    from vnetlab.run.lab import removers
    from vnetlab.run.teardown import teardown

    name = f"x-rt{secrets.token_hex(3)}"
    plan = make_plan(parse_scenario(REAL, "real.yaml"), name, PlanOptions(layout=Layout(tmp_path)))
    make_private_dir(plan.lab_dir)
    state = LabState(name, "vx-real", "real.yaml", plan.namespace, "qemu", "", os.getpid())
    state.save(plan.lab_dir)
    try:
        create_network(plan, state)
        assert [(r.kind, r.name) for r in state.resources][-4:] == [("namespace", f"vnl-{name}.vx10"), ("veth", "vx10-u"), ("vxlan", "vx10-a"), ("vxlan", "vx10-b")]
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        results, _ = run_checks(plan, {}, run_dir)
        assert [r.ok for r in results] == [True] * 5, [r.detail for r in results]
        assert results[3].counts["vxlan_vni_datagrams"] >= 6 and results[3].counts["inner_icmp_echo_pairs"] >= 6, results[3].detail
        assert results[4].counts["vxlan_datagrams_on_bridge"] == 0, results[4].detail
        rows = vxlan.inspect_rows(plan)
        assert [r.problems for r in rows] == [[], [], []], rows
        assert rows[1].state == "VNI 10, local 192.168.100.2, remote 192.168.100.1, port 4789, master brb, MTU 1500, up"
        assert not [link for link in linux_bridge.list_links(None) if link["name"].startswith("vx10")]  # nothing in the root namespace
    finally:
        assert teardown(plan.lab_dir, state, removers(plan.scenario.model)) == []
    assert not [ns for ns in netns.list_namespaces() if ns == plan.namespace or ns.startswith(plan.namespace + ".")]


class SimpleCheck:
    """A capture expectation on the VXLAN's underlay interface (what judge_vxlan reads of its check)."""

    def __init__(self, interface: str):
        self.interface, self.bridge = interface, None


def test_the_vxlan_judges_find_each_nodes_address_on_the_joined_bridges():
    """A VM sends from its NIC on the VXLAN's bridges, not its first; a container from its eth0 there."""
    from vnetlab.checks.base import endpoint
    from vnetlab.checks.runner import judge_capture

    two_nics = BASE.replace("  - name: vm2\n    nics: [{bridge: brb, address: 10.1.1.2/24}]\n",
                            "  - name: vm2\n    nics: [{bridge: brx, address: 10.7.7.2/24}, {bridge: brb, address: 10.1.1.2/24}]\n")
    plan = plan_of(two_nics.replace("  - {name: brb, subnet: 10.1.1.0/24}\n", "  - {name: brb, subnet: 10.1.1.0/24}\n  - {name: brx, subnet: 10.7.7.0/24}\n"))
    (vx,) = plan.part("vxlan")
    first, on_brb = plan.vm("vm2").nics
    assert vxlan._on_sides(plan, vx, "vm2", first) is on_brb and vxlan._on_sides(plan, vx, "vm1", first) is plan.vm("vm1").nics[0]
    assert vxlan._on_sides(plan, vx, "nobody", first) is first
    a, b = plan.vm("vm1").nics[0], on_brb
    pings = [Ether(src=x.mac, dst=y.mac) / IP(src=x.ip, dst=y.ip) / ICMP(type=t, id=7, seq=s) for s in range(6) for x, y, t in ((a, b, 8), (b, a, 0))]
    j = vxlan.judge_vxlan(plan, SimpleCheck("vx10-u"), CaptureSubject("vm1", a, "vm2", first, [_encapsulated(vx, f) for f in pings]))
    assert j.ok and j.counts["inner_icmp_echo_pairs"] == 6 and "between 10.1.1.1 (vm1) and 10.1.1.2 (vm2)" in j.expected

    real = plan_of(REAL)
    (rvx,) = real.part("vxlan")
    underlay, bridge = [c.capture for c in real.scenario.checks if c.capture is not None]
    c1, c2 = endpoint(real, "c1", underlay.on), endpoint(real, "c2", underlay.on)
    assert vxlan._on_sides(real, rvx, "c1", c2) is c1  # the container on bra, whatever else is at hand
    frames = [Ether(src=x.mac, dst=y.mac) / IP(src=x.ip, dst=y.ip) / ICMP(type=t, id=7, seq=s) for s in range(6) for x, y, t in ((c1, c2, 8), (c2, c1, 0))]  # its two pings: 3 pairs each
    carried = judge_capture(real, underlay, [_encapsulated(rvx, f) for f in frames], Path("u.pcap"))
    assert carried.ok and carried.counts["inner_icmp_echo_pairs"] == 6 and "between 10.1.1.11 (c1) and 10.1.1.12 (c2)" in carried.detail
    plain = judge_capture(real, bridge, frames, Path("b.pcap"))
    assert plain.ok and plain.counts["plain_icmp_echo_pairs"] == 6
