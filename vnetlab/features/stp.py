"""Spanning tree on Linux bridges (`stp: true`) and links between bridges (`bridge-links:`).

- `bridge-links:` joins two bridges of the lab namespace with a veth pair, each end a port of
  one of them (`vnlbl<i>a` on the first, `vnlbl<i>b` on the second: names starting with vnl are
  vnetlab's own, so none clashes with a user's). NICs on bridges joined this way share one
  Ethernet segment: a ping from a VM on one to a VM on the other needs no router.
- Links that close a loop flood the lab namespace forever unless every bridge of the loop runs
  the spanning tree protocol: a broadcast circles the loop, copied at each bridge, with nothing
  to stop it. So such a loop is refused unless every bridge on it has `stp: true`.
- `stp: true` turns on the kernel's STP on the bridge with the shortest timers it accepts
  (forward delay 2 s, hello 1 s), *before* the links come up, so the loop never forwards
  unprotected; configure then waits until no port is listening or learning any more.
- The `stp` check reads the port states from the kernel: `stp: {blocking: N}` passes iff exactly N
  ports block and every other port forwards. The `bounded-broadcast` capture expectation counts
  the broadcast frames a bridge saw during the checks: a storm gives thousands in a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute

from vnetlab.backends import linux_bridge
from vnetlab.backends.netns import namespace_exists
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckKind, CheckResult, Evidence, Judgement
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, route_across
from vnetlab.plan.planner import Plan, PlanContext, PlanPart, Resource
from vnetlab.tools.explain import Section, sh
from vnetlab.tools.inspect import PORT_STATES, InspectRow

T = TypeVar("T")

FORWARD_DELAY_CS = 200  # the kernel's minimum with STP on: 2 s (IFLA_BR_FORWARD_DELAY is in centiseconds)
HELLO_TIME_CS = 100  # the kernel's minimum: 1 s
CONVERGE_TIMEOUT = 60.0  # seconds configure waits for every STP port to leave listening/learning
BROADCAST_MAX = 100  # broadcasts a bridge may see during the checks; a storm gives thousands a second
BROADCAST = "ff:ff:ff:ff:ff:ff"
DISABLED, LISTENING, LEARNING, FORWARDING, BLOCKING = 0, 1, 2, 3, 4


class StpError(VnetlabError):
    """STP could not be turned on, a bridge link not created, or the spanning tree did not converge."""


# -- the scenario keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeLink:
    between: list[str] = spec("the two bridges of the lab namespace the veth pair joins, e.g. [br1, br2]", min_items=2)

    def check_shape(self) -> list[str]:
        n = len(self.between)
        return [] if n == 2 else [f"between: expected exactly two different bridge names (one per end of the veth pair), got {n}"]


@dataclass(frozen=True)
class StpSettings:
    """The spanning tree with a bridge priority: the lowest bridge ID (priority, then MAC) is the root."""

    priority: int = spec("bridge priority, 0..65535 (default 32768): the lowest becomes the root bridge, so the lesson decides which port blocks", minimum=0, maximum=65535)


@dataclass(frozen=True)
class StpCheck:
    blocking: int = spec("how many bridge ports must be blocking (read from the kernel); every other port must be forwarding", minimum=0, maximum=1000)
    disabled: int = spec("how many bridge ports must be disabled: their link is down (e.g. a link the checks pulled)", default=0, minimum=0, maximum=1000)


DEFAULT_PRIORITY = 32768


def priority(stp: Any) -> int | None:
    """A bridge's `stp:` as its priority: None without STP, the kernel's default for `stp: true`."""
    if not stp:
        return None
    return stp.priority if isinstance(stp, StpSettings) else DEFAULT_PRIORITY


def link_veths(i: int) -> tuple[str, str]:
    """The two ends of the i-th bridge link: on its first bridge, on its second (≤ 15 characters)."""
    return f"vnlbl{i}a", f"vnlbl{i}b"


class _Forest:
    """Union-find over bridge names, keeping the links so far to name a loop's bridges."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.edges: dict[str, list[str]] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def path(self, a: str, b: str) -> list[str]:
        """The bridges from a to b along the links so far (they are in one tree)."""
        prev: dict[str, str | None] = {a: None}
        todo = [a]
        while todo:
            x = todo.pop(0)
            if x == b:
                break
            for y in self.edges.get(x, []):
                if y not in prev:
                    prev[y] = x
                    todo.append(y)
        out: list[str] = []
        at: str | None = b
        while at is not None:
            out.append(at)
            at = prev[at]
        return out[::-1]

    def join(self, a: str, b: str) -> list[str] | None:
        """Add link a–b; returns the loop it closes (a, …, b) or None."""
        loop = self.path(a, b) if self.find(a) == self.find(b) else None
        self.parent[self.find(a)] = self.find(b)
        self.edges.setdefault(a, []).append(b)
        self.edges.setdefault(b, []).append(a)
        return loop


def loops(links: list[tuple[str, str]]) -> list[tuple[int, list[str]]]:
    """(index of the link that closes it, its bridges in order) for every loop the links make."""
    forest = _Forest()
    return [(i, loop) for i, (a, b) in enumerate(links) if (loop := forest.join(a, b)) is not None]


def _valid_links(scenario: Any) -> list[tuple[str, str]]:
    """The links that join two different bridges that exist, as pairs (for planning and routing)."""
    names = {b.name for b in scenario.bridges}
    return [(lk.between[0], lk.between[1]) for lk in scenario.bridge_links if len(lk.between) == 2 and lk.between[0] != lk.between[1] and set(lk.between) <= names]


def _validate(rules: Rules) -> None:
    scenario = rules.scenario
    bridges = {b.name: b for b in scenario.bridges}
    for i, bridge in enumerate(scenario.bridges):
        if bridge.stp and bridge.type != "linux":
            rules.add(f"bridges[{i}].stp", f"bridge type {bridge.type} takes no stp here: vnetlab turns on the kernel's STP on Linux bridges (type linux) only")
    seen: dict[frozenset[str], int] = {}
    good: list[tuple[int, tuple[str, str]]] = []
    for i, link in enumerate(scenario.bridge_links):
        path = f"bridge-links[{i}]"
        rules.lab_ifaces |= set(link_veths(i))
        if len(link.between) != 2:  # a shape problem (BridgeLink.check_shape)
            continue
        ok = True
        for k, name in enumerate(link.between):
            if name not in bridges:
                rules.add(f"{path}.between[{k}]", f"no bridge named {name!r} (bridges: {', '.join(bridges) or 'none'})")
                ok = False
            elif bridges[name].type != "linux":
                rules.add(f"{path}.between[{k}]", f"bridge {name!r} is of type {bridges[name].type}: bridge-links join Linux bridges (type linux) only")
                ok = False
        if not ok:
            continue
        a, b = link.between
        if a == b:
            rules.add(f"{path}.between", f"a link from {a!r} to itself: expected two different bridges")
            continue
        pair = frozenset((a, b))
        if pair in seen:
            rules.add(path, f"{a} and {b} are already joined by bridge-links[{seen[pair]}]")
            continue
        seen[pair] = i
        good.append((i, (a, b)))
    for k, loop in loops([pair for _, pair in good]):
        i = good[k][0]
        without = [name for name in dict.fromkeys(loop) if not bridges[name].stp]
        if without:
            ring = " → ".join([*loop, loop[0]])
            rules.add(
                f"bridge-links[{i}]",
                f"this link closes the loop {ring}, and {', '.join(without)} {'has' if len(without) == 1 else 'have'} no stp: true: "
                "a loop without STP floods the lab namespace forever (every broadcast circles the loop, copied at each bridge); "
                "set stp: true on every bridge of the loop",
            )


def _validate_check(rules: Rules, check: StpCheck, path: str) -> None:
    if not any(b.stp for b in rules.scenario.bridges):
        rules.add(path, "no bridge has stp: true: without STP no port ever blocks")


def _validate_bounded(rules: Rules, cap: Any, path: str) -> None:
    if cap.bridge is None:
        rules.add(f"{path}.expect", "bounded-broadcast is judged on a bridge (bridge:)")


def _domain(scenario: Any) -> Callable[[str], str]:
    forest = _Forest()
    for a, b in _valid_links(scenario):
        forest.join(a, b)
    return forest.find


def _route(scenario: Any, source: str, target: str) -> Any:
    """Bridges joined by bridge-links are one Ethernet segment: the target's address on a subnet the source shares."""
    if not scenario.bridge_links:
        return None
    domain = _domain(scenario)
    return route_across(scenario, source, target, lambda a, b: domain(a) == domain(b))


MODEL = ModelExtension(
    sections=(decl("bridge_links", list[BridgeLink], spec("veth pairs joining two bridges of the lab namespace, each end a port of one (a loop needs stp: true on its bridges)", key="bridge-links", default_factory=list)),),
    bridge_fields=(decl("stp", bool | StpSettings, spec("run the kernel's spanning tree protocol on this bridge (forward delay 2 s, hello 1 s): true, or {priority: N} to choose the root bridge; required on every bridge of a loop of bridge-links", default=False)),),
    checks=(decl("stp", StpCheck | None, spec("assert how many bridge ports the spanning tree blocks; every other port must forward", default=None)),),
    check_validators={"stp": _validate_check},
    expectations=(Expectation("bounded-broadcast", _validate_bounded, across_segments=True),),
    validate=_validate,
    route=_route,
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedLink:
    index: int
    bridges: tuple[str, str]
    veths: tuple[str, str]  # the end on bridges[0], the end on bridges[1]
    macs: tuple[str, str]


@dataclass(frozen=True)
class StpPlan:
    bridges: tuple[str, ...]  # bridges with stp: true
    links: tuple[PlannedLink, ...]
    priorities: tuple[int, ...] = ()  # of each bridge with STP, in the order of `bridges`


def plan_stp(ctx: PlanContext) -> StpPlan | None:
    stp = tuple(b.name for b in ctx.scenario.bridges if b.stp)
    priorities = tuple(priority(b.stp) or DEFAULT_PRIORITY for b in ctx.scenario.bridges if b.stp)
    links = []
    for i, (a, b) in enumerate((lk.between[0], lk.between[1]) for lk in ctx.scenario.bridge_links):
        va, vb = link_veths(i)
        links.append(PlannedLink(i, (a, b), (va, vb), (ctx.take_mac("02:00:00", "bridge-link", va), ctx.take_mac("02:00:00", "bridge-link", vb))))
    return StpPlan(stp, tuple(links), priorities) if stp or links else None


def _part(plan: Plan) -> StpPlan | None:
    return plan.part("stp", None)


def port_owners(plan: Plan) -> dict[str, str]:
    """Port name → what it is, for details: "link br3↔br1", "tap of vm1", "veth of container c1"."""
    out = {n.tap: f"tap of {vm.name}" for vm in plan.vms for n in vm.nics}
    out.update({n.veth: f"veth of {n.kind} {n.name}" for n in plan.nodes})
    part = _part(plan)
    for link in part.links if part else ():
        a, b = link.bridges
        out[link.veths[0]] = f"link {a}↔{b}"
        out[link.veths[1]] = f"link {b}↔{a}"
    return out


# -- netlink in the lab namespace ----------------------------------------------------------------


def _netlink(ns: str, what: str, fn: Callable[[IPRoute], T]) -> T:
    return linux_bridge.with_netlink(ns, what, fn, StpError)


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise OSError(f"no link {name!r}")
    return found[0]


def enable_stp(ns: str, bridges: tuple[str, ...], priorities: tuple[int, ...] = ()) -> None:
    """`ip link set BR type bridge stp_state 1 forward_delay 200 hello_time 100 priority N` for each."""

    def op(ipr: IPRoute) -> None:
        for name, prio in zip(bridges, priorities or (DEFAULT_PRIORITY,) * len(bridges)):
            index = _index(ipr, name)
            ipr.link("set", index=index, kind="bridge", br_forward_delay=FORWARD_DELAY_CS, br_hello_time=HELLO_TIME_CS, br_priority=prio)
            ipr.link("set", index=index, kind="bridge", br_stp_state=1)

    if bridges:
        _netlink(ns, f"turning on STP on {', '.join(bridges)}", op)


def port_states(ns: str) -> list[tuple[str, str, int]]:
    """(bridge, port, IFLA_BRPORT_STATE) of every bridge port in namespace ns, sorted."""
    try:
        return linux_bridge.bridge_ports(ns)
    except linux_bridge.LinkError as exc:
        raise StpError(str(exc)) from exc


def _state(code: int) -> str:
    return PORT_STATES.get(code, str(code))


def wait_converged(ns: str, bridges: tuple[str, ...], timeout: float = CONVERGE_TIMEOUT, sleep: Callable[[float], None] = time.sleep) -> list[tuple[str, str, int]]:
    """Poll until no port of an STP bridge is listening or learning; StpError after timeout seconds."""
    ports, moving = linux_bridge.wait_settled(lambda: [p for p in port_states(ns) if p[0] in bridges], timeout, sleep)
    if moving:
        raise StpError(f"the spanning tree did not converge within {timeout:.0f} s: still " + ", ".join(f"{b} port {p} {_state(s)}" for b, p, s in moving))
    return ports


def create_links(plan: Plan, ctx: Any, part: StpPlan) -> None:
    ns = plan.namespace
    for link in part.links:
        va, vb = link.veths
        ctx.record("veth", va, None)  # deleting one end takes the other along
        linux_bridge.create_veth(ns, va, ns, vb)
        for name, mac in zip(link.veths, link.macs):
            _netlink(ns, f"setting the MAC of {name}", lambda ipr, name=name, mac=mac: ipr.link("set", index=_index(ipr, name), address=mac))
        ctx.attach(va, link.bridges[0])
        ctx.attach(vb, link.bridges[1])


# -- checks --------------------------------------------------------------------------------------


def _describe(owners: dict[str, str], bridge: str, port: str) -> str:
    owner = owners.get(port)
    return f"{bridge} port {port}" + (f" ({owner})" if owner else "")


def collect_stp(ctx: CheckContext, check: StpCheck) -> Evidence:
    """The port states of the lab namespace's bridges, read from the kernel (netlink)."""
    return Evidence({"ports": [[b, p, s] for b, p, s in port_states(ctx.plan.namespace)]})


def run_stp(ctx: CheckContext, check: StpCheck) -> CheckResult:
    return STP.run(ctx, check)


def judge_stp(plan: Plan, check: StpCheck, evidence: Evidence) -> CheckResult:
    """Exactly `check.blocking` ports of the lab's bridges blocking, every other one forwarding
    (ports of any other bridge, such as the management bridge, do not count)."""
    bridges = {b.name for b in plan.bridges}
    ports = [(str(b), str(p), int(s)) for b, p, s in evidence.data["ports"] if b in bridges]
    owners = port_owners(plan)
    blocking = [p for p in ports if p[2] == BLOCKING]
    disabled = [p for p in ports if p[2] == DISABLED]
    other = [p for p in ports if p[2] not in (BLOCKING, FORWARDING, DISABLED)]
    ok = len(blocking) == check.blocking and len(disabled) == check.disabled and not other
    seen = f"{len(blocking)} blocking" + (": " + ", ".join(_describe(owners, b, p) for b, p, _ in blocking) if blocking else "")
    if disabled or check.disabled:
        seen += f"; {len(disabled)} disabled" + (": " + ", ".join(_describe(owners, b, p) for b, p, _ in disabled) if disabled else "")
    if other:
        seen += "; not forwarding: " + ", ".join(f"{_describe(owners, b, p)} {_state(s)}" for b, p, s in other)
    wanted = f"{check.blocking} blocking port(s)" + (f", {check.disabled} disabled (link down)" if check.disabled else "")
    detail = f"expected {wanted} and every other of the {len(ports)} bridge ports forwarding; saw {seen}"
    data = {"blocking": [f"{b}/{p}" for b, p, _ in blocking], "ports": {f"{b}/{p}": _state(s) for b, p, s in ports}}
    name = f"stp: {check.blocking} blocking port(s)" + (f", {check.disabled} disabled" if check.disabled else "")
    return CheckResult(name, "stp", ok, detail, data=data)


STP = CheckKind(collect_stp, judge_stp)


def judge_bounded_broadcast(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """The broadcast frames the bridge saw during the checks: a handful of ARP requests, not a storm."""
    count = 0
    for packet in s.packets:
        dst = getattr(packet, "dst", None)
        if isinstance(dst, str) and dst.lower() == BROADCAST:
            count += 1
    return Judgement(
        count <= BROADCAST_MAX,
        f"≤{BROADCAST_MAX} broadcast frames on {check.on} during the checks (a loop without STP gives thousands a second)",
        f"{count} broadcast frame(s)",
        {"broadcast_frames": count},
    )


# -- views ---------------------------------------------------------------------------------------


def explain_lines(plan: Plan) -> list[str]:
    part = _part(plan)
    if not part:
        return []
    ns = plan.namespace
    prios = part.priorities or (DEFAULT_PRIORITY,) * len(part.bridges)
    lines = [
        sh("ip", "-n", ns, "link", "set", br, "type", "bridge", "stp_state", 1, "forward_delay", FORWARD_DELAY_CS, "hello_time", HELLO_TIME_CS,
           *(("priority", prio) if prio != DEFAULT_PRIORITY else ()))
        + "    # before the links come up: a loop never forwards unprotected"
        for br, prio in zip(part.bridges, prios)
    ]
    for link in part.links:
        (a, b), (va, vb), (ma, mb) = link.bridges, link.veths, link.macs
        lines += [
            f"# bridge link {a} ↔ {b}",
            sh("ip", "-n", ns, "link", "add", va, "address", ma, "type", "veth", "peer", "name", vb, "address", mb),
            sh("ip", "-n", ns, "link", "set", va, "master", a, "up"),
            sh("ip", "-n", ns, "link", "set", vb, "master", b, "up"),
        ]
    if part.bridges:
        lines.append(f"{sh('bridge', '-n', ns, 'link', 'show')}    # wait until no port is listening or learning (up to {CONVERGE_TIMEOUT:.0f} s)")
    return lines


def _check_commands(plan: Plan, check: StpCheck) -> list[str]:
    disabled = f", {check.disabled} disabled" if check.disabled else ""
    return [f"bridge -n {plan.namespace} link show    # exactly {check.blocking} port(s) in state blocking{disabled}, every other forwarding"]


def inspect_rows(plan: Plan) -> list[InspectRow]:
    part = _part(plan)
    if not part or not part.bridges:
        return []
    live = port_states(plan.namespace) if namespace_exists(plan.namespace) else []
    owners = port_owners(plan)
    rows = []
    for bridge in part.bridges:
        ports = [(p, s) for b, p, s in live if b == bridge]
        for port, state in ports:
            problems = [] if state in (FORWARDING, BLOCKING) else [f"{bridge} port {port} is {_state(state)}"]
            rows.append(InspectRow(f"STP port {port} of {bridge}", owners.get(port, "port"), _state(state), problems))
        present = {p for p, _ in ports}
        for link in part.links:
            for end, on in zip(link.veths, link.bridges):
                if on == bridge and end not in present:
                    rows.append(InspectRow(f"STP port {end} of {bridge}", owners[end], "missing", [f"{end} is not a port of {bridge}"]))
    return rows


# -- the feature ---------------------------------------------------------------------------------


class Stp(Feature):
    name = "stp"
    model = MODEL
    check_kinds = {"stp": STP}
    check_commands = {"stp": _check_commands}
    judges = {"bounded-broadcast": judge_bounded_broadcast}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_stp(ctx)
        if part is None:
            return None
        return PlanPart(data=part, resources=tuple(Resource("veth", link.veths[0]) for link in part.links))

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        out: dict[str, Any] = {}
        if part.bridges:
            out["stp"] = {"bridges": list(part.bridges), "forward_delay_cs": FORWARD_DELAY_CS, "hello_time_cs": HELLO_TIME_CS}
            if any(p != DEFAULT_PRIORITY for p in part.priorities):
                out["stp"]["priorities"] = dict(zip(part.bridges, part.priorities))
        if part.links:
            out["bridge-links"] = [
                {"between": list(link.bridges), "veths": [{"name": v, "mac": m, "bridge": b} for v, m, b in zip(link.veths, link.macs, link.bridges)]}
                for link in part.links
            ]
        return out

    def apply(self, plan: Plan, ctx: Any) -> None:
        part = _part(plan)
        if not part:
            return
        enable_stp(plan.namespace, part.bridges, part.priorities)  # first: the links below may close a loop
        create_links(plan, ctx, part)

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        if not part or not part.bridges:
            return None
        return f"STP: waiting until no port of {', '.join(part.bridges)} is listening or learning (up to {CONVERGE_TIMEOUT:.0f} s)"

    def configure(self, plan: Plan, sessions: dict[str, Any], run_dir: Path) -> None:
        part = _part(plan)
        if part and part.bridges:
            wait_converged(plan.namespace, part.bridges)

    def explain(self, plan: Plan) -> list[Section]:
        lines = explain_lines(plan)
        return [Section("Spanning tree and links between bridges", tuple(lines), stage="network")] if lines else []

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each link between two bridges, named by its veth ends (the loop STP breaks is visible)."""
        part = plan.part("stp", None)
        for link in part.links if part else ():
            a, b = link.bridges
            if a in drawing.bridge_ids and b in drawing.bridge_ids:
                drawing.edge(drawing.bridge_ids[a], drawing.bridge_ids[b], [f"bridge link {link.veths[0]} ↔ {link.veths[1]}"])
