"""A VXLAN overlay (`vxlan:`): two bridges, each behind its own "hypervisor", joined over an L3 underlay.

- Each entry plays two hypervisors. Hypervisor A's network stack is the lab namespace itself;
  hypervisor B's is a namespace of its own, `<lab namespace>.<name>`. The underlay is a veth pair
  between the two stacks, `<name>-u` at both ends, addressed .1 (A) and .2 (B) on the underlay
  subnet (default: the first of 192.168.100.0/24 … 192.168.255.0/24 that overlaps nothing in the lab).
- Side A's VXLAN device `<name>-a` is made in the lab namespace (VNI from the scenario, local .1,
  remote .2, dstport 4789 set explicitly, dev `<name>-u`) and is a port of the first bridge. Side
  B's device `<name>-b` is made *inside* B's namespace (local .2, remote .1) and then moved into
  the lab namespace as a port of the second bridge: a VXLAN device keeps its UDP socket in the
  namespace it was created in. So every bridge stays in the lab namespace (captures, inspect and
  the taps work as for any bridge), yet a frame from one bridge to the other is encapsulated by
  one stack, crosses the underlay veth as UDP 4789 and is decapsulated by the other. The VMs on
  both bridges share one Ethernet segment: a ping between them needs no router.
- MTU: VXLAN adds 50 bytes to every frame (outer IPv4 20, UDP 8, VXLAN 8, the inner Ethernet
  header 14). Rather than lowering every guest to 1450, the underlay veth gets MTU 1550 and the
  VXLAN devices 1500, so the guests keep 1500 (a bridge with a larger `mtu:` raises both as much).
- A second path between two bridges (another VXLAN, or bridge-links beside it) closes a loop that
  floods the lab namespace forever: refused.
- The `vxlan` capture expectation, on the underlay (`interface: <name>-u`), requires UDP 4789
  datagrams with the scenario's VNI whose inner frames carry the ICMP echo between the two nodes;
  `unencapsulated`, on one of the bridges, requires that echo as plain frames and no VXLAN there.
- Teardown: the devices, the underlay and B's namespace are recorded before each exists;
  removing B's namespace takes its end of the underlay, and with it both VXLAN devices.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pyroute2 import IPRoute

from vnetlab.backends import linux_bridge, netns
from vnetlab.checks.base import CaptureSubject, Judgement, expected_echo_pairs
from vnetlab.checks.capture import count_arp_icmp, vxlan_payloads
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.addressing import bridge_subnets, nic_addresses
from vnetlab.model.validate import Rules, feature_nodes, interface, network, node_interfaces, route_across, unusable
from vnetlab.plan.planner import Plan, PlanContext, PlannedNic, PlannedNode, PlanPart, Resource
from vnetlab.run.state import LabState, RecordedResource
from vnetlab.tools.explain import Section
from vnetlab.tools.inspect import InspectRow

T = TypeVar("T")

VNI_MAX = (1 << 24) - 1  # a VNI is 24 bits; 0 is refused (some stacks treat it as "no VNI")
PORT = 4789  # IANA's VXLAN port (Linux's own default is still 8472): set explicitly
OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + the inner Ethernet header 14
DEFAULT_MTU = 1500
MTU_MAX = 65535  # a veth's largest MTU
NAME_MAX = IFACE_MAX - 2  # the devices are <name>-a, <name>-b, <name>-u
DEFAULT_UNDERLAYS = tuple(ipaddress.IPv4Network(f"192.168.{n}.0/24") for n in range(100, 256))


class VxlanError(VnetlabError):
    """A VXLAN device, its underlay or its hypervisor namespace could not be made or read."""


# -- the scenario keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VxlanSpec:
    """A VXLAN joining two bridges, each behind its own hypervisor stack, over a veth underlay."""

    name: str = spec(
        "its name: the devices are <name>-a (on the first bridge), <name>-b (on the second) and the underlay <name>-u; "
        "hypervisor B's namespace is <lab namespace>.<name>",
        pattern=NAME, max_length=NAME_MAX,
    )
    vni: int = spec("VXLAN network identifier, 1 to 16777215", minimum=1, maximum=VNI_MAX)
    bridges: list[str] = spec("the two Linux bridges it joins: the first behind the lab namespace's stack (hypervisor A), the second behind hypervisor B's", min_items=2)
    underlay: str | None = spec(
        "IPv4 subnet of the underlay veth between the two hypervisors (A takes .1, B .2); default: the first free /24 of 192.168.100.0–192.168.255.0",
        default=None,
    )

    def check_shape(self) -> list[str]:
        n = len(self.bridges)
        return [] if n == 2 else [f"bridges: expected exactly two different bridge names (one per side of the tunnel), got {n}"]


@dataclass(frozen=True)
class HostsVxlanSpec:
    """`vxlan:` written as a mapping: the VXLAN between the hypervisors of a lab over several
    machines (`hypervisors:`; the hypervisors feature makes it)."""

    dstport: int = spec("UDP port of the VXLAN between hypervisors", default=PORT, minimum=1, maximum=65535)
    vni_base: int = spec("VNI of the management network; bridge k (from 1) gets vni-base + k", default=100000, minimum=1, maximum=VNI_MAX - 4096, key="vni-base")
    mtu: Literal["guest-1450", "underlay-jumbo"] = spec(
        "guest-1450: the guests' NICs on stretched bridges get MTU 1450 (any underlay); underlay-jumbo: they keep 1500, the underlay must carry 1550",
        default="guest-1450",
    )


def tunnels(scenario: Any) -> list[Any]:
    """The tunnels of `vxlan:` as a list (this lesson's); none when it is the mapping of a multi-host lab."""
    return scenario.vxlan if isinstance(scenario.vxlan, list) else []


def devices(name: str) -> tuple[str, str, str]:
    """(side A's VXLAN device, side B's, the underlay veth: the same name at both ends)."""
    return f"{name}-a", f"{name}-b", f"{name}-u"


def hypervisor_namespace(lab_namespace: str, name: str) -> str:
    """Hypervisor B's namespace. Lab names cannot contain '.', so it is no other lab's namespace;
    a container or host of the same name would have the same one (refused by the rules)."""
    return f"{lab_namespace}.{name}"


def _pairs(scenario: Any, joins: Any) -> list[tuple[str, str]]:
    """The joins (each a list of bridge names) that are pairs of two different bridges that exist."""
    names = {b.name for b in scenario.bridges}
    return [(p[0], p[1]) for p in map(tuple, joins) if len(p) == 2 and p[0] != p[1] and set(p) <= names]


def _link_pairs(scenario: Any) -> list[tuple[str, str]]:
    """Bridges joined by bridge-links (the stp feature's key, read by name: absent without it)."""
    return _pairs(scenario, (lk.between for lk in getattr(scenario, "bridge_links", ())))


def _bridge_pairs(scenario: Any) -> list[tuple[str, str]]:
    """Bridges joined into one Ethernet segment: by bridge-links and by the VXLANs."""
    return _link_pairs(scenario) + _pairs(scenario, (v.bridges for v in tunnels(scenario)))


def _segments(pairs: list[tuple[str, str]]) -> Callable[[str], str]:
    """Union-find: bridge → a representative of the Ethernet segment it belongs to."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return find


def _taken_networks(scenario: Any) -> list[tuple[ipaddress.IPv4Network, str]]:
    """Every subnet of the lab an underlay must not overlap, with what it is."""
    out = [(net, "the management subnet") for net in [network(scenario.management.subnet)] if net]
    out += [(net, f"the subnet of bridge {b.name}") for b in scenario.bridges if (net := bridge_subnets(b).ipv4) is not None]
    addresses = [(str(a.ipv4), f"{vm.name}'s NIC on {n.bridge}") for vm in scenario.vms for n in vm.nics if (a := nic_addresses(n)).ipv4 is not None]
    addresses += [(address, f"{node.kind} {node.name}") for node in feature_nodes(scenario) for _, address in node.interfaces]
    out += [(iface.network, what) for address, what in addresses if address and (iface := interface(address))]
    return out


def underlays(scenario: Any) -> list[ipaddress.IPv4Network | None]:
    """Each VXLAN's underlay: its own `underlay:` (None if not a network), else the first default
    that overlaps neither the lab's subnets nor another underlay (None if all do)."""
    given = [network(v.underlay) if v.underlay is not None else None for v in tunnels(scenario)]
    taken = [net for net, _ in _taken_networks(scenario)] + [n for n in given if n is not None]
    out: list[ipaddress.IPv4Network | None] = []
    for spec_, net in zip(tunnels(scenario), given):
        if spec_.underlay is None:
            net = next((d for d in DEFAULT_UNDERLAYS if not any(d.overlaps(t) for t in taken)), None)
            if net is not None:
                taken.append(net)
        out.append(net)
    return out


def _validate(rules: Rules) -> None:
    scenario = rules.scenario
    bridges = {b.name: b for b in scenario.bridges}
    nodes = {n.name for n in feature_nodes(scenario)}
    names: set[str] = set()
    vnis: dict[int, int] = {}
    for i, vx in enumerate(tunnels(scenario)):
        path = f"vxlan[{i}]"
        if vx.name in names:
            rules.add(f"{path}.name", f"duplicate VXLAN name {vx.name!r}")
        elif vx.name.startswith("vnl"):
            rules.add(f"{path}.name", "names starting with 'vnl' are reserved for vnetlab's own devices")
        elif vx.name in nodes:
            rules.add(f"{path}.name", f"{vx.name!r} is already the name of a container or host: its namespace would be hypervisor B's")
        elif clash := sorted(set(devices(vx.name)) & rules.lab_ifaces):
            rules.add(f"{path}.name", f"its device {clash[0]!r} clashes with another interface of the lab namespace")
        names.add(vx.name)
        rules.lab_ifaces |= set(devices(vx.name))
        if vx.vni in vnis:  # both side A devices would share the lab namespace's UDP socket on port 4789
            rules.add(f"{path}.vni", f"duplicate VNI {vx.vni} (vxlan[{vnis[vx.vni]}] has it): each VXLAN needs its own")
        vnis.setdefault(vx.vni, i)
        for k, name in enumerate(vx.bridges[:2]):
            if name not in bridges:
                rules.add(f"{path}.bridges[{k}]", f"no bridge named {name!r} (bridges: {', '.join(bridges) or 'none'})")
            elif bridges[name].type != "linux":
                rules.add(f"{path}.bridges[{k}]", f"bridge {name!r} is of type {bridges[name].type}, which takes no VXLAN device here: vnetlab joins Linux bridges (type linux) only")
        if len(vx.bridges) == 2 and vx.bridges[0] == vx.bridges[1]:
            rules.add(f"{path}.bridges", f"both sides on {vx.bridges[0]!r}: expected two different bridges")
    _validate_loops(rules)
    _validate_underlays(rules)


def _validate_loops(rules: Rules) -> None:
    """A second path between two bridges closes a loop: each VXLAN is checked against the bridge-links and the VXLANs before it."""
    scenario = rules.scenario
    pairs = _link_pairs(scenario)
    for i, vx in enumerate(tunnels(scenario)):
        for a, b in _pairs(scenario, [vx.bridges]):
            segment = _segments(pairs)
            if segment(a) == segment(b):
                rules.add(
                    f"vxlan[{i}].bridges",
                    f"this VXLAN clashes with the bridge-links or VXLANs that already join {a} and {b} into one Ethernet segment: "
                    "a second path between them closes a loop, and a broadcast would circle it forever",
                )
            else:
                pairs.append((a, b))


def _validate_underlays(rules: Rules) -> None:
    scenario = rules.scenario
    taken = _taken_networks(scenario)
    chosen = underlays(scenario)
    for i, (vx, net) in enumerate(zip(tunnels(scenario), chosen)):
        path = f"vxlan[{i}].underlay"
        if vx.underlay is None:
            if net is None:
                rules.add(path, f"every default underlay ({DEFAULT_UNDERLAYS[0]} to {DEFAULT_UNDERLAYS[-1]}) overlaps a subnet of the lab: set underlay: to a free subnet")
            continue
        if net is None:
            rules.add(path, f"expected an IPv4 network like 192.168.100.0/24 (host bits zero), got {vx.underlay!r}")
        elif why := unusable(net):
            rules.add(path, why)
        elif net.prefixlen > 30:
            rules.add(path, f"{net} is too small: the underlay needs two host addresses (/30 or larger)")
        elif clash := next((what for other, what in taken if other.overlaps(net)), None):
            rules.add(path, f"{net} overlaps {clash}: the underlay needs a subnet of its own (both hypervisors route it)")
        taken += [(net, f"the underlay of vxlan[{i}]")] if net is not None else []


def _vxlan_of(scenario: Any, cap: Any) -> Any:
    """The VXLAN a capture is about: the one whose underlay it listens on, or one of whose bridges."""
    for vx in tunnels(scenario):
        if cap.interface == devices(vx.name)[2] or (cap.bridge is not None and cap.bridge in vx.bridges):
            return vx
    return None


def _across(scenario: Any, vx: Any, a: str, b: str) -> bool:
    """Whether a and b are addressed on the two different sides of the VXLAN (either way round)."""
    on = [{seg for seg, _ in node_interfaces(scenario, n)} for n in (a, b)]
    first, second = vx.bridges[:2]
    return (first in on[0] and second in on[1]) or (second in on[0] and first in on[1])


def _validate_sides(rules: Rules, vx: Any, cap: Any, path: str) -> None:
    if len(vx.bridges) == 2 and not _across(rules.scenario, vx, *cap.between):
        first, second = vx.bridges
        rules.add(f"{path}.between", f"the capture is judged between a node on {first} and one on {second}: only their exchange crosses VXLAN {vx.name}")


def _validate_vxlan_capture(rules: Rules, cap: Any, path: str) -> None:
    vx = _vxlan_of(rules.scenario, cap) if cap.interface is not None else None
    if vx is None:
        found = ", ".join(devices(v.name)[2] for v in tunnels(rules.scenario)) or "none"
        rules.add(f"{path}.expect", f"vxlan is judged on the underlay of a VXLAN (interface: {found})")
        return
    _validate_sides(rules, vx, cap, path)


def _validate_unencapsulated(rules: Rules, cap: Any, path: str) -> None:
    vx = _vxlan_of(rules.scenario, cap) if cap.bridge is not None else None
    if vx is None:
        found = ", ".join(dict.fromkeys(b for v in tunnels(rules.scenario) for b in v.bridges)) or "none"
        rules.add(f"{path}.expect", f"unencapsulated is judged on a bridge a VXLAN joins (bridge: {found})")
        return
    _validate_sides(rules, vx, cap, path)


def _route(scenario: Any, source: str, target: str) -> Any:
    """Bridges a VXLAN joins (with bridge-links, if any) are one Ethernet segment: the target's
    address on a subnet the source shares across them."""
    if not tunnels(scenario):
        return None
    segment = _segments(_bridge_pairs(scenario))
    return route_across(scenario, source, target, lambda a, b: segment(a) == segment(b))


def _underlay_ifaces(scenario: Any) -> list[str]:
    return [devices(v.name)[2] for v in tunnels(scenario)]


MODEL = ModelExtension(
    sections=(decl("vxlan", list[VxlanSpec] | HostsVxlanSpec, spec(
        "VXLAN: a list of overlays, each joining two bridges behind their own hypervisor stacks over a veth underlay (UDP 4789); "
        "or, in a lab over several hypervisors (hypervisors:), a mapping of the settings of the VXLAN between them",
        default_factory=list,
    )),),
    expectations=(
        Expectation("vxlan", _validate_vxlan_capture, node_scoped=True),
        Expectation("unencapsulated", _validate_unencapsulated, across_segments=True),
    ),
    validate=_validate,
    lab_interfaces=_underlay_ifaces,
    route=_route,
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One hypervisor's end of a VXLAN: its device (a port of `bridge` in the lab namespace) and its
    underlay end. Side A's stack is the lab namespace; side B's device is made in B's namespace."""

    bridge: str
    device: str
    device_mac: str
    underlay_mac: str  # its end of the underlay veth
    address: str  # its underlay address with prefix: the VXLAN's local address here, the remote one there

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True)
class PlannedVxlan:
    name: str
    vni: int
    port: int
    underlay: str  # the underlay subnet
    underlay_iface: str  # the veth, named so at both ends
    namespace: str  # hypervisor B's
    mtu: int  # of the VXLAN devices: what the guests may send
    underlay_mtu: int  # mtu + OVERHEAD
    a: Side
    b: Side

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b


def _inner_mtu(scenario: Any, names: list[str]) -> int:
    """The larger `mtu:` of the two bridges (the mtu feature's key, read by name), else 1500;
    low enough that the underlay fits a veth."""
    mtus = [getattr(b, "mtu", None) or DEFAULT_MTU for b in scenario.bridges if b.name in names]
    return min(max(mtus, default=DEFAULT_MTU), MTU_MAX - OVERHEAD)


def plan_vxlan(ctx: PlanContext) -> tuple[PlannedVxlan, ...]:
    out = []
    for vx, net in zip(tunnels(ctx.scenario), underlays(ctx.scenario)):
        assert net is not None  # model validation
        dev_a, dev_b, under = devices(vx.name)
        hosts = [f"{net.network_address + k}/{net.prefixlen}" for k in (1, 2)]
        mtu = _inner_mtu(ctx.scenario, vx.bridges)
        sides = [
            Side(bridge, dev, ctx.take_mac("02:00:00", "vxlan", dev), ctx.take_mac("02:00:00", "vxlan-underlay", vx.name, end), address)
            for bridge, dev, end, address in zip(vx.bridges, (dev_a, dev_b), ("a", "b"), hosts)
        ]
        out.append(PlannedVxlan(vx.name, vx.vni, PORT, str(net), under, hypervisor_namespace(ctx.namespace, vx.name), mtu, mtu + OVERHEAD, *sides))
    return tuple(out)


def resources(part: tuple[PlannedVxlan, ...]) -> tuple[Resource, ...]:
    """In creation order: B's namespace, the underlay (its lab end), side A's device, side B's."""
    return tuple(
        r
        for vx in part
        for r in (Resource("namespace", vx.namespace), Resource("veth", vx.underlay_iface), Resource("vxlan", vx.a.device), Resource("vxlan", vx.b.device))
    )


def _part(plan: Plan) -> tuple[PlannedVxlan, ...]:
    return plan.part("vxlan", ())


# -- apply, teardown: netlink in the lab namespace and in B's ------------------------------------


def _netlink(ns: str, what: str, fn: Callable[[IPRoute], T]) -> T:
    return linux_bridge.with_netlink(ns, what, fn, VxlanError)


def _add_device(ns: str, vx: PlannedVxlan, side: Side, remote: Side) -> None:
    """`ip -n NS link add DEV address MAC mtu N type vxlan id VNI local L remote R dstport 4789 dev UNDERLAY`."""
    try:
        linux_bridge.create_vxlan(ns, side.device, vx.vni, side.ip, vx.port, vx.underlay_iface, vx.mtu, remote=remote.ip, mac=side.device_mac)
    except linux_bridge.LinkError as exc:
        raise VxlanError(str(exc)) from None


def _move(source: str, name: str, target: str) -> None:
    """`ip -n SOURCE link set NAME netns TARGET`."""
    fd = os.open(netns.namespace_path(target), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _netlink(source, f"moving {name} into namespace {target}", lambda ipr: ipr.link("set", ifname=name, net_ns_fd=fd))
    finally:
        os.close(fd)


def _underlay_end(ns: str, vx: PlannedVxlan, side: Side) -> None:
    name = vx.underlay_iface

    def op(ipr: IPRoute) -> None:
        ipr.link("set", ifname=name, address=side.underlay_mac, mtu=vx.underlay_mtu)

    _netlink(ns, f"setting the MAC and MTU of {name}", op)
    linux_bridge.add_address(ns, name, side.address)
    linux_bridge.set_link_up(ns, name)


def create_vxlan(plan: Plan, ctx: Any, vx: PlannedVxlan) -> None:
    """B's namespace, the underlay between it and the lab namespace, side A's device there, side B's
    made in B's namespace then moved into the lab namespace; each recorded before it exists."""
    lab = plan.namespace
    if netns.namespace_exists(vx.namespace):  # not recorded: teardown must never remove someone else's namespace
        raise netns.NamespaceError(f"namespace {vx.namespace!r} already exists but no lab state records it: left alone")
    ctx.record("namespace", vx.namespace)
    netns.create_namespace(vx.namespace)
    ctx.record("veth", vx.underlay_iface)  # deleting either end, or B's namespace, takes the pair
    linux_bridge.create_veth(lab, vx.underlay_iface, vx.namespace, vx.underlay_iface)
    _underlay_end(lab, vx, vx.a)
    _underlay_end(vx.namespace, vx, vx.b)
    ctx.record("vxlan", vx.a.device)
    _add_device(lab, vx, vx.a, vx.b)
    ctx.attach(vx.a.device, vx.a.bridge)
    ctx.record("vxlan", vx.b.device)  # until it is moved, it goes with B's namespace
    _add_device(vx.namespace, vx, vx.b, vx.a)
    _move(vx.namespace, vx.b.device, lab)
    ctx.attach(vx.b.device, vx.b.bridge)


def remove_device(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """A VXLAN device in the lab namespace (absent, or the namespace gone: nothing to do)."""
    linux_bridge.delete_link(state.namespace, resource.name)


# -- judges ----------------------------------------------------------------------------------------


def _planned_of(plan: Plan, check: Any) -> PlannedVxlan:
    return next(vx for vx in _part(plan) if check.interface == vx.underlay_iface or check.bridge in (vx.a.bridge, vx.b.bridge))


def _on_sides(plan: Plan, vx: PlannedVxlan, name: str, fallback: PlannedNic | PlannedNode) -> PlannedNic | PlannedNode:
    """What node `name` sends from on the VXLAN's bridges: its NIC (or a container's eth0) on one of them."""
    bridges = (vx.a.bridge, vx.b.bridge)
    nic = next((n for vm in plan.vms if vm.name == name for n in vm.nics if n.bridge in bridges and n.ip), None)
    return nic or next((n for n in plan.nodes if n.name == name and n.bridge in bridges), fallback)


def _endpoints(plan: Plan, vx: PlannedVxlan, s: CaptureSubject) -> tuple[PlannedNic | PlannedNode, PlannedNic | PlannedNode]:
    return _on_sides(plan, vx, s.name_a, s.nic_a), _on_sides(plan, vx, s.name_b, s.nic_b)


def judge_vxlan(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """On the underlay: UDP 4789 between the two hypervisors, with the VNI, the ICMP echo inside."""
    vx = _planned_of(plan, check)
    a, b = _endpoints(plan, vx, s)
    assert a.ip and b.ip  # model validation: both addressed on the VXLAN's bridges
    seen = vxlan_payloads(s.packets, vx.port, {vx.vni}, {vx.a.ip, vx.b.ip})
    inner, datagrams = seen.inner, seen.datagrams
    c = count_arp_icmp(inner, a.mac, a.ip, b.mac, b.ip)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    return Judgement(
        len(inner) >= 1 and c.icmp_echo_pairs >= want,
        f"UDP {vx.port} datagrams between {vx.a.ip} and {vx.b.ip} with VNI {vx.vni}, carrying ≥{want} ICMP echo request/reply pairs between {a.ip} ({s.name_a}) and {b.ip} ({s.name_b})",
        f"{datagrams} UDP {vx.port} datagram(s), {len(inner)} with VNI {vx.vni}; inside them {c.icmp_echo_request} echo request(s), "
        f"{c.icmp_echo_reply} reply(ies), {c.icmp_echo_pairs} pair(s), {c.arp_request} ARP request(s), {c.arp_reply} reply(ies)",
        {
            "vxlan_datagrams": datagrams, "vxlan_vni_datagrams": len(inner), "inner_icmp_echo_request": c.icmp_echo_request,
            "inner_icmp_echo_reply": c.icmp_echo_reply, "inner_icmp_echo_pairs": c.icmp_echo_pairs, "inner_arp_request": c.arp_request, "inner_arp_reply": c.arp_reply,
        },
    )


def judge_unencapsulated(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """On a bridge: the echo as plain frames with the nodes' own MACs, and no VXLAN datagram at all."""
    vx = _planned_of(plan, check)
    a, b = _endpoints(plan, vx, s)
    assert a.ip and b.ip  # model validation
    encapsulated = vxlan_payloads(s.packets, vx.port, set(), set()).strays
    c = count_arp_icmp(s.packets, a.mac, a.ip, b.mac, b.ip)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    return Judgement(
        encapsulated == 0 and c.icmp_echo_pairs >= want,
        f"≥{want} ICMP echo request/reply pairs between {a.ip} ({s.name_a}) and {b.ip} ({s.name_b}) as plain frames, and no UDP {vx.port} (VXLAN) datagram on {check.on}",
        f"{c.icmp_echo_pairs} pair(s) ({c.icmp_echo_request} request(s), {c.icmp_echo_reply} reply(ies)), {c.arp_request} ARP request(s), "
        f"{c.arp_reply} reply(ies), {encapsulated} VXLAN datagram(s)",
        {"plain_icmp_echo_pairs": c.icmp_echo_pairs, "plain_arp_request": c.arp_request, "plain_arp_reply": c.arp_reply, "vxlan_datagrams_on_bridge": encapsulated},
    )


# -- views ---------------------------------------------------------------------------------------


def _device_command(vx: PlannedVxlan, side: Side, remote: Side) -> str:
    return (
        f"link add {side.device} address {side.device_mac} mtu {vx.mtu} type vxlan id {vx.vni} "
        f"local {side.ip} remote {remote.ip} dstport {vx.port} dev {vx.underlay_iface}"
    )


def explain_lines(plan: Plan) -> list[str]:
    lab = plan.namespace
    lines: list[str] = []
    for vx in _part(plan):
        ns, u = vx.namespace, vx.underlay_iface
        lines += [
            f"# VXLAN {vx.name}, VNI {vx.vni}: {vx.a.bridge} behind hypervisor A (the lab namespace's stack), {vx.b.bridge} behind hypervisor B ({ns})",
            f"ip netns add {ns}",
            f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
            f"ip -n {ns} link set lo up",
            f"# the underlay {vx.underlay}: MTU {vx.underlay_mtu}, so that the guests keep {vx.mtu} (VXLAN adds {OVERHEAD} bytes)",
            f"ip -n {lab} link add {u} address {vx.a.underlay_mac} mtu {vx.underlay_mtu} type veth peer name {u} netns {ns} address {vx.b.underlay_mac} mtu {vx.underlay_mtu}",
            f"ip -n {lab} addr add {vx.a.address} dev {u}",
            f"ip -n {lab} link set {u} up",
            f"ip -n {ns} addr add {vx.b.address} dev {u}",
            f"ip -n {ns} link set {u} up",
            f"# side A: its VXLAN device in the lab namespace, a port of {vx.a.bridge}",
            f"ip -n {lab} {_device_command(vx, vx.a, vx.b)}",
            f"ip -n {lab} link set {vx.a.device} master {vx.a.bridge} up",
            f"# side B: made inside hypervisor B's namespace (its UDP socket stays there), then moved into the lab namespace as a port of {vx.b.bridge}",
            f"ip netns exec {ns} ip {_device_command(vx, vx.b, vx.a)}",
            f"ip netns exec {ns} ip link set {vx.b.device} netns {lab}",
            f"ip -n {lab} link set {vx.b.device} master {vx.b.bridge} up",
            f"# to watch the encapsulated frames cross the underlay: ip netns exec {lab} tcpdump -eni {u} udp port {vx.port}",
        ]
    return lines


def read_devices(ns: str) -> dict[str, dict[str, Any]]:
    """Every VXLAN device and veth of namespace ns, read back: name → vni, local, remote, port, master, mtu, state, addresses."""

    def op(ipr: IPRoute) -> dict[str, dict[str, Any]]:
        links = list(ipr.link("dump"))
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        addresses: dict[int, list[str]] = {}
        for addr in ipr.addr("dump"):
            addresses.setdefault(addr["index"], []).append(f"{addr.get_attr('IFA_LOCAL') or addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        out = {}
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if kind not in ("vxlan", "veth"):
                continue
            data = info.get_attr("IFLA_INFO_DATA") if kind == "vxlan" else None
            out[names[link["index"]]] = {
                "kind": kind,
                "mtu": link.get_attr("IFLA_MTU"),
                "state": "up" if link["flags"] & 1 else "down",
                "master": names.get(link.get_attr("IFLA_MASTER")),
                "addresses": addresses.get(link["index"], []),
                **({} if data is None else {
                    "vni": data.get_attr("IFLA_VXLAN_ID"), "local": data.get_attr("IFLA_VXLAN_LOCAL"),
                    "remote": data.get_attr("IFLA_VXLAN_GROUP"), "port": data.get_attr("IFLA_VXLAN_PORT"),
                }),
            }
        return out

    return _netlink(ns, "reading the VXLAN devices", op)


def _device_text(d: dict[str, Any]) -> str:
    return f"VNI {d['vni']}, local {d['local']}, remote {d['remote']}, port {d['port']}, master {d['master']}, MTU {d['mtu']}, {d['state']}"


def inspect_rows(plan: Plan) -> list[InspectRow]:
    part = _part(plan)
    if not part:
        return []
    live = read_devices(plan.namespace) if netns.namespace_exists(plan.namespace) else {}
    rows = []
    for vx in part:
        for side, remote in ((vx.a, vx.b), (vx.b, vx.a)):
            want = {"vni": vx.vni, "local": side.ip, "remote": remote.ip, "port": vx.port, "master": side.bridge, "mtu": vx.mtu, "state": "up"}
            got = live.get(side.device)
            if got is None or got["kind"] != "vxlan":
                rows.append(InspectRow(f"VXLAN {side.device}", _device_text(want), "missing", [f"no VXLAN device {side.device} in {plan.namespace}"]))
                continue
            wrong = [f"{side.device} {key} is {got[key]}, planned {value}" for key, value in want.items() if got[key] != value]
            rows.append(InspectRow(f"VXLAN {side.device}", _device_text(want), _device_text(got), wrong))
        planned = f"{vx.a.address}, MTU {vx.underlay_mtu}, up; peer in {vx.namespace}"
        under = live.get(vx.underlay_iface)
        if under is None:
            rows.append(InspectRow(f"VXLAN {vx.name} underlay {vx.underlay_iface}", planned, "missing", [f"no underlay {vx.underlay_iface} in {plan.namespace}"]))
            continue
        state = f"{', '.join(under['addresses']) or 'no address'}, MTU {under['mtu']}, {under['state']}"
        wrong = [] if (vx.a.address in under["addresses"] and under["mtu"] == vx.underlay_mtu and under["state"] == "up") else [f"underlay {vx.underlay_iface} differs from the plan"]
        if not netns.namespace_exists(vx.namespace):
            wrong.append(f"hypervisor B's namespace {vx.namespace} is missing")
        rows.append(InspectRow(f"VXLAN {vx.name} underlay {vx.underlay_iface}", planned, state, wrong))
    return rows


# -- the feature ---------------------------------------------------------------------------------


class Vxlan(Feature):
    name = "vxlan"
    model = MODEL
    judges = {"vxlan": judge_vxlan, "unencapsulated": judge_unencapsulated}
    removers = {"vxlan": remove_device}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_vxlan(ctx)
        return PlanPart(data=part, resources=resources(part)) if part else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        return {"vxlan": [
            {
                "name": vx.name, "vni": vx.vni, "dstport": vx.port, "mtu": vx.mtu,
                "underlay": {"subnet": vx.underlay, "interface": vx.underlay_iface, "mtu": vx.underlay_mtu, "namespace_b": vx.namespace},
                "sides": [
                    {"bridge": s.bridge, "device": s.device, "mac": s.device_mac, "created_in": ns, "underlay_address": s.address, "underlay_mac": s.underlay_mac}
                    for s, ns in ((vx.a, plan.namespace), (vx.b, vx.namespace))
                ],
            }
            for vx in part
        ]}

    def apply(self, plan: Plan, ctx: Any) -> None:
        for vx in _part(plan):
            create_vxlan(plan, ctx, vx)

    def explain(self, plan: Plan) -> list[Section]:
        lines = explain_lines(plan)
        return [Section("VXLAN overlays: two hypervisor stacks joined by an underlay", tuple(lines))] if lines else []

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        """The two bridges a VXLAN joins, with its VNI, port and underlay."""
        for vx in _part(plan):
            if vx.a.bridge in drawing.bridge_ids and vx.b.bridge in drawing.bridge_ids:
                label = [f"VXLAN VNI {vx.vni}, UDP {vx.port}", f"underlay {vx.underlay} ({vx.underlay_iface})"]
                drawing.edge(drawing.bridge_ids[vx.a.bridge], drawing.bridge_ids[vx.b.bridge], label, overlay=True)
