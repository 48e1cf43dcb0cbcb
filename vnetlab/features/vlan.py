"""VLANs on bridges: access ports, trunks with 802.1Q sub-interfaces in the guests.

- A bridge may carry VLANs: `vlans: [{vlan: 10, subnet: 10.0.10.0/24}, …]` instead
  of one `subnet:`; each VLAN is its own broadcast domain with its own subnet.
- A NIC is an access port (`vlan: 10`, its `address:` in VLAN 10's subnet; the guest sees untagged
  frames) or a trunk (`trunk: [{vlan: 10, address: …}, …]`: the guest gets `eth0.10` … with those
  addresses, eth0 itself stays unaddressed). Both take the short mapping form too: `vlans: {10:
  10.0.10.0/24}` and `trunk: {10: 10.0.10.5/24, 20: 10.0.20.5/24}` (the loader reads them as the lists).
- On `type: ovs`, OVS does the tagging in its userspace datapath: an access port is `tag=N` on the
  tap's OVS port, a trunk `trunks=N,M`. On a Linux bridge the kernel's VLAN filtering does it
  (`bridge vlan add … pvid untagged` for an access port): on the host when its kernel has it,
  else inside the bridge's switch guest (features/switch_guest.py builds that bridge, ports and
  VLANs included). The taps join their bridge when their guest starts, so the ports get their
  VLANs in configure, together with the sub-interfaces in the guests (the guests' kernel has 8021q).
- `vlan-tagged` and `untagged` judge the frames between two VMs on a capture: on a link (one NIC's
  tap: a trunk's carry tags, an access port's none), or on an OVS bridge's mirror port. That port is a trunk of
  every VLAN (it has no tag), and OVS hands it each frame as it would leave a trunk: a frame of
  VLAN N carries an 802.1Q tag N there, even between two access ports (measured on OVS's
  userspace datapath; only what an access tap itself carries is untagged). So the expectation is:
  the frames exchanged between the two VMs are all tagged, with the VLAN(s) they share.
- Pings find a trunk's addresses through the model's `route` hook: two nodes reach each other on a
  VLAN they share on one bridge.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab.backends import linux_bridge, ovs
from vnetlab.backends.netns import namespace_exists
from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, Judgement, capture_segment, link_nic
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.addressing import nic_addresses, nic_entries
from vnetlab.model.validate import Rules, interface, network
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.tools.explain import Section, guest_line, sh
from vnetlab.tools.inspect import InspectRow

VLAN_MIN, VLAN_MAX = 1, 4094  # 0 means "no VLAN" in a tag, 4095 is reserved (IEEE 802.1Q)


class VlanError(VnetlabError):
    """A VLAN could not be set on an OVS port, or a guest could not create its sub-interfaces."""


# -- the scenario keys ---------------------------------------------------------------------------


def _vlan_id(doc: str) -> Any:
    return spec(doc, minimum=VLAN_MIN, maximum=VLAN_MAX)


@dataclass(frozen=True)
class VlanSubnet:
    vlan: int = _vlan_id("VLAN id, 1..4094")
    subnet: str = spec("IPv4 subnet of this VLAN, e.g. 10.0.10.0/24; addresses in the VLAN must fit")


@dataclass(frozen=True)
class TrunkVlan:
    vlan: int = _vlan_id("VLAN id carried tagged on this trunk, 1..4094 (one of its bridge's vlans)")
    address: str | None = spec("address with prefix of the guest's sub-interface for this VLAN (<nic>.<vlan>), e.g. 10.0.10.5/24", default=None)


def _bridges(scenario: Any) -> dict[str, Any]:
    return {b.name: b for b in scenario.bridges}


def _subnets(bridge: Any) -> dict[int, ipaddress.IPv4Network | None]:
    out: dict[int, ipaddress.IPv4Network | None] = {}
    for v in bridge.vlans or ():
        out.setdefault(v.vlan, network(v.subnet))  # a duplicate VLAN is the bridge's problem: the first counts
    return out


def sub_name(nic: str, vlan: int) -> str:
    return f"{nic}.{vlan}"


def _validate_bridges(r: Rules) -> None:
    for i, bridge in enumerate(r.scenario.bridges):
        if not bridge.vlans:
            continue
        path = f"bridges[{i}]"
        if bridge.subnet is not None or bridge.subnets:
            r.add(f"{path}.subnet" if bridge.subnet is not None else f"{path}.subnets", "a bridge with vlans has one subnet per VLAN (in vlans): drop subnet")
        seen: dict[int, int] = {}
        nets: list[tuple[int, ipaddress.IPv4Network]] = []
        for k, v in enumerate(bridge.vlans):
            vpath = f"{path}.vlans[{k}]"
            if v.vlan in seen:
                r.add(f"{vpath}.vlan", f"duplicate VLAN {v.vlan} (vlans[{seen[v.vlan]}] has it)")
                continue
            seen[v.vlan] = k
            before = len(r.problems)
            net = r.subnet(f"{vpath}.subnet", v.subnet)
            if net is None or len(r.problems) > before:
                continue
            clash = next((n for n, other in nets if net.overlaps(other)), None)
            if clash is not None:
                r.add(f"{vpath}.subnet", f"{net} overlaps VLAN {clash}'s subnet: each VLAN of a bridge needs its own")
            else:
                nets.append((v.vlan, net))


def _validate_nics(r: Rules) -> None:
    bridges = _bridges(r.scenario)
    for i, vm in enumerate(r.scenario.vms):
        for j, nic in enumerate(vm.nics):
            path = f"vms[{i}].nics[{j}]"
            bridge = bridges.get(nic.bridge)
            tagged = nic.vlan is not None or nic.trunk is not None
            if bridge is None:
                continue  # the core's rule
            if not tagged:
                if bridge.vlans:
                    r.add(f"{path}.bridge", f"bridge {nic.bridge!r} has vlans: this NIC needs vlan: (an access port) or trunk:")
                continue
            key = "vlan" if nic.vlan is not None else "trunk"
            if nic.vlan is not None and nic.trunk is not None:
                r.add(f"{path}.trunk", "expected one of vlan (an access port) or trunk (tagged VLANs), not both")
                continue
            if not bridge.vlans:
                r.add(f"{path}.{key}", f"bridge {nic.bridge!r} declares no vlans: add vlans: [{{vlan: N, subnet: …}}] to it")
                continue
            nets = _subnets(bridge)
            if nic.vlan is not None:
                if nic.vlan not in nets:
                    r.add(f"{path}.vlan", f"VLAN {nic.vlan} is not one of bridge {nic.bridge!r}'s vlans ({', '.join(map(str, nets))})")
                elif (iface := nic_addresses(nic).ipv4) is not None and not nic_addresses(nic).dhcp and nets[nic.vlan] is not None and iface.network != nets[nic.vlan]:
                    r.add(f"{path}.address", f"{nic.address} is not in subnet {nets[nic.vlan]} of VLAN {nic.vlan} on bridge {nic.bridge!r}")
                continue
            _validate_trunk(r, vm, j, nic, nets, path)


def _validate_trunk(r: Rules, vm: Any, j: int, nic: Any, nets: dict[int, Any], path: str) -> None:
    if nic_entries(nic):
        r.add(f"{path}.address" if nic.address is not None else f"{path}.addresses", "a trunk's own interface stays unaddressed: give each VLAN its address in trunk")
    name = vm.nic_name(j)
    seen: set[int] = set()
    for k, t in enumerate(nic.trunk):
        tpath = f"{path}.trunk[{k}]"
        if t.vlan in seen:
            r.add(f"{tpath}.vlan", f"duplicate VLAN {t.vlan} on this trunk")
            continue
        seen.add(t.vlan)
        if t.vlan not in nets:
            r.add(f"{tpath}.vlan", f"VLAN {t.vlan} is not one of bridge {nic.bridge!r}'s vlans ({', '.join(map(str, nets))})")
            continue
        if len(sub_name(name, t.vlan)) > IFACE_MAX:
            r.add(f"{tpath}.vlan", f"the guest's sub-interface {sub_name(name, t.vlan)!r} would be longer than {IFACE_MAX} characters: shorten the NIC's name")
        if t.address is None:
            continue
        iface = r.address(f"{tpath}.address", t.address, nets[t.vlan], f"VLAN {t.vlan} on bridge {nic.bridge!r}")
        if iface is not None:
            r.claim(f"{tpath}.address", iface.ip, f"{vm.name} {sub_name(name, t.vlan)}")


def _validate(r: Rules) -> None:
    _validate_bridges(r)
    _validate_nics(r)


def _validate_tagging(r: Rules, cap: Any, path: str) -> None:
    """vlan-tagged and untagged: two VMs sharing a VLAN, on a bridge with vlans or a link to one.
    (Called with `bridge` set to the link's bridge for a link capture.)"""
    bridge = _bridges(r.scenario).get(cap.bridge) if cap.bridge else None
    if bridge is None or not bridge.vlans:
        r.add(f"{path}.expect", "vlan-tagged and untagged are judged on a bridge with vlans (bridge:), or on a link to one (link:)")
        return
    vms = {v.name for v in r.scenario.vms}
    for k, name in enumerate(cap.between):
        if name not in vms or not any(n.bridge == cap.bridge for n in r.scenario.vm(name).nics):
            r.add(f"{path}.between[{k}]", f"expected a VM with a NIC on bridge {cap.bridge!r}, got {name!r}")
            return
    if not shared_vlans(r.scenario, cap.bridge, *cap.between):
        r.add(f"{path}.between", f"{cap.between[0]!r} and {cap.between[1]!r} share no VLAN on bridge {cap.bridge!r}: there is no exchange between them to capture")


# -- what the rest of vnetlab learns: addresses on VLANs ---------------------------------------------


def vlan_addresses(scenario: Any, name: str) -> list[tuple[str, int, ipaddress.IPv4Interface]]:
    """(bridge, VLAN, address) of every addressed access port and trunk sub-interface of VM `name`."""
    out = []
    for vm in scenario.vms:
        if vm.name != name:
            continue
        for nic in vm.nics:
            if nic.vlan is not None and (iface := nic_addresses(nic).ipv4) is not None:
                out.append((nic.bridge, nic.vlan, iface))
            for t in nic.trunk or ():
                if t.address and (iface := interface(t.address)) is not None:
                    out.append((nic.bridge, t.vlan, iface))
    return out


def nic_vlans(scenario: Any, name: str, bridge: str) -> set[int]:
    """The VLANs VM `name`'s NICs on `bridge` are in (access) or carry (trunk)."""
    out: set[int] = set()
    for vm in scenario.vms:
        for nic in vm.nics if vm.name == name else ():
            if nic.bridge == bridge:
                out |= {nic.vlan} if nic.vlan is not None else {t.vlan for t in nic.trunk or ()}
    return out


def shared_vlans(scenario: Any, bridge: str, a: str, b: str) -> set[int]:
    return nic_vlans(scenario, a, bridge) & nic_vlans(scenario, b, bridge)


def _route(scenario: Any, source: str, target: str) -> ipaddress.IPv4Interface | None:
    """The target's address on a VLAN the source is in too, on the same bridge and subnet."""
    theirs = vlan_addresses(scenario, target)
    for bridge, vlan, mine in vlan_addresses(scenario, source):
        for tbridge, tvlan, iface in theirs:
            if (bridge, vlan) == (tbridge, tvlan) and mine.network == iface.network:
                return iface
    return None


MODEL = ModelExtension(
    bridge_fields=(decl("vlans", list[VlanSubnet] | None, spec("VLANs of the bridge, each with its subnet (instead of subnet:): {10: 10.0.10.0/24, 20: 10.0.20.0/24}, or [{vlan: 10, subnet: 10.0.10.0/24}, …]", default=None, min_items=1, mapping=("vlan", "subnet"))),),
    nic_fields=(
        decl("vlan", int | None, spec("access port of this VLAN (one of its bridge's vlans): the guest sends and receives untagged frames", default=None, minimum=VLAN_MIN, maximum=VLAN_MAX)),
        decl("trunk", list[TrunkVlan] | None, spec("tagged VLANs on this NIC: the guest gets a sub-interface <nic>.<vlan> per entry, with its address; the NIC itself stays unaddressed: {10: 10.0.10.5/24, 20: 10.0.20.5/24}, or [{vlan: 10, address: 10.0.10.5/24}, …]", default=None, min_items=1, mapping=("vlan", "address"))),
    ),
    expectations=(Expectation("vlan-tagged", _validate_tagging, across_segments=True), Expectation("untagged", _validate_tagging, across_segments=True)),
    validate=_validate,
    nic_addresses=lambda nic: [t.address for t in nic.trunk or () if t.address],
    route=_route,
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortVlans:
    vm: str
    nic: str  # its name in the guest
    tap: str  # its OVS port
    bridge: str
    tag: int | None  # an access port's VLAN
    trunks: tuple[int, ...]  # a trunk's VLANs


@dataclass(frozen=True)
class SubInterface:
    vm: str
    parent: str  # the NIC's name in the guest
    mac: str  # how the guest finds the NIC
    vlan: int
    cidr: str | None

    @property
    def name(self) -> str:
        return sub_name(self.parent, self.vlan)


@dataclass(frozen=True)
class VlanPlan:
    ports: tuple[PortVlans, ...]
    subs: tuple[SubInterface, ...]


def plan_vlans(ctx: PlanContext) -> VlanPlan | None:
    ports: list[PortVlans] = []
    subs: list[SubInterface] = []
    for vm, planned in zip(ctx.scenario.vms, ctx.vms):
        for nic, p in zip(vm.nics, planned.nics):
            if nic.vlan is None and nic.trunk is None:
                continue
            trunks = tuple(t.vlan for t in nic.trunk or ())
            ports.append(PortVlans(vm.name, p.guest_name, p.tap, nic.bridge, nic.vlan, trunks))
            subs += [SubInterface(vm.name, p.guest_name, p.mac, t.vlan, t.address) for t in nic.trunk or ()]
    return VlanPlan(tuple(ports), tuple(subs)) if ports else None


def _part(plan: Plan) -> VlanPlan | None:
    return plan.part("vlan", None)


def port_args(port: PortVlans) -> list[str]:
    """ovs-vsctl arguments that make the tap's port an access port or a trunk."""
    if port.tag is not None:
        return ["set", "port", port.tap, f"tag={port.tag}"]
    return ["set", "port", port.tap, "trunks=" + ",".join(map(str, port.trunks))]


def guest_commands(parent: str, vlan: int, cidr: str | None) -> list[str]:
    """What creates one sub-interface <parent>.<vlan> in the guest, with its address."""
    name = f"{parent}.{vlan}"
    lines = [f"ip link add link {parent} name {name} type vlan id {vlan}"]
    if cidr:
        lines.append(f"ip addr add {cidr} dev {name}")
    return lines + [f"ip link set {name} up"]


def guest_script(subs: list[SubInterface]) -> str:
    """Load 8021q, then create each sub-interface on the NIC found by its MAC (as addressing does;
    only a device with a bus behind it: a sub-interface has its parent's MAC too)."""
    steps = ["modprobe 8021q 2>/dev/null; [ -d /proc/net/vlan ] || { echo 'no 802.1Q support (8021q) in the guest kernel' >&2; exit 1; }"]
    for s in subs:
        steps.append(
            f"mac={shlex.quote(s.mac)}; dev=; "
            'for d in /sys/class/net/*; do read -r a < "$d/address"; [ "$a" = "$mac" ] && [ -e "$d/device" ] && dev=${d##*/}; done; '
            '[ -n "$dev" ] || { echo "no interface with MAC $mac" >&2; exit 1; }; '
            f'ip link del "$dev".{s.vlan} 2>/dev/null'
        )
        steps += [c + " || exit 1" for c in guest_commands('"$dev"', s.vlan, s.cidr)]
    return "; ".join(steps)


# -- configure -----------------------------------------------------------------------------------


def _switch(plan: Plan) -> ovs.OvsSwitch:
    return ovs.OvsSwitch.for_lab(plan.namespace, plan.lab_dir)


def tagger(plan: Plan, port: PortVlans) -> str:
    """Who tags the port's frames: "ovs", "host" (the host kernel's VLAN filtering) or "guest" (a switch guest's bridge)."""
    bridge = plan.bridge(port.bridge)
    if bridge.guest is not None:
        return "guest"
    return "host" if bridge.type == "linux" else "ovs"


def _ports(plan: Plan, by: str) -> list[PortVlans]:
    part = _part(plan)
    return [p for p in part.ports if tagger(plan, p) == by] if part else []


def configure_ports(plan: Plan) -> None:
    """OVS ports and host-kernel bridge ports (a switch guest's bridge is made with its VLANs by its feature)."""
    for port in _ports(plan, "ovs"):
        try:
            _switch(plan).vsctl(*port_args(port))
        except ovs.OvsError as exc:
            raise VlanError(f"{port.vm} {port.nic}: setting the VLANs of OVS port {port.tap}: {exc}") from exc
    host = _ports(plan, "host")
    for bridge in dict.fromkeys(p.bridge for p in host):
        linux_bridge.set_vlan_filtering(plan.namespace, bridge)
    for port in host:
        linux_bridge.set_port_vlans(plan.namespace, port.tap, port.tag, port.trunks)


def configure_guests(plan: Plan, sessions: dict[str, GuestSSH]) -> None:
    part = _part(plan)
    by_vm: dict[str, list[SubInterface]] = {}
    for s in part.subs if part else ():
        by_vm.setdefault(s.vm, []).append(s)
    for vm, subs in by_vm.items():
        result = sessions[vm].run(guest_script(subs), timeout=20.0, check=False)
        if result.exit_code != 0:
            raise VlanError(f"{vm}: creating {', '.join(s.name for s in subs)} failed (exit {result.exit_code}): {excerpt(result.stderr + result.stdout)}")


# -- the capture expectation ---------------------------------------------------------------------


def _tags(packet: Any) -> list[int]:
    """The VLAN ids of a frame's 802.1Q headers, outermost first."""
    out = []
    layer = packet.payload if packet is not None else None
    while layer is not None and type(layer).__name__ == "Dot1Q":
        out.append(int(layer.vlan))
        layer = layer.payload
    return out


@dataclass(frozen=True)
class _Seen:
    frames: int  # exchanged between the two VMs
    tags: dict[int, int]  # outer VLAN id → frames
    untagged: int
    wrong: int  # tagged, but not once with a VLAN the two share
    shared: set[int]

    def words(self) -> str:
        tagged = ", ".join(f"{n} tagged VLAN {v}" for v, n in sorted(self.tags.items()))
        return f"{self.frames} frame(s) between them: " + ", ".join(x for x in (tagged, f"{self.untagged} untagged" if self.untagged else "") if x) if self.frames else "no frame between them"

    def counts(self) -> dict[str, int]:
        return {"vlan_frames": self.frames, "vlan_untagged": self.untagged, "vlan_wrong_tag": self.wrong}


def _seen(plan: Plan, check: Any, s: CaptureSubject) -> _Seen:
    shared = shared_vlans(plan.scenario, capture_segment(plan, check.on), s.name_a, s.name_b)
    macs = {s.nic_a.mac.lower(), s.nic_b.mac.lower()}
    frames, tags, untagged, wrong = 0, {}, 0, 0
    for packet in s.packets:
        src, dst = str(getattr(packet, "src", "")).lower(), str(getattr(packet, "dst", "")).lower()
        if src not in macs or dst not in macs or src == dst:
            continue
        frames += 1
        ids = _tags(packet)
        if not ids:
            untagged += 1
            continue
        tags[ids[0]] = tags.get(ids[0], 0) + 1
        if len(ids) != 1 or ids[0] not in shared:
            wrong += 1
    return _Seen(frames, tags, untagged, wrong, shared)


def _where(plan: Plan, on: str) -> str:
    if link_nic(plan, on) is not None:
        return f"link {on}"
    return f"{on}'s mirror port" if plan.bridge(on).capture_port else f"bridge {on}"


def judge_vlan_tagged(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """Every frame the two VMs exchanged carries one 802.1Q tag, of a VLAN they share on the bridge."""
    seen = _seen(plan, check, s)
    ok = seen.frames > 0 and seen.untagged == 0 and seen.wrong == 0
    vlans = ", ".join(map(str, sorted(seen.shared)))
    return Judgement(ok, f"the frames between {s.name_a} and {s.name_b} on {_where(plan, check.on)} tagged with VLAN {vlans} (802.1Q)", seen.words(), seen.counts())


def judge_untagged(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """Every frame the two VMs exchanged is plain: an access port's link carries no 802.1Q tag."""
    seen = _seen(plan, check, s)
    ok = seen.frames > 0 and seen.untagged == seen.frames
    return Judgement(ok, f"the frames between {s.name_a} and {s.name_b} on {_where(plan, check.on)} untagged (no 802.1Q header)", seen.words(), seen.counts())


# -- views ---------------------------------------------------------------------------------------


def _vsctl_line(plan: Plan, args: list[str]) -> str:
    return shlex.join(ovs.vsctl_argv(ovs.OvsPaths(ovs.ovs_dir(plan.lab_dir)), *args))


def explain_sections(plan: Plan) -> list[Section]:
    part = _part(plan)
    if not part:
        return []
    sections = []
    first = "# the taps join their bridge when the guest starts: then each port gets its VLANs"
    if ovs_ports := _ports(plan, "ovs"):
        lines = [first] + [f"{_vsctl_line(plan, port_args(p))}    # {p.vm} {p.nic}, {_what(p)}" for p in ovs_ports]
        sections.append(Section("VLANs on the OVS ports", tuple(lines), stage="configure"))
    if host := _ports(plan, "host"):
        lines = [first] + [sh("ip", "-n", plan.namespace, "link", "set", b, "type", "bridge", "vlan_filtering", 1) for b in dict.fromkeys(p.bridge for p in host)]
        lines += [f"{sh('bridge', '-n', plan.namespace)} {c}    # {p.vm} {p.nic}, {_what(p)}" for p in host for c in host_vlan_commands(p.tap, p.tag, p.trunks)]
        sections.append(Section("VLANs on the bridge ports (the host kernel's VLAN filtering)", tuple(lines), stage="configure"))
    if part.subs:
        guest = [guest_line(vm, "modprobe 8021q") for vm in dict.fromkeys(s.vm for s in part.subs)]
        guest += [guest_line(s.vm, c) for s in part.subs for c in guest_commands(s.parent, s.vlan, s.cidr)]
        sections.append(Section("802.1Q sub-interfaces in the guests", tuple(guest), stage="configure"))
    return sections


def _what(p: PortVlans) -> str:
    return f"access port of VLAN {p.tag}: untagged in the guest" if p.tag is not None else f"trunk of VLANs {','.join(map(str, p.trunks))}: tagged in the guest"


def host_vlan_commands(port: str, access: int | None, trunks: tuple[int, ...]) -> list[str]:
    """The `bridge vlan` commands (without the program name) that make a port an access port or a trunk."""
    lines = [f"vlan add dev {port} vid {access} pvid untagged"] if access is not None else [f"vlan add dev {port} vid {v}" for v in trunks]
    return lines + [f"vlan del dev {port} vid 1"]


def _label(p: PortVlans) -> str:
    return f"vlan {p.tag}" if p.tag is not None else "trunk " + ",".join(map(str, p.trunks))


def read_ports(plan: Plan, taps: Iterable[str]) -> dict[str, tuple[str, str]]:
    """tap → (tag, trunks) as the lab's OVS database has them ("[]" when unset)."""
    out = {}
    for tap in taps:
        try:
            text = _switch(plan).vsctl("get", "port", tap, "tag", "trunks")
        except ovs.OvsError as exc:
            out[tap] = ("missing", str(exc)[-120:])
            continue
        lines = text.split("\n")
        out[tap] = (lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")
    return out


def inspect_rows(plan: Plan) -> list[InspectRow]:
    part = _part(plan)
    if not part:
        return []
    ovs_ports = _ports(plan, "ovs")
    live = read_ports(plan, [p.tap for p in ovs_ports]) if ovs_ports and namespace_exists(plan.namespace) and ovs.ovs_dir(plan.lab_dir).exists() else {}
    rows = [_host_row(plan, p) for p in _ports(plan, "host")]
    for p in ovs_ports:
        want = (str(p.tag), "[]") if p.tag is not None else ("[]", "[" + ", ".join(map(str, p.trunks)) + "]")
        got = live.get(p.tap)
        state = f"tag={got[0]} trunks={got[1]}" if got else "missing"
        problems = [] if got == want else [f"port {p.tap} has {state}"]
        rows.append(InspectRow(f"VLANs of {p.vm} {p.nic} (OVS port {p.tap})", f"tag={want[0]} trunks={want[1]}", state, problems))
    return rows


def _host_row(plan: Plan, p: PortVlans) -> InspectRow:
    """A host-kernel bridge port's VLANs as the kernel reports them."""
    mask = linux_bridge.BRIDGE_VLAN_INFO_PVID | linux_bridge.BRIDGE_VLAN_INFO_UNTAGGED  # an access port's flags
    want = [(p.tag, mask)] if p.tag is not None else [(v, 0) for v in sorted(p.trunks)]
    try:
        got = sorted(linux_bridge.port_vlans(plan.namespace, p.tap)) if namespace_exists(plan.namespace) else None
    except VnetlabError as exc:
        return InspectRow(f"VLANs of {p.vm} {p.nic} (bridge port {p.tap})", _label(p), "unknown", [str(exc)])

    def words(pairs: list[tuple[int, int]]) -> str:
        return ", ".join(f"{vid}" + (" pvid untagged" if flags & mask == mask else "") for vid, flags in pairs) or "none"

    same = got is not None and [(v, f & mask) for v, f in got] == want
    state = "missing" if got is None else words(got)
    return InspectRow(f"VLANs of {p.vm} {p.nic} (bridge port {p.tap})", words(want), state, [] if same else [f"port {p.tap} has {state}"])


class Vlan(Feature):
    name = "vlan"
    requires = ("ovs",)
    model = MODEL
    judges = {"vlan-tagged": judge_vlan_tagged, "untagged": judge_untagged}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_vlans(ctx)
        return PlanPart(data=part) if part else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        ports = [{"vm": p.vm, "nic": p.nic, "port": p.tap, "bridge": p.bridge, **({"tag": p.tag} if p.tag is not None else {"trunks": list(p.trunks)})} for p in part.ports]
        subs = [{"vm": s.vm, "name": s.name, "vlan": s.vlan, "address": s.cidr} for s in part.subs]
        return {"vlans": {"ports": ports, "sub-interfaces": subs}}

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        return "VLANs: " + ", ".join(f"{p.vm} {p.nic} {_label(p)}" for p in part.ports) if part else None

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        configure_ports(plan)
        configure_guests(plan, sessions)

    def explain(self, plan: Plan) -> list[Section]:
        return explain_sections(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each VLAN NIC's edge names its VLAN (access) or VLANs (trunk), and a trunk's sub-interfaces."""
        part = _part(plan)
        for p in part.ports if part else ():
            edge = drawing.nic_edge(p.vm, p.nic)
            if edge is not None:
                edge.label.append(_label(p))
                edge.label.extend(f"{s.name} {s.cidr}" for s in part.subs if (s.vm, s.parent) == (p.vm, p.nic) and s.cidr)

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)
