"""Run a scenario's checks on a live lab and judge them.

Captures run for the whole check phase, so a capture check judges the traffic
that the ping checks really produced; each result says what was expected and
what was seen.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vnetlab.capture import Capture, TrafficCounts, count_arp_icmp
from vnetlab.model import CaptureCheck, PingCheck, shared_segment
from vnetlab.plan import Plan
from vnetlab.ssh import GuestSSH

PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
CAPTURE_SETTLE = 0.2  # seconds for the last frames to reach the sniffer before it stops


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


def ping_target(plan: Plan, ping: PingCheck) -> str:
    """A VM target means its address on the segment it shares with the source."""
    names = {v.name for v in plan.vms}
    if ping.to not in names:
        return ping.to
    _, j = shared_segment(plan.scenario, ping.source, ping.to) or (0, 0)
    ip = plan.vm(ping.to).nics[j].ip
    assert ip is not None  # guaranteed by model validation
    return ip


def run_ping(plan: Plan, sessions: dict[str, GuestSSH], ping: PingCheck) -> CheckResult:
    target = ping_target(plan, ping)
    name = f"ping {ping.source} → {ping.to}" + (" (must fail)" if ping.expect == "failure" else "")
    command = f"ping -c {ping.count} -i 0.2 -W 2 {shlex.quote(target)}"
    result = sessions[ping.source].run(command, timeout=10.0 + 2.5 * ping.count, check=False)
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


def expected_echo_pairs(plan: Plan, a: str, b: str) -> int:
    """Echo exchanges the ping checks between a and b should have put on the wire."""
    return sum(
        c.ping.count
        for c in plan.scenario.checks
        if c.ping is not None and c.ping.expect == "success" and {c.ping.source, c.ping.to} == {a, b}
    )


def judge_capture(plan: Plan, check: CaptureCheck, packets: list, pcap: Path) -> CheckResult:
    a, b = (plan.vm(n) for n in check.between)
    nic_a, nic_b = a.nic_on(check.bridge), b.nic_on(check.bridge)
    assert nic_a is not None and nic_b is not None and nic_a.ip and nic_b.ip  # guaranteed by model validation
    counts: TrafficCounts = count_arp_icmp(packets, nic_a.mac, nic_a.ip, nic_b.mac, nic_b.ip)
    expected, seen, ok = [], [], True
    if "arp" in check.expect:
        arp_ok = counts.arp_request >= 1 and counts.arp_reply >= 1
        ok &= arp_ok
        expected.append(f"≥1 ARP request and ≥1 reply between {nic_a.mac} ({a.name}) and {nic_b.mac} ({b.name})")
        seen.append(f"{counts.arp_request} ARP request(s), {counts.arp_reply} reply(ies)")
    if "icmp-echo" in check.expect:
        want = max(1, expected_echo_pairs(plan, a.name, b.name))
        icmp_ok = counts.icmp_echo_pairs >= want
        ok &= icmp_ok
        expected.append(f"≥{want} ICMP echo request/reply pairs between {nic_a.ip} and {nic_b.ip}")
        seen.append(f"{counts.icmp_echo_request} request(s), {counts.icmp_echo_reply} reply(ies), {counts.icmp_echo_pairs} pair(s)")
    detail = f"expected {'; '.join(expected)}; saw {'; '.join(seen)} in {len(packets)} frames"
    return CheckResult(
        f"capture on {check.bridge}: {', '.join(check.expect)} between {a.name} and {b.name}",
        "capture",
        ok,
        detail,
        counts={k: v for k, v in asdict(counts).items()},
        data={"pcap": str(pcap)},
    )


def run_checks(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> tuple[list[CheckResult], dict[str, Path]]:
    """Returns the results in scenario order and the pcap of each captured bridge."""
    bridges = sorted({c.capture.bridge for c in plan.scenario.checks if c.capture is not None})
    captures = {br: Capture(plan.namespace, br, run_dir / f"{br}.pcap") for br in bridges}
    started: list[Capture] = []
    packets: dict[str, list] = {}
    results: dict[int, CheckResult] = {}
    try:
        for capture in captures.values():
            capture.start()
            started.append(capture)
        for i, check in enumerate(plan.scenario.checks):
            if check.ping is not None:
                results[i] = run_ping(plan, sessions, check.ping)
        time.sleep(CAPTURE_SETTLE if captures else 0)
    finally:
        for br, capture in captures.items():
            if capture in started:
                packets[br] = capture.stop()
    for i, check in enumerate(plan.scenario.checks):
        if check.capture is not None:
            results[i] = judge_capture(plan, check.capture, packets[check.capture.bridge], captures[check.capture.bridge].pcap_path)
    return [results[i] for i in sorted(results)], {br: c.pcap_path for br, c in captures.items()}
