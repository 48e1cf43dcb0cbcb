"""Linux bridges that run inside a switch guest when the host kernel cannot run them.

Some host kernels lack what a bridge needs (this machine's has no bridge VLAN filtering; the
kernel probe says so, see `vnetlab doctor`). The guests' kernel has every module, so such a bridge
runs in a *switch guest*: a tiny-image guest vnetlab adds to the lab (`sw-<bridge>`), with one
NIC per member (p1, p2, … in the order of the scenario's NICs). Each member NIC's tap and the
switch guest's port tap are the two ports of a point-to-point link: a two-port host bridge
(`sw<i>_p<k>`, no STP, no VLAN filtering, so it passes tagged frames and BPDUs unchanged). The
bridge itself — its VLANs per port, STP — is made inside the switch guest over SSH, and inspect
reads it back from there (`bridge vlan show`).

- Where: `in: guest` forces it, `in: host` forbids it (and fails at plan time naming the kernel
  option when the host lacks it), no `in:` lets the probe decide. The run prints where each
  bridge went and why (plan notes); nothing moves silently.
- What a bridge in a switch guest cannot have yet (refused with the reason): an address on the
  lab namespace's side (a NAT or container gateway), containers or hosts on it, bridge-links,
  VXLAN, an MTU, a capture on the bridge itself (capture on a member's link instead:
  `link: vm1.eth0`; no host interface sees all of its frames).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, check_lists, feature_nodes
from vnetlab.plan.planner import GuestRequest, Plan, PlanContext, PlanPart
from vnetlab.run.configure import open_ssh
from vnetlab.tools.explain import Section, guest_line
from vnetlab.tools.inspect import InspectRow

SWITCH_MEMORY = 128  # MiB: the tiny image's default (96 is too small to unpack its initramfs)
SWITCH_ROLE = "switch"
# kernel-probe key → (what it is, the kernel option that provides it)
KERNEL_NEEDS = {"vlan_filtering": ("bridge VLAN filtering", "CONFIG_BRIDGE_VLAN_FILTERING")}


class PlacementError(VnetlabError):
    """No available path can run a bridge as the scenario asks (e.g. `in: host` on a kernel without a feature it needs)."""


class SwitchGuestError(VnetlabError):
    """The bridge could not be made inside its switch guest."""


def switch_name(bridge: str) -> str:
    return f"sw-{bridge}"


def link_name(index: int, port: int) -> str:
    """The host bridge of one point-to-point link: '_' is in no scenario name, so it is no user bridge's."""
    return f"sw{index}_p{port}"


def port_name(port: int) -> str:
    return f"p{port}"


def needs(bridge: Any) -> list[str]:
    """The kernel-probe capabilities the bridge needs of the kernel that runs it."""
    return ["vlan_filtering"] if getattr(bridge, "vlans", None) else []


# -- where each bridge runs --------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    bridge: str
    where: Literal["host", "guest"]
    why: str


def _lacking(bridge: Any, host_kernel: frozenset[str]) -> list[str]:
    return [f"{KERNEL_NEEDS[c][0]} ({KERNEL_NEEDS[c][1]})" for c in needs(bridge) if c not in host_kernel]


def place(scenario: Any, host_kernel: frozenset[str]) -> list[Placement]:
    """Each Linux bridge's place: its `in:`, else the host unless the host kernel lacks what it needs."""
    out = []
    for b in scenario.bridges:
        if b.type != "linux":
            continue
        lacking = _lacking(b, host_kernel)
        if b.placement == "guest":
            out.append(Placement(b.name, "guest", "in: guest"))
        elif lacking and b.placement == "host":
            raise PlacementError(
                f"bridge {b.name!r} has in: host, but this host's kernel lacks {', '.join(lacking)} "
                "(`vnetlab doctor` shows what it has): drop in: to let a switch guest run it, or use a kernel built with it"
            )
        elif lacking:
            out.append(Placement(b.name, "guest", f"this host's kernel lacks {', '.join(lacking)}"))
        else:
            out.append(Placement(b.name, "host", f"in: {b.placement}" if b.placement else "the host kernel has what it needs"))
    return out


def unsupported(scenario: Any, bridge: Any) -> list[tuple[str, str]]:
    """(field of the bridge's entry or '', why) for each thing a bridge in a switch guest cannot have yet."""
    name = bridge.name
    out: list[tuple[str, str]] = []
    if getattr(bridge, "mtu", None) is not None:
        out.append(("mtu", "an MTU on a bridge in a switch guest is not supported yet"))
    if getattr(bridge, "gateway", None) is not None or getattr(bridge, "nat", None) is not None:
        out.append(("gateway" if getattr(bridge, "gateway", None) is not None else "nat", "the lab namespace has no port on a bridge in a switch guest: no gateway or NAT there"))
    if any(seg == name for node in feature_nodes(scenario) for seg, _ in node.interfaces):
        out.append(("", "containers and hosts cannot join a bridge in a switch guest yet (their veths end in the lab namespace)"))
    if any(name in link.between for link in getattr(scenario, "bridge_links", ())):
        out.append(("", "bridge-links cannot join a bridge in a switch guest yet"))
    overlays = getattr(scenario, "vxlan", ())  # the vxlan feature's list (a mapping there is a multi-host lab's settings)
    if isinstance(overlays, list) and any(name in v.bridges for v in overlays):
        out.append(("", "a VXLAN cannot join a bridge in a switch guest yet"))
    if any(getattr(nic, "mtu", None) is not None for vm in scenario.vms for nic in vm.nics if nic.bridge == name):  # the mtu feature's NIC field
        out.append(("", "NIC MTUs on a bridge in a switch guest are not supported yet (its links stay at 1500)"))
    return out


def _capture_refusals(scenario: Any, name: str) -> list[str]:
    """The paths of the captures on bridge `name`, in every list of checks (the scenario's, an exercise's tasks)."""
    return [f"{path}[{i}]" for path, checks in check_lists(scenario) for i, c in enumerate(checks) if c.capture is not None and c.capture.bridge == name]


CAPTURE_REFUSAL = "no host interface sees every frame of a bridge in a switch guest: capture on a member's link instead (link: VM.NIC)"


def _validate(r: Rules) -> None:
    """What `in: guest` asks is checked here; an automatic placement is checked the same way at plan time."""
    for i, b in enumerate(r.scenario.bridges):
        if b.placement is None:
            continue
        if b.type != "linux":
            r.add(f"bridges[{i}].in", f"in: is where a Linux bridge runs; a {b.type} bridge runs on the host")
            continue
        if b.placement != "guest":
            continue
        for key, why in unsupported(r.scenario, b):
            r.add(f"bridges[{i}]" + (f".{key}" if key else ".in"), why)
        for where in _capture_refusals(r.scenario, b.name):
            r.add(f"{where}.capture.bridge", f"bridge {b.name!r} runs in a switch guest (in: guest): " + CAPTURE_REFUSAL)
    bridges = {b.name for b in r.scenario.bridges}
    for i, vm in enumerate(r.scenario.vms):
        taken = next((b for b in bridges if vm.name == switch_name(b)), None)
        if taken is not None:
            r.add(f"vms[{i}].name", f"{vm.name!r} is the name of bridge {taken!r}'s switch guest (when one runs it): pick another")


MODEL = ModelExtension(
    bridge_fields=(
        decl("placement", Literal["host", "guest"] | None, spec(
            "where a Linux bridge runs: host (the host kernel) or guest (a switch guest vnetlab adds); "
            "default: the host unless its kernel lacks what the bridge needs (e.g. VLAN filtering)",
            key="in", default=None,
        )),
    ),
    validate=_validate,
    guests=lambda scenario: [switch_name(b.name) for b in scenario.bridges if b.type == "linux" and b.placement == "guest"],
    maybe_guests=lambda scenario: [switch_name(b.name) for b in scenario.bridges if b.type == "linux" and b.placement is None and needs(b)],
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwitchPort:
    port: str  # its name in the switch guest
    link: str  # the host bridge of the point-to-point link
    member: str  # "vm1 eth0"
    member_tap: str
    access: int | None = None  # VLAN of an access port
    trunks: tuple[int, ...] = ()  # VLANs of a trunk


@dataclass(frozen=True)
class SwitchGuest:
    bridge: str
    guest: str
    why: str
    vlan_filtering: bool
    stp: bool
    ports: tuple[SwitchPort, ...]


@dataclass(frozen=True)
class SwitchPlan:
    placements: tuple[Placement, ...]
    switches: tuple[SwitchGuest, ...]


def plan_switches(ctx: PlanContext) -> tuple[SwitchPlan, PlanPart] | None:
    placements = place(ctx.scenario, ctx.host_kernel)
    if not any(p.where == "guest" for p in placements):
        return None
    index = {b.name: i for i, b in enumerate(ctx.scenario.bridges)}
    switches: list[SwitchGuest] = []
    guests: list[GuestRequest] = []
    attach: dict[str, str] = {}
    for p in placements:
        if p.where != "guest":
            continue
        bridge = next(b for b in ctx.scenario.bridges if b.name == p.bridge)
        problems = [why for _, why in unsupported(ctx.scenario, bridge)]
        problems += [f"{where}: {CAPTURE_REFUSAL}" for where in _capture_refusals(ctx.scenario, bridge.name)]
        if problems:
            raise PlacementError(f"bridge {bridge.name!r} must run in a switch guest ({p.why}), but: " + "; ".join(problems))
        ports: list[SwitchPort] = []
        for vm, planned in zip(ctx.scenario.vms, ctx.vms):
            for nic, pn in zip(vm.nics, planned.nics):
                if nic.bridge != bridge.name:
                    continue
                k = len(ports) + 1
                trunks = tuple(t.vlan for t in getattr(nic, "trunk", None) or ())  # the vlan feature's NIC fields
                ports.append(SwitchPort(port_name(k), link_name(index[bridge.name], k), f"{vm.name} {pn.guest_name}", pn.tap, getattr(nic, "vlan", None), trunks))
                attach[pn.tap] = link_name(index[bridge.name], k)
        guest = switch_name(bridge.name)
        switches.append(SwitchGuest(bridge.name, guest, p.why, bool(needs(bridge)), bool(getattr(bridge, "stp", False)), tuple(ports)))
        guests.append(GuestRequest(guest, SWITCH_MEMORY, tuple((s.port, s.link) for s in ports), SWITCH_ROLE))
    notes = tuple(f"bridge {s.bridge} runs in switch guest {s.guest}: {s.why}" for s in switches)
    data = SwitchPlan(tuple(placements), tuple(switches))
    part = PlanPart(
        data=data,
        guests=tuple(guests),
        placed={s.bridge: s.guest for s in switches},
        links=tuple(port.link for s in switches for port in s.ports),
        attach=attach,
        notes=notes,
    )
    return data, part


def _part(plan: Plan) -> SwitchPlan | None:
    return plan.part("switch-guest", None)


# -- configure: the bridge inside the guest ------------------------------------------------------


def bridge_commands(s: SwitchGuest) -> list[str]:
    """What makes the bridge in the switch guest (busybox ip, sysfs, iproute2's bridge)."""
    lines = ["modprobe bridge", f"ip link add name {s.bridge} type bridge"]
    if s.vlan_filtering:
        lines.append(f"echo 1 > /sys/class/net/{s.bridge}/bridge/vlan_filtering")
    if s.stp:
        lines.append(f"echo 1 > /sys/class/net/{s.bridge}/bridge/stp_state")
    for p in s.ports:
        lines += [f"ip link set {p.port} master {s.bridge}", f"ip link set {p.port} up"]
        if p.access is not None:
            lines += [f"bridge vlan add dev {p.port} vid {p.access} pvid untagged", f"bridge vlan del dev {p.port} vid 1"]
        elif p.trunks:
            lines += [f"bridge vlan add dev {p.port} vid {v}" for v in p.trunks] + [f"bridge vlan del dev {p.port} vid 1"]
    return lines + [f"ip link set {s.bridge} up"]


def configure_switch(s: SwitchGuest, ssh: GuestSSH) -> None:
    script = f"ip link del {shlex.quote(s.bridge)} 2>/dev/null; " + "; ".join(c + " || exit 1" for c in bridge_commands(s))
    result = ssh.run(script, timeout=30.0, check=False)
    if result.exit_code != 0:
        raise SwitchGuestError(f"{s.guest}: making bridge {s.bridge} failed (exit {result.exit_code}): {excerpt(result.stderr + result.stdout)}")


# -- reading it back -----------------------------------------------------------------------------


def parse_vlan_show(text: str) -> dict[str, list[str]]:
    """`bridge vlan show` → port → ["10 PVID Egress Untagged", "20"]: each VLAN line as the kernel words it."""
    out: dict[str, list[str]] = {}
    port = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("port"):
            continue
        if not line[0].isspace():
            port, _, rest = line.partition(" ")
            out[port] = []
            line = rest
        if port is not None and line.strip():
            out[port].append(" ".join(line.split()))
    return out


def want_vlans(p: SwitchPort) -> list[str]:
    if p.access is not None:
        return [f"{p.access} PVID Egress Untagged"]
    return [str(v) for v in sorted(p.trunks)]


def inspect_rows(plan: Plan) -> list[InspectRow]:
    rows = []
    for s in _part(plan).switches if _part(plan) else ():
        label = f"bridge {s.bridge} in switch guest {s.guest}"
        want = f"{len(s.ports)} port(s)" + (", VLAN filtering" if s.vlan_filtering else "") + (", STP" if s.stp else "")
        try:
            ssh = open_ssh(plan, plan.vm(s.guest), time.monotonic() + 10.0)
        except VnetlabError as exc:
            rows.append(InspectRow(label, want, "unknown", [f"cannot reach {s.guest}: {exc}"]))
            continue
        try:
            masters = ssh.run(f"for p in /sys/class/net/{s.bridge}/brif/*; do echo ${{p##*/}}; done; cat /sys/class/net/{s.bridge}/bridge/vlan_filtering", timeout=10.0, check=False).stdout.split()
            vlans = parse_vlan_show(ssh.run("bridge vlan show", timeout=10.0, check=False).stdout) if s.vlan_filtering else {}
        finally:
            ssh.close()
        filtering = masters[-1] if masters else "?"
        members = set(masters[:-1])
        problems = [f"{p.port} ({p.member}) is not a port of {s.bridge}" for p in s.ports if p.port not in members]
        if s.vlan_filtering and filtering != "1":
            problems.append(f"{s.bridge} has vlan_filtering {filtering}")
        rows.append(InspectRow(label, want, f"ports {', '.join(sorted(members)) or 'none'}, vlan_filtering {filtering}", problems))
        for p in s.ports if s.vlan_filtering else ():
            got = vlans.get(p.port, [])
            rows.append(InspectRow(f"VLANs of {s.guest} {p.port} ({p.member})", "; ".join(want_vlans(p)), "; ".join(got) or "none", [] if got == want_vlans(p) else [f"{p.port} has {'; '.join(got) or 'no VLANs'}"]))
    return rows


class SwitchGuestFeature(Feature):
    name = "switch-guest"
    requires = ("vlan",)
    model = MODEL

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        planned = plan_switches(ctx)
        return planned[1] if planned else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        return {"switch-guests": [
            {"bridge": s.bridge, "guest": s.guest, "why": s.why, "ports": [{"port": p.port, "member": p.member, "link": p.link} for p in s.ports], "commands": bridge_commands(s)}
            for s in part.switches
        ]}

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        return "bridges in switch guests: " + ", ".join(f"{s.bridge} in {s.guest}" for s in part.switches) if part else None

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        for s in _part(plan).switches if _part(plan) else ():
            configure_switch(s, sessions[s.guest])

    def explain(self, plan: Plan) -> Sequence[Section]:
        sections = []
        for s in _part(plan).switches if _part(plan) else ():
            ns = plan.namespace
            lines = [f"# {s.bridge} runs in switch guest {s.guest} ({s.why}); each member reaches it over a point-to-point link:"]
            lines += [f"# {p.link}: {p.member}'s tap {p.member_tap} <-> {s.guest} {p.port}" for p in s.ports]
            lines.append(f"# (the links' bridges are made with the others, in the lab namespace {ns})")
            lines += [guest_line(s.guest, c) for c in bridge_commands(s)]
            sections.append(Section(f"Bridge {s.bridge} in switch guest {s.guest}", tuple(lines), stage="configure"))
        return sections

    def graph(self, plan: Plan, drawing: Any) -> None:
        """A switch guest is drawn as its bridge (labelled with it): its point-to-point links are wires, not bridges."""
        part = _part(plan)
        links = {drawing.bridge_ids.get(p.link) for s in part.switches for p in s.ports} if part else set()
        drawing.topo.bridges[:] = [b for b in drawing.topo.bridges if b.id not in links]

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)
