"""Run a scenario's checks on a live lab and judge them.

Checks run in scenario order. Captures run for the whole check phase, so a
capture check judges the traffic the other checks really produced; each result
says what was expected and what was seen.

Adding a kind of check: a field on `model.Check`, a runner `fn(ctx, spec) -> CheckResult`
registered in RUNNERS. Adding a capture expectation: a judge registered in JUDGES.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from vnetlab.features import nat
from vnetlab.features import containers as nodes
from vnetlab.features import ops
from vnetlab.features import perf
from vnetlab.features import wireguard
from vnetlab.checks.capture import Capture, TrafficCounts, count_arp_icmp
from vnetlab.model.scenario import CaptureCheck, PingCheck, route_to
from vnetlab.plan.planner import Plan, PlannedNic
from vnetlab.backends.ssh import GuestSSH

PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


@dataclass
class CheckResult:
    name: str
    kind: str
    ok: bool
    detail: str
    counts: dict[str, int] | None = None
    data: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        if self.counts is None:
            out.pop("counts")
        if not self.data:
            out.pop("data")
        return out


@dataclass
class CheckContext:
    """What a check runner may use: the plan, SSH sessions to the guests, the run's artifact folder."""

    plan: Plan
    sessions: dict[str, GuestSSH]
    run_dir: Path

    def node(self, name: str) -> nodes.LabNode:
        """Where to run a program as `name`: the guest over SSH, or a container's/host's namespace."""
        return nodes.lab_node(self.plan, self.sessions, name)


# -- ping ---------------------------------------------------------------------


def ping_target(plan: Plan, ping: PingCheck) -> str:
    """A named target means its address the source reaches (or its address in the tunnel `via` names)."""
    if ping.via is not None:
        return wireguard.ping_target(plan.scenario, ping)
    iface = route_to(plan.scenario, ping.source, ping.to)  # None for an address literal
    return str(iface.ip) if iface is not None else ping.to


PING_INTERVAL = "0.05"  # 20 echo requests a second: a lab wants the verdict, not a paced probe


def ping_argv(count: int, target: str) -> list[str]:
    """The command a ping check runs at its source (also shown by `--explain`)."""
    return ["ping", "-c", str(count), "-i", PING_INTERVAL, "-W", "2", target]


def run_ping(ctx: CheckContext, ping: PingCheck) -> CheckResult:
    target = ping_target(ctx.plan, ping)
    name = f"ping {ping.source} → {ping.to}" + (f" via {ping.via}" if ping.via else "") + (" (must fail)" if ping.expect == "failure" else "")
    argv = ping_argv(ping.count, target)
    command = shlex.join(argv)
    result = ctx.node(ping.source).run(argv, timeout=10.0 + 2.5 * ping.count)
    match = PING_SUMMARY.search(result.stdout)
    sent, received = (int(match[1]), int(match[2])) if match else (0, 0)
    data = {"target": target, "sent": sent, "received": received}
    if match is None:
        return CheckResult(name, "ping", False, f"`{command}` printed no summary (exit {result.exit_code}): {(result.stdout + result.stderr).strip()[-300:]}", data=data)
    if ping.expect == "success":
        ok = received == ping.count
        detail = f"expected {ping.count}/{ping.count} echo replies from {target}, got {received}/{sent}"
    else:
        ok = received == 0
        detail = f"expected no echo reply from {target}, got {received}/{sent}"
    return CheckResult(name, "ping", ok, detail, data=data)


# -- capture ------------------------------------------------------------------


@dataclass
class Judgement:
    ok: bool
    expected: str
    seen: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class CaptureSubject:
    """The two nodes a capture check is about, with what the capture sees of each (a guest's NIC on the bridge, a container's or host's eth0)."""

    name_a: str
    nic_a: PlannedNic
    name_b: str
    nic_b: PlannedNic
    packets: list


def expected_echo_pairs(plan: Plan, a: str, b: str, via: str | None = None) -> int:
    """Echo exchanges the ping checks between a and b should have put on the wire (through tunnel `via`, or none)."""
    return sum(
        c.ping.count
        for c in plan.scenario.checks
        if c.ping is not None and c.ping.expect == "success" and c.ping.via == via and {c.ping.source, c.ping.to} == {a, b}
    )


def _arp_icmp(s: CaptureSubject) -> TrafficCounts:
    assert s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    return count_arp_icmp(s.packets, s.nic_a.mac, s.nic_a.ip, s.nic_b.mac, s.nic_b.ip)


def judge_arp(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    c = _arp_icmp(s)
    return Judgement(
        c.arp_request >= 1 and c.arp_reply >= 1,
        f"≥1 ARP request and ≥1 reply between {s.nic_a.mac} ({s.name_a}) and {s.nic_b.mac} ({s.name_b})",
        f"{c.arp_request} ARP request(s), {c.arp_reply} reply(ies)",
        {"arp_request": c.arp_request, "arp_reply": c.arp_reply},
    )


def judge_icmp_echo(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    c = _arp_icmp(s)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    return Judgement(
        c.icmp_echo_pairs >= want,
        f"≥{want} ICMP echo request/reply pairs between {s.nic_a.ip} and {s.nic_b.ip}",
        f"{c.icmp_echo_request} request(s), {c.icmp_echo_reply} reply(ies), {c.icmp_echo_pairs} pair(s)",
        {"icmp_echo_request": c.icmp_echo_request, "icmp_echo_reply": c.icmp_echo_reply, "icmp_echo_pairs": c.icmp_echo_pairs},
    )


JUDGES: dict[str, Callable[[Plan, CaptureCheck, CaptureSubject], Judgement]] = {
    "arp": judge_arp,
    "icmp-echo": judge_icmp_echo,
    "wireguard-udp": wireguard.judge_udp,
    "no-plaintext-tunnel": wireguard.judge_no_plaintext,
    "bridged": nat.judge_bridged,
    "masqueraded": nat.judge_masqueraded,
}


def judge_capture(plan: Plan, check: CaptureCheck, packets: list, pcap: Path) -> CheckResult:
    a, b = check.between
    subject = CaptureSubject(a, nodes.endpoint(plan, a, check.on), b, nodes.endpoint(plan, b, check.on), packets)  # type: ignore[arg-type]
    judgements = [JUDGES[e](plan, check, subject) for e in check.expect]
    counts: dict[str, int] = {}
    for j in judgements:
        counts.update(j.counts)
    detail = f"expected {'; '.join(j.expected for j in judgements)}; saw {'; '.join(j.seen for j in judgements)} in {len(packets)} frames"
    return CheckResult(
        f"capture on {check.on}: {', '.join(check.expect)} between {a} and {b}",
        "capture",
        all(j.ok for j in judgements),
        detail,
        counts=counts,
        data={"pcap": str(pcap)},
    )


# -- the check phase ----------------------------------------------------------

RUNNERS: dict[str, Callable[[CheckContext, object], CheckResult]] = {
    "ping": run_ping,  # type: ignore[dict-item]
    "wireguard": wireguard.run_check,  # type: ignore[dict-item]
    "op": ops.run_op,  # type: ignore[dict-item]
    "unaddressed": nodes.run_unaddressed,  # type: ignore[dict-item]
    "perf": perf.run_check,  # type: ignore[dict-item]
}


def run_checks(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> tuple[list[CheckResult], dict[str, Path]]:
    """Returns the results in scenario order and the pcap of each captured bridge."""
    ctx = CheckContext(plan, sessions, run_dir)
    bridges = sorted({c.capture.on for c in plan.scenario.checks if c.capture is not None})  # bridges and uplinks
    planned = {b.name for b in plan.bridges}
    captures = {br: Capture(plan.namespace, plan.bridge(br).capture_iface if br in planned else br, run_dir / f"{br}.pcap") for br in bridges}
    started: list[Capture] = []
    packets: dict[str, list] = {}
    results: dict[int, CheckResult] = {}
    try:
        for capture in captures.values():
            capture.start()
            started.append(capture)
        for i, check in enumerate(plan.scenario.checks):
            if check.kind != "capture":
                results[i] = RUNNERS[check.kind](ctx, check.spec)
    finally:
        for br, capture in captures.items():
            if capture in started:
                packets[br] = capture.stop()
    for i, check in enumerate(plan.scenario.checks):
        if check.capture is not None:
            results[i] = judge_capture(plan, check.capture, packets[check.capture.on], captures[check.capture.on].pcap_path)
    return [results[i] for i in sorted(results)], {br: c.pcap_path for br, c in captures.items()}
