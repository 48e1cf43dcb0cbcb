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
from typing import TYPE_CHECKING

from vnetlab.errors import VnetlabError
from vnetlab.backends import netns
from vnetlab.checks.capture import count_ipv4
from vnetlab.model.scenario import CaptureCheck, Scenario

if TYPE_CHECKING:
    from vnetlab.checks.runner import CaptureSubject, Judgement
    from vnetlab.plan.planner import Plan

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


def plan_nat(scenario: Scenario) -> tuple[PlannedNat, ...]:
    uplinks = {h.uplink.name: h.uplink for h in scenario.hosts}
    return tuple(
        PlannedNat(b.name, b.subnet or "", b.gateway or "", b.nat, str(ipaddress.IPv4Interface(uplinks[b.nat].address or "").ip))
        for b in scenario.bridges
        if b.nat is not None
    )


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
        f"ip netns exec {namespace} sysctl -w {'='.join(FORWARD_SYSCTL)}",
        f"ip netns exec {namespace} {' '.join(NFT_ARGV)} <<'EOF'",
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


# -- capture judges: bridged (own MAC and address) vs masqueraded (the uplink's address) --


def judge_bridged(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    """On a bridged uplink, a's frames to b carry a's own MAC and IP: no router, no NAT in between."""
    from vnetlab.checks.runner import Judgement, expected_echo_pairs

    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    own = count_ipv4(s.packets, src=s.nic_a.ip, dst=s.nic_b.ip, ether_src=s.nic_a.mac)
    from_a = count_ipv4(s.packets, src=s.nic_a.ip, dst=s.nic_b.ip)
    return Judgement(
        own >= want and own == from_a,
        f"≥{want} frames {s.nic_a.ip} → {s.nic_b.ip} on {check.on}, all from {s.name_a}'s own MAC {s.nic_a.mac}",
        f"{from_a} frame(s) {s.nic_a.ip} → {s.nic_b.ip}, {own} from {s.nic_a.mac}",
        {"bridged_own_mac": own, "bridged_from_a": from_a},
    )


def judge_masqueraded(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    """On the NAT uplink, the containers' traffic to b leaves with the uplink's address, never a private one."""
    from vnetlab.checks.runner import Judgement, expected_echo_pairs

    nat = next(n for n in plan.nat if n.uplink == check.on)
    behind = [c.name for c in plan.scenario.containers if c.nic.bridge == nat.bridge]
    want = max(1, sum(expected_echo_pairs(plan, c, s.name_b) for c in behind))
    translated = count_ipv4(s.packets, src=nat.outside, dst=s.nic_b.ip)
    private = count_ipv4(s.packets, within=nat.subnet)
    return Judgement(
        translated >= want and private == 0,
        f"≥{want} packets {nat.outside} (translated) → {s.nic_b.ip} on {check.on} and none with an address of {nat.subnet} (e.g. {s.name_a}'s {s.nic_a.ip})",
        f"{translated} translated, {private} with a private address",
        {"translated": translated, "private": private},
    )
