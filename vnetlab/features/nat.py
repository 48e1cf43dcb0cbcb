"""Masquerade a bridge's subnet out of a routed uplink, inside the lab namespace (the "host").

This is the container picture of the tutorial: the bridge carries the gateway,
net.ipv4.ip_forward=1 lets the lab namespace route, and a masquerade rule
rewrites the containers' private source to the uplink's address. The rules are
loaded with `nft -f -` run inside the lab namespace: pyroute2's nftables
support is too partial to build a nat chain with a masquerade statement, and
nft is the reference tool (no Python binding is installed here).
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from typing import Any

from vnetlab.backends import netns
from vnetlab.checks.base import CaptureSubject, Judgement, expected_echo_pairs
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
    host = next((h for h in scenario.hosts if h.uplink.name == cap.interface), None)
    a, b = cap.between
    if host is None or host.uplink.bridge is not None or host.name != b:
        r.add(f"{path}.expect", "masqueraded is judged on a routed uplink (interface:) leading to between[1]")
    elif not any(br.nat == cap.interface and a in behind(scenario, br.name) for br in scenario.bridges):
        r.add(f"{path}.between[0]", f"masqueraded needs a container (or a VM leasing its address there) whose bridge masquerades out of {cap.interface!r}")


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
