"""Routed paths: the `routed` capture expectation — echo requests that crossed a router on the way.

A router decrements the TTL of every packet it forwards. Seen on the bridge of the target, the
pings from a source behind a router arrive with a TTL below the one the source sent (64 on
Linux): that is what proves the path was routed, not bridged.
"""

from __future__ import annotations

from typing import Any

from vnetlab.checks.base import CaptureSubject, Judgement, expected_echo_pairs
from vnetlab.features.base import Feature
from vnetlab.model.scenario import Expectation, ModelExtension
from vnetlab.model.validate import Rules, node_interfaces
from vnetlab.plan.planner import Plan

SOURCE_TTL = 64  # what Linux (and busybox ping) sends


def judge_routed(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """Echo requests a → b on this bridge: at least the pings' count, every one with TTL < 64."""
    from scapy.layers.inet import ICMP, IP  # loaded by the capture that made s.packets

    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b, one_way=True))  # the requests a sent: b's pings to a are the other way
    ttls: list[int] = []
    for packet in s.packets:
        ip = packet.getlayer(IP)
        if ip is not None and ip.src == s.nic_a.ip and ip.dst == s.nic_b.ip and isinstance(ip.payload, ICMP) and ip.payload.type == 8:
            ttls.append(int(ip.ttl))
    routed = [t for t in ttls if t < SOURCE_TTL]
    seen = f"{len(ttls)} echo request(s) {s.nic_a.ip} → {s.nic_b.ip}" + (f", TTL {min(ttls)}–{max(ttls)}" if ttls else "")
    return Judgement(
        len(routed) >= want and len(routed) == len(ttls),
        f"≥{want} echo requests {s.nic_a.ip} → {s.nic_b.ip} on {check.on}, each with TTL < {SOURCE_TTL} (one hop per router)",
        seen,
        {"routed_requests": len(routed), "requests": len(ttls)},
    )


def _validate(rules: Rules, cap: Any, path: str) -> None:
    a, b = cap.between
    if cap.bridge is None:
        rules.add(f"{path}.expect", "routed is judged on a bridge (bridge:)")
        return
    if not any(seg == cap.bridge for seg, _ in node_interfaces(rules.scenario, b)):
        rules.add(f"{path}.between[1]", f"routed needs between[1] ({b!r}) addressed on bridge {cap.bridge!r}, where the routed packets arrive")
    if not node_interfaces(rules.scenario, a):
        rules.add(f"{path}.between[0]", f"{a!r} has no address to send from")


class Routing(Feature):
    name = "routing"
    model = ModelExtension(expectations=(Expectation("routed", _validate, across_segments=True),))
    judges = {"routed": judge_routed}
