"""MTU per bridge and per guest NIC, and path-MTU checks (`pmtu`): pings with don't-fragment.

- `mtu:` on a bridge sets the MTU of the bridge *and of every port on it*. A Linux bridge whose
  MTU was set by hand keeps it (the kernel stops deriving it from its ports), but its ports keep
  their own: a tap left at 1500 on a 9000 bridge silently drops every larger frame on its way out
  to the guest. So the bridge gets its MTU in the lab namespace once it exists (apply), the veths
  of containers and hosts on it then too (with their own end in their namespace), and the taps
  once the guests have started and their taps joined the bridge (configure).
- `mtu:` on a VM NIC is the MTU inside the guest (`ip link set dev X mtu N` over SSH, the NIC
  found by its MAC); a NIC without one takes its bridge's `mtu:`, if the bridge has one. A NIC's
  MTU may not exceed its bridge's (1500 for a bridge without `mtu:`): frames larger than the
  bridge's ports would be dropped without a word.
- `pmtu` checks ping with `-M do -s SIZE`: a packet larger than the path MTU is refused — by the
  sender's own NIC, or by a router that answers "fragmentation needed" — instead of being
  fragmented. `expect: frag-needed` wants the router's answer: a path that drops the packet without
  one is a black hole (a router whose NIC is larger than its segment's MTU). The `frag-needed`
  capture expectation sees that answer on the wire. busybox's ping has no -M, so the guest image also carries iputils' ping at
  PING_PATH (images/binaries.txt). A bare `ping` in the guest is still busybox's: the guest's
  shell (busybox sh) runs its own applets before anything on PATH.
"""

from __future__ import annotations

import concurrent.futures
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnetlab.backends import linux_bridge
from vnetlab.backends.netns import namespace_exists
from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckKind, CheckResult, Evidence, Judgement, Wire, node_ips
from vnetlab.checks.capture import frag_needed
from vnetlab.checks.ping import echo_on_wire, guest_of, output_evidence, path_points, recorded
from vnetlab.checks.parse import MAX_LINE, MAX_LINES, MAX_TEXT, excerpt, ping_summary
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import NAME, VM_NAME_MAX, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, check_target, node_names, shown_target, target_address
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.tools.explain import Section, command_at, guest_line, sh
from vnetlab.tools.inspect import InspectRow

T = TypeVar("T")

MTU_MIN = 68  # IPv4's minimum (RFC 791): the kernel refuses less on an interface that carries IPv4
MTU_MAX = 65535
DEFAULT_MTU = 1500  # what the kernel gives taps, veths and a bridge whose MTU nobody set
HEADERS = 28  # IPv4 (20) + ICMP echo (8): a ping of SIZE payload bytes is a packet of SIZE + 28
SIZE_MAX = 65507  # 65535 - 28: the largest ICMP payload an IPv4 packet can carry
PING_PATH = "/usr/bin/ping"  # iputils' ping; the guest's busybox ping (/bin/ping) has no -M
PING_COUNT = 3


class MtuError(VnetlabError):
    """An MTU could not be set: on a bridge or port in the lab, or on a NIC inside a guest."""


# -- the scenario keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class PmtuCheck:
    source: str = spec("VM, container or host that sends the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)
    to: str = spec("target, as a ping's: a VM, container or host name (behind a router: its first address), NODE.NIC, or an IPv4 address; may be a template")
    size: int = spec("ICMP payload bytes of each ping; the IPv4 packet is 28 bytes more (ping -s)", minimum=0, maximum=SIZE_MAX)
    expect: Literal["success", "failure", "frag-needed"] = spec(
        "success: every echo comes back unfragmented; failure: none does (the packet exceeds the path MTU and may not be fragmented); "
        "frag-needed: none does, and a router on the path said why, with an ICMP \"fragmentation needed\" (path MTU discovery works: "
        "no black hole). For frag-needed the source first forgets the path MTUs it learnt (ip route flush cache), so the router is asked again",
        default="success",
    )


def _mtu_field(doc: str) -> Any:
    return spec(doc, default=None, minimum=MTU_MIN, maximum=MTU_MAX)


def _bridge_mtu(scenario: Any, name: str) -> tuple[int, bool]:
    """(the MTU of bridge `name`, whether the scenario sets it)."""
    bridge = next((b for b in scenario.bridges if b.name == name), None)
    mtu = getattr(bridge, "mtu", None)
    return (mtu, True) if mtu is not None else (DEFAULT_MTU, False)


def _validate(rules: Rules) -> None:
    scenario = rules.scenario
    for i, bridge in enumerate(scenario.bridges):
        if bridge.mtu is not None and bridge.type != "linux":
            rules.add(f"bridges[{i}].mtu", f"bridge type {bridge.type} takes no mtu here: vnetlab sets MTUs on Linux bridges (type linux) only")
    known = {b.name for b in scenario.bridges}
    for i, vm in enumerate(scenario.vms):
        for j, nic in enumerate(vm.nics):
            if nic.mtu is None or nic.bridge not in known:
                continue
            limit, explicit = _bridge_mtu(scenario, nic.bridge)
            if nic.mtu > limit:
                what = f"MTU {limit}" if explicit else f"MTU {limit}, the kernel's default: it has no mtu"
                rules.add(
                    f"vms[{i}].nics[{j}].mtu",
                    f"bridge {nic.bridge!r} ({what}) is too small for mtu {nic.mtu}: its ports drop larger frames without a word; "
                    f"lower this NIC's mtu to {limit} or less, or raise the bridge's",
                )


def _validate_check(rules: Rules, check: PmtuCheck, path: str) -> None:
    """`to` as a ping's: a node (across a router: its first address), NODE.NIC, an address, a template."""
    if check.source not in node_names(rules.scenario):
        rules.add(f"{path}.from", f"no {rules.node_words()} named {check.source!r}")
    else:
        check_target(rules, check, path, rules.node_words(), "the path")


MODEL = ModelExtension(
    bridge_fields=(decl("mtu", int | None, _mtu_field("MTU of the bridge and of every port on it (taps, veths) in bytes; its VMs' NICs take it too unless they set their own (default: the kernel's 1500)")),),
    nic_fields=(decl("mtu", int | None, _mtu_field("MTU of this NIC inside the guest, at most its bridge's (default: the bridge's mtu, else 1500)")),),
    checks=(decl("pmtu", PmtuCheck | None, spec("ping with don't-fragment and a payload size: does a packet of that size cross the path unfragmented?", default=None)),),
    check_validators={"pmtu": _validate_check},
    expectations=(Expectation("frag-needed"),),
    validate=_validate,
)


# -- plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeMtu:
    bridge: str
    mtu: int


@dataclass(frozen=True)
class GuestMtu:
    vm: str
    nic: str  # its name inside the guest
    mac: str  # how the guest finds it (names can differ until the guest's init renamed it)
    mtu: int


@dataclass(frozen=True)
class MtuPlan:
    bridges: tuple[BridgeMtu, ...]
    guests: tuple[GuestMtu, ...]


@dataclass(frozen=True)
class Port:
    """A port of a bridge whose MTU is set: a VM's tap, or a node's veth (with its other end)."""

    name: str
    owner: str  # "vm1 eth0", "container c1"
    kind: Literal["tap", "veth"]
    peer_namespace: str | None = None  # a veth's other end, in its node's namespace
    peer: str | None = None


def plan_mtu(ctx: PlanContext) -> MtuPlan | None:
    bridges = tuple(BridgeMtu(b.name, b.mtu) for b in ctx.scenario.bridges if b.mtu is not None)
    set_on = {b.bridge: b.mtu for b in bridges}
    guests: list[GuestMtu] = []
    for vm, planned in zip(ctx.scenario.vms, ctx.vms):
        for nic, p in zip(vm.nics, planned.nics):
            mtu = nic.mtu if nic.mtu is not None else set_on.get(nic.bridge)
            if mtu is not None:
                guests.append(GuestMtu(vm.name, p.guest_name, p.mac, mtu))
    return MtuPlan(bridges, tuple(guests)) if bridges or guests else None


def ports(plan: Plan, bridge: str) -> list[Port]:
    """The bridge's ports as planned: the VMs' taps, then the veths of containers and hosts."""
    found = [Port(n.tap, f"{vm.name} {n.guest_name}", "tap") for vm in plan.vms for n in vm.nics if n.bridge == bridge]
    found += [Port(n.veth, f"{n.kind} {n.name}", "veth", n.namespace, n.iface) for n in plan.nodes if n.bridge == bridge]
    return found


def _part(plan: Plan) -> MtuPlan | None:
    return plan.part("mtu", None)


# -- apply and configure: netlink in the lab namespace, `ip link` in the guests -----------------


def _netlink(ns: str, what: str, fn: Callable[[IPRoute], T]) -> T:
    return linux_bridge.with_netlink(ns, what, fn, MtuError)


def set_mtus(ns: str, mtus: list[tuple[str, int]]) -> None:
    """`ip -n NS link set NAME mtu N` for each (NAME, N), in order."""

    def op(ipr: IPRoute) -> None:
        for name, mtu in mtus:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise MtuError(f"setting the MTU of {name!r} to {mtu}: no such link in namespace {ns!r}")
            try:
                ipr.link("set", index=found[0], mtu=mtu)
            except NetlinkError as exc:
                raise MtuError(f"setting the MTU of {name!r} to {mtu} in namespace {ns!r}: the kernel refused: {exc}") from exc

    if mtus:
        _netlink(ns, "setting MTUs", op)


def link_mtus(ns: str) -> dict[str, int]:
    """Every link's MTU in namespace ns, by name (netlink: /sys/class/net does not follow a thread's namespace)."""
    return _netlink(ns, "reading MTUs", lambda ipr: {link.get_attr("IFLA_IFNAME"): int(link.get_attr("IFLA_MTU")) for link in ipr.get_links()})


def apply_bridges(plan: Plan) -> None:
    """Each bridge first (set by hand, the kernel stops deriving it from its ports), then the veths
    already on it and their other ends; taps join later, with the guests (configure_taps)."""
    part = _part(plan)
    for b in part.bridges if part else ():
        veths = [p for p in ports(plan, b.bridge) if p.kind == "veth"]
        set_mtus(plan.namespace, [(b.bridge, b.mtu)] + [(p.name, b.mtu) for p in veths])
        for p in veths:
            assert p.peer_namespace is not None and p.peer is not None
            set_mtus(p.peer_namespace, [(p.peer, b.mtu)])


def configure_taps(plan: Plan) -> None:
    part = _part(plan)
    mtus = [(p.name, b.mtu) for b in (part.bridges if part else ()) for p in ports(plan, b.bridge) if p.kind == "tap"]
    set_mtus(plan.namespace, mtus)


def guest_script(nics: list[GuestMtu]) -> str:
    """Set each NIC's MTU, finding the NIC by its MAC (as addressing does), in one SSH command."""
    steps = []
    for g in nics:
        steps.append(
            f"mac={shlex.quote(g.mac)}; dev=; "
            'for d in /sys/class/net/*; do read -r a < "$d/address"; [ "$a" = "$mac" ] && dev=${d##*/}; done; '
            '[ -n "$dev" ] || { echo "no interface with MAC $mac" >&2; exit 1; }; '
            f'ip link set dev "$dev" mtu {g.mtu} || exit 1'
        )
    return "; ".join(steps)


def configure_guests(plan: Plan, sessions: dict[str, GuestSSH]) -> None:
    part = _part(plan)
    by_vm: dict[str, list[GuestMtu]] = {}
    for g in part.guests if part else ():
        by_vm.setdefault(g.vm, []).append(g)

    def one(vm: str) -> None:
        result = sessions[vm].run(guest_script(by_vm[vm]), timeout=20.0, check=False)
        if result.exit_code != 0:
            wanted = ", ".join(f"{g.nic} {g.mtu}" for g in by_vm[vm])
            raise MtuError(f"{vm}: setting the MTU of its NICs ({wanted}) failed (exit {result.exit_code}): {excerpt(result.stderr + result.stdout)}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(by_vm))) as pool:
        for future in [pool.submit(one, vm) for vm in by_vm]:
            future.result()


# -- the pmtu check --------------------------------------------------------------------------

# iputils: "ping: local error: message too long, mtu=1400" (the sender's own NIC or learnt path MTU
# refuses it); "From 10.9.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)" (a router on the path does).
_REFUSAL = re.compile(r"(message too long|Frag needed and DF set)[^0-9\n]{0,24}mtu ?= ?([0-9]{1,5})(?![0-9])", re.ASCII)
SENDER, ROUTER = "sender", "router"


def refusals(text: str) -> dict[str, int]:
    """Who refused an oversized don't-fragment packet, with the MTU they gave: {"router": 1400} when
    a router answered "fragmentation needed", {"sender": 1400} when the sender's own stack refused
    it; the first of each. Bounded like vnetlab.checks.parse: the last MAX_LINES lines of the last
    MAX_TEXT characters, MAX_LINE characters of each; never raises."""
    found: dict[str, int] = {}
    if not isinstance(text, str):
        return found
    for line in text[-MAX_TEXT:].splitlines()[-MAX_LINES:]:
        match = _REFUSAL.search(line[:MAX_LINE])
        if match:
            found.setdefault(SENDER if match.group(1) == "message too long" else ROUTER, int(match.group(2)))
    return found


def _said(refused: dict[str, int]) -> str:
    parts = []
    if ROUTER in refused:
        parts.append(f"a router answered fragmentation needed (mtu {refused[ROUTER]})")
    if SENDER in refused:
        parts.append(f"the sender refused to send it (mtu {refused[SENDER]})")
    return "; " + ", then ".join(parts) if parts else ""


def pmtu_argv(size: int, target: str) -> list[str]:
    """What a pmtu check runs at its source (also shown by `--explain`)."""
    return [PING_PATH, "-M", "do", "-c", str(PING_COUNT), "-W", "2", "-s", str(size), target]


def pmtu_target(plan: Plan, check: PmtuCheck) -> str:
    return target_address(plan.scenario, check.source, check.to)


def check_name(check: PmtuCheck, plan: Plan | None = None) -> str:
    to = shown_target(plan.scenario, check.to) if plan is not None else check.to
    must = {"failure": " (must fail)", "frag-needed": " (a router must answer fragmentation needed)"}.get(check.expect, "")
    return f"pmtu {check.source} → {to}: {check.size + HEADERS}-byte packets, don't fragment" + must


FLUSH_ARGV = ["ip", "route", "flush", "cache"]  # the path MTUs the source learnt expire after 10 minutes; this forgets them now


def collect_pmtu(ctx: CheckContext, check: PmtuCheck) -> Evidence:
    argv = pmtu_argv(check.size, pmtu_target(ctx.plan, check))
    node = ctx.node(check.source)
    more: dict[str, Any] = {}
    if check.expect == "frag-needed":  # best effort: a path MTU still known shows as the sender's refusal
        more["flush"] = {"command": shlex.join(FLUSH_ARGV), "exit": node.run(FLUSH_ARGV, timeout=10.0).exit_code}
    result = node.run(argv, timeout=10.0 + 2.5 * PING_COUNT)
    return Evidence(output_evidence(result, **more), guests=guest_of(ctx.plan, check.source))


def judge_pmtu(plan: Plan, check: PmtuCheck, evidence: Evidence) -> CheckResult:
    """Every echo answered (expect success) or none (expect failure), and who refused the packets."""
    target = pmtu_target(plan, check)
    argv = pmtu_argv(check.size, target)
    result = recorded(evidence)
    summary = ping_summary(result.stdout)  # guest output: bounded parsing, never trusted
    refused = {**refusals(result.stderr), **refusals(result.stdout)}  # iputils: the router's answer on stdout, local errors on stderr
    sent, received = summary or (0, 0)
    packet = check.size + HEADERS
    data: dict[str, object] = {"target": target, "size": check.size, "packet": packet, "sent": sent, "received": received}
    data.update({f"{who}_mtu": mtu for who, mtu in refused.items()})
    name = check_name(check, plan)
    if summary is None:
        return CheckResult(name, "pmtu", False, f"`{shlex.join(argv)}` printed no summary (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}", data=data)
    seen = f"got {received}/{sent}" + _said(refused)
    if check.expect == "success":
        ok = received == PING_COUNT
        detail = f"expected {PING_COUNT}/{PING_COUNT} echo replies from {target} to {packet}-byte packets ({check.size} bytes of payload) with don't-fragment, {seen}"
    elif check.expect == "frag-needed":
        ok = received == 0 and ROUTER in refused
        detail = f"expected no echo reply from {target} to {packet}-byte packets ({check.size} bytes of payload) with don't-fragment, and a router answering fragmentation needed, {seen}"
        if received == 0 and not refused:
            detail += " (dropped without a word: a black hole)"
    else:
        ok = received == 0
        detail = f"expected no echo reply from {target} to {packet}-byte packets ({check.size} bytes of payload) with don't-fragment, {seen}"
    return CheckResult(name, "pmtu", ok, detail, data=data)


def run_pmtu(ctx: CheckContext, check: PmtuCheck) -> CheckResult:
    return PMTU.run(ctx, check)


def _wire_points(plan: Plan, check: PmtuCheck) -> list[str]:
    return path_points(plan, check.source, pmtu_target(plan, check))


def judge_pmtu_wire(plan: Plan, check: PmtuCheck, evidence: Evidence, frames: Mapping[str, Any]) -> Judgement:
    """On the wire: echo pairs of exactly the probe's size (or, to fail, no reply of that size); for
    frag-needed, no reply and the router's "fragmentation needed" to the source about the target."""
    summary = ping_summary(recorded(evidence).stdout)
    target, points = pmtu_target(plan, check), _wire_points(plan, check)
    echo = echo_on_wire(
        plan, check.source, target, frames, points,
        claimed=summary[1] if summary else 0, must_fail=check.expect != "success", size=check.size + HEADERS,
    )
    if check.expect != "frag-needed":
        return echo
    mtus = [m for p in points for m in frag_needed(frames.get(p, ()), node_ips(plan, check.source), about=target)]
    said = f"{len(mtus)} fragmentation needed about {target}" + (f" (next-hop MTU {', '.join(map(str, sorted(set(mtus))))})" if mtus else "")
    return Judgement(
        echo.ok and bool(mtus), f"{echo.expected}, and ≥1 ICMP fragmentation needed to {check.source}", f"{echo.seen}; {said}",
        {**echo.counts, "wire_frag_needed": len(mtus)},
    )


PMTU = CheckKind(collect_pmtu, judge_pmtu, Wire(_wire_points, judge_pmtu_wire))


# -- views ---------------------------------------------------------------------------------------


def _check_commands(plan: Plan, check: PmtuCheck) -> list[str]:
    at = command_at(plan, check.source)
    line = at(shlex.join(pmtu_argv(check.size, pmtu_target(plan, check))))
    packet = check.size + HEADERS
    if check.expect == "frag-needed":
        return [at(shlex.join(FLUSH_ARGV)) + "    # forget the path MTUs learnt so far", line + f"    # {packet}-byte packets: a router must answer \"Frag needed\""]
    return [line + (f"    # {packet}-byte packets: must get {PING_COUNT}/{PING_COUNT} replies" if check.expect == "success" else f"    # {packet}-byte packets: must be refused or get no reply")]


# -- the frag-needed capture expectation ----------------------------------------------------------


def judge_frag_needed(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """between[1] (a router) told between[0] that its packet was too big for the next hop, on the wire."""
    assert s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    mtus = frag_needed(s.packets, {s.nic_a.ip}, sender=s.nic_b.ip)
    said = f" (next-hop MTU {', '.join(str(m) for m in sorted(set(mtus)))})" if mtus else ""
    return Judgement(
        bool(mtus),
        f"≥1 ICMP fragmentation needed from {s.nic_b.ip} ({s.name_b}) to {s.nic_a.ip} ({s.name_a})",
        f"{len(mtus)} fragmentation needed{said}",
        {"frag_needed": len(mtus)},
    )


def explain_network(plan: Plan) -> list[str]:
    part = _part(plan)
    lines: list[str] = []
    for b in part.bridges if part else ():
        lines.append(f"{sh('ip', '-n', plan.namespace, 'link', 'set', b.bridge, 'mtu', b.mtu)}    # set by hand: the kernel no longer derives it from the ports")
        for p in ports(plan, b.bridge):
            lines.append(f"{sh('ip', '-n', plan.namespace, 'link', 'set', p.name, 'mtu', b.mtu)}    # {p.kind} of {p.owner}" + (": once the guest has started and the tap joined the bridge" if p.kind == "tap" else ""))
            if p.kind == "veth":
                lines.append(f"{sh('ip', '-n', p.peer_namespace, 'link', 'set', p.peer, 'mtu', b.mtu)}    # its other end")
    return lines


def explain_guests(plan: Plan) -> list[str]:
    part = _part(plan)
    return [guest_line(g.vm, ["ip", "link", "set", "dev", g.nic, "mtu", g.mtu]) for g in (part.guests if part else ())]


def inspect_rows(plan: Plan) -> list[InspectRow]:
    part = _part(plan)
    if not part or not part.bridges:
        return []
    live = link_mtus(plan.namespace) if namespace_exists(plan.namespace) else {}
    rows = []
    for b in part.bridges:
        names = [b.bridge] + [p.name for p in ports(plan, b.bridge)]
        problems = [f"{n} is missing" if n not in live else f"{n} has MTU {live[n]}" for n in names if live.get(n) != b.mtu]
        state = ", ".join(f"{n} {live[n]}" for n in names if n in live) or "missing"
        rows.append(InspectRow(f"MTU of bridge {b.bridge}", f"{b.mtu} on the bridge and its {len(names) - 1} port(s)", state, problems))
    return rows


class Mtu(Feature):
    name = "mtu"
    model = MODEL
    check_kinds = {"pmtu": PMTU}
    check_commands = {"pmtu": _check_commands}
    judges = {"frag-needed": judge_frag_needed}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_mtu(ctx)
        return PlanPart(data=part) if part else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        return {"mtu": {
            "bridges": [{"name": b.bridge, "mtu": b.mtu, "ports": [p.name for p in ports(plan, b.bridge)]} for b in part.bridges],
            "guests": [{"vm": g.vm, "nic": g.nic, "mtu": g.mtu} for g in part.guests],
        }}

    def apply(self, plan: Plan, ctx: Any) -> None:
        apply_bridges(plan)  # nothing is created: the MTUs go with the namespace

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        if not part:
            return None
        what = [f"{b.bridge} {b.mtu} (and its ports)" for b in part.bridges]
        if part.guests:
            what.append("guest NICs of " + ", ".join(dict.fromkeys(g.vm for g in part.guests)))
        return "MTU: " + ", ".join(what)

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        configure_taps(plan)
        configure_guests(plan, sessions)

    def explain(self, plan: Plan) -> list[Section]:
        sections = []
        network = explain_network(plan)
        if network:
            sections.append(Section("MTU of the bridges and their ports", tuple(network), stage="network"))
        guests = explain_guests(plan)
        if guests:
            sections.append(Section("MTU of the guests' NICs", tuple(guests), stage="configure"))
        return sections

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each bridge with an MTU says so; so does each guest NIC with one."""
        part = _part(plan)
        if not part:
            return
        for b in part.bridges:
            node = next((n for n in drawing.topo.bridges if n.id == drawing.bridge_ids.get(b.bridge)), None)
            if node is not None:
                node.label.append(f"mtu {b.mtu}")
        for g in part.guests:
            edge = drawing.nic_edge(g.vm, g.nic)
            if edge is not None:
                edge.label.append(f"mtu {g.mtu}")

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)
