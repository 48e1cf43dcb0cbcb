"""Masquerade a bridge's subnet out of a routed uplink, inside the lab namespace (the "host").

This is the container picture of the tutorial: the bridge carries the gateway,
net.ipv4.ip_forward=1 lets the lab namespace route, and a masquerade rule
rewrites the containers' private source to the uplink's address. The rules are
loaded with `nft -f -` run inside the lab namespace: pyroute2's nftables
support is too partial to build a nat chain with a masquerade statement, and
nft is the reference tool (no Python binding is installed here).

The `masqueraded` expectation judges that picture on the uplink, and also a NAT a
router VM does (its own commands, or a student's in an exercise): captured on the
router's outside bridge between the router and the node it reaches, only the
router's address may carry the traffic of the subnets behind it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from typing import Any

from vnetlab.backends import netns
from vnetlab.checks.base import CaptureSubject, Judgement, capture_segment, expected_echo_pairs
from vnetlab.checks.capture import count_ipv4
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.addressing import bridge_subnets, nic_addresses
from vnetlab.model.validate import Rules, interface, node_interfaces
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.run.apply import ApplyContext
from vnetlab.tools.explain import Section, sh

TABLE = "vnetlab_nat"
NFT_ARGV = ["nft", "-f", "-"]
FORWARD_SYSCTL = ("net.ipv4.ip_forward", "1")


class NatError(VnetlabError):
    pass


@dataclass(frozen=True)
class PlannedNat:
    bridge: str
    subnet: str  # the private side
    gateway: str  # the bridge's address
    uplink: str  # masquerade out of this interface
    outside: str  # the uplink's address: the translated source


def plan_nat(scenario: Any) -> tuple[PlannedNat, ...]:
    uplinks = {h.uplink.name: h.uplink for h in scenario.hosts}
    return tuple(
        PlannedNat(b.name, str(bridge_subnets(b).ipv4 or ""), b.gateway or "", b.nat, str(interface(uplinks[b.nat].address or "").ip))  # type: ignore[union-attr]  # model validation: a routed uplink
        for b in scenario.bridges
        if b.nat is not None
    )


def behind(scenario: Any, bridge: str) -> list[str]:
    """The nodes a masquerading bridge takes out: its containers (their default route is its
    gateway), and the VMs that lease their address on it with the gateway as their router (the
    bridge's `dhcp:`, as on libvirt's default network); a VM with a static address has no route there."""
    br = next(b for b in scenario.bridges if b.name == bridge)
    dhcp = getattr(br, "dhcp", None)
    routed = dhcp is not None and br.gateway is not None and (dhcp.router or br.gateway) == br.gateway
    containers = [c.name for c in scenario.containers if c.nic.bridge == bridge]
    return containers + [vm.name for vm in scenario.vms if routed and any(n.bridge == bridge and nic_addresses(n).dhcp for n in vm.nics)]


def ruleset(nats: tuple[PlannedNat, ...]) -> str:
    """The nft script loaded into the lab namespace (also shown by `vnetlab plan`)."""
    rules = "".join(f'        ip saddr {n.subnet} oifname "{n.uplink}" masquerade\n' for n in nats)
    return (
        f"table ip {TABLE} {{\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f"{rules}"
        "    }\n"
        "}\n"
    )


def equivalent_commands(namespace: str, nats: tuple[PlannedNat, ...]) -> list[str]:
    """What apply_nat does, as shell lines (for `--explain`, never executed)."""
    if not nats:
        return []
    return [
        sh("ip", "netns", "exec", namespace, "sysctl", "-w", "=".join(FORWARD_SYSCTL)),
        f"{sh('ip', 'netns', 'exec', namespace, *NFT_ARGV)} <<'EOF'",
        *ruleset(nats).splitlines(),
        "EOF",
    ]


def apply_nat(namespace: str, nats: tuple[PlannedNat, ...]) -> None:
    """ip_forward and the masquerade table, both only inside the lab namespace (they go with it)."""
    if not nats:
        return
    netns.set_sysctl(namespace, *FORWARD_SYSCTL)
    try:
        done = netns.run_in_namespace(namespace, subprocess.run, NFT_ARGV, input=ruleset(nats), capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatError(f"cannot run {' '.join(NFT_ARGV)} in namespace {namespace!r}: {exc}") from exc
    if done.returncode != 0:
        raise NatError(f"nft refused the NAT rules in namespace {namespace!r}: {done.stderr.strip()}")


# -- capture judge: masqueraded (the uplink's address, never a private one) --


def judge_masqueraded(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """On the NAT uplink, the containers' traffic to b leaves with the uplink's address, never a private one."""
    if check.interface is None:  # on a router VM's outside bridge
        return judge_router_masqueraded(plan, check, s)
    nat = next(n for n in plan.part("nat") if n.uplink == check.on)
    want = max(1, sum(expected_echo_pairs(plan, c, s.name_b) for c in behind(plan.scenario, nat.bridge)))
    translated = count_ipv4(s.packets, src=nat.outside, dst=s.nic_b.ip)
    private = count_ipv4(s.packets, within=nat.subnet)
    return Judgement(
        translated >= want and private == 0,
        f"≥{want} packets {nat.outside} (translated) → {s.nic_b.ip} on {check.on} and none with an address of {nat.subnet} (e.g. {s.name_a}'s {s.nic_a.ip})",
        f"{translated} translated, {private} with a private address",
        {"translated": translated, "private": private},
    )


def behind_router(plan: Plan, router: str, outside: str) -> tuple[list[str], list[str]]:
    """(the subnets of the router VM's NICs on other bridges than `outside`, the nodes addressed in them)."""
    inside = [ipaddress.IPv4Interface(n.cidr).network for n in plan.vm(router).nics if n.cidr and n.bridge != outside]
    addressed = [(vm.name, n.cidr) for vm in plan.vms if vm.name != router for n in vm.nics if n.cidr] + [(n.name, n.cidr) for n in plan.nodes]
    nodes = sorted({name for name, cidr in addressed if any(ipaddress.IPv4Interface(cidr).ip in net for net in inside)})
    return [str(net) for net in inside], nodes


def judge_router_masqueraded(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """On the router's outside bridge, what the nodes behind it sent to b leaves with the router's own
    address, never one of the subnets behind it (the router masquerades them)."""
    assert s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    subnets, behind = behind_router(plan, s.name_a, capture_segment(plan, check.on))
    want = max(1, sum(expected_echo_pairs(plan, name, s.name_b) for name in behind))
    translated = count_ipv4(s.packets, src=s.nic_a.ip, dst=s.nic_b.ip)
    private = sum(count_ipv4(s.packets, within=subnet) for subnet in subnets)
    return Judgement(
        translated >= want and private == 0,
        f"≥{want} packets {s.nic_a.ip} ({s.name_a}, translated) → {s.nic_b.ip} on {check.on} and none with an address of {', '.join(subnets)} (behind {s.name_a})",
        f"{translated} translated, {private} with a private address",
        {"translated": translated, "private": private},
    )


# -- the scenario keys: a bridge's `nat:`, the `masqueraded` expectation ----------------


def _validate(r: Rules) -> None:
    routed = {h.uplink.name for h in r.scenario.hosts if h.uplink.address is not None}
    for i, br in enumerate(r.scenario.bridges):
        if br.nat is None:
            continue
        if br.gateway is None:
            r.add(f"bridges[{i}].nat", "NAT needs a gateway on the bridge (the containers' next hop)")
        if br.nat not in routed:
            r.add(f"bridges[{i}].nat", f"no routed uplink named {br.nat!r} (routed uplinks: {', '.join(sorted(routed)) or 'none'})")


def _route(scenario: Any, source: str, target: str) -> ipaddress.IPv4Interface | None:
    """A container (or a VM) behind a masquerading bridge reaches a host on that bridge's NAT uplink."""
    host = next((h for h in scenario.hosts if h.name == target), None)
    theirs = node_interfaces(scenario, target)
    if host is None or not theirs:
        return None
    if any(b.nat == host.uplink.name and source in behind(scenario, b.name) for b in scenario.bridges):
        return theirs[0][1]
    return None


def _validate_masqueraded(r: Rules, cap: Any, path: str) -> None:
    scenario = r.scenario
    if cap.interface is None:
        _validate_router_masqueraded(r, cap, path)
        return
    host = next((h for h in scenario.hosts if h.uplink.name == cap.interface), None)
    a, b = cap.between
    if host is None or host.uplink.bridge is not None or host.name != b:
        r.add(f"{path}.expect", "masqueraded is judged on a routed uplink (interface:) leading to between[1]")
    elif not any(br.nat == cap.interface and a in behind(scenario, br.name) for br in scenario.bridges):
        r.add(f"{path}.between[0]", f"masqueraded needs a container (or a VM leasing its address there) whose bridge masquerades out of {cap.interface!r}")


def _validate_router_masqueraded(r: Rules, cap: Any, path: str) -> None:
    """On a bridge: between[0] is the VM that masquerades (addressed there and on another bridge), between[1] is out there."""
    a, b = cap.between
    vm = next((v for v in r.scenario.vms if v.name == a), None)
    mine = {n.bridge for n in vm.nics if n.address} if vm is not None else set()
    if cap.bridge not in mine or not mine - {cap.bridge}:
        r.add(f"{path}.between[0]", f"masqueraded on bridge {cap.bridge!r} is judged from the VM that masquerades: a VM addressed on {cap.bridge!r} and on another bridge, got {a!r}")
    elif not any(seg == cap.bridge for seg, _ in node_interfaces(r.scenario, b)):
        r.add(f"{path}.between[1]", f"masqueraded on bridge {cap.bridge!r} needs between[1] addressed on it, where the translated packets go; {b!r} is not")


class Nat(Feature):
    name = "nat"
    requires = ("containers", "dhcp")  # the gateway and the routed uplinks of outside hosts; a VM's lease with the gateway as its router
    model = ModelExtension(
        bridge_fields=(decl("nat", str | None, spec("name of a routed uplink to masquerade this bridge's subnet out of (enables ip_forward)", default=None, pattern=NAME, max_length=IFACE_MAX)),),
        expectations=(Expectation("masqueraded", _validate_masqueraded, node_scoped=True),),
        validate=_validate,
        route=_route,
    )
    judges = {"masqueraded": judge_masqueraded}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        nats = plan_nat(ctx.scenario)
        return PlanPart(data=nats) if nats else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        nats = plan.part("nat")
        return {"nat": {"sysctl": "=".join(FORWARD_SYSCTL), "nft": ruleset(nats).splitlines()}} if nats else {}

    def apply(self, plan: Plan, ctx: ApplyContext) -> None:
        apply_nat(plan.namespace, plan.part("nat"))

    def explain(self, plan: Plan) -> list[Section]:
        nats = plan.part("nat")
        if not nats:
            return []
        return [Section("Forwarding and masquerade in the lab namespace (it plays the host)", tuple(equivalent_commands(plan.namespace, nats)), stage="network")]

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each masquerading bridge → the lab namespace that routes it out of its uplink."""
        for n in plan.part("nat"):
            if n.bridge in drawing.bridge_ids:
                drawing.edge(drawing.bridge_ids[n.bridge], drawing.router(), [f"nat: masquerade {n.subnet}", f"out of {n.uplink} as {n.outside}"], overlay=True)
