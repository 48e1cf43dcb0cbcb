"""Run a scenario's checks on a live lab and judge them.

Checks run in scenario order. Captures run for the whole check phase, so a
capture check judges the traffic the other checks really produced; each result
says what was expected and what was seen. The core knows ping and the ARP/ICMP
judges; every other kind of check and capture expectation comes from the plan's
features (their `check_runners` and `judges`), so this module names none of them.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckResult, Judge, Judgement, Runner, capture_iface, endpoint, expected_echo_pairs
from vnetlab.checks.capture import Capture, TrafficCounts, count_arp_icmp
from vnetlab.checks.ping import run_ping
from vnetlab.plan.planner import Plan


def _arp_icmp(s: CaptureSubject) -> TrafficCounts:
    assert s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    return count_arp_icmp(s.packets, s.nic_a.mac, s.nic_a.ip, s.nic_b.mac, s.nic_b.ip)


def judge_arp(plan: Plan, check: object, s: CaptureSubject) -> Judgement:
    c = _arp_icmp(s)
    return Judgement(
        c.arp_request >= 1 and c.arp_reply >= 1,
        f"≥1 ARP request and ≥1 reply between {s.nic_a.mac} ({s.name_a}) and {s.nic_b.mac} ({s.name_b})",
        f"{c.arp_request} ARP request(s), {c.arp_reply} reply(ies)",
        {"arp_request": c.arp_request, "arp_reply": c.arp_reply},
    )


def judge_icmp_echo(plan: Plan, check: object, s: CaptureSubject) -> Judgement:
    c = _arp_icmp(s)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    return Judgement(
        c.icmp_echo_pairs >= want,
        f"≥{want} ICMP echo request/reply pairs between {s.nic_a.ip} and {s.nic_b.ip}",
        f"{c.icmp_echo_request} request(s), {c.icmp_echo_reply} reply(ies), {c.icmp_echo_pairs} pair(s)",
        {"icmp_echo_request": c.icmp_echo_request, "icmp_echo_reply": c.icmp_echo_reply, "icmp_echo_pairs": c.icmp_echo_pairs},
    )


CORE_RUNNERS: dict[str, Runner] = {"ping": run_ping}
CORE_JUDGES: dict[str, Judge] = {"arp": judge_arp, "icmp-echo": judge_icmp_echo}


def runners(plan: Plan) -> dict[str, Runner]:
    out = dict(CORE_RUNNERS)
    for feature in plan.features:
        out.update(feature.check_runners)
    return out


def judges(plan: Plan) -> dict[str, Judge]:
    out = dict(CORE_JUDGES)
    for feature in plan.features:
        out.update(feature.judges)
    return out


def judge_capture(plan: Plan, check: object, packets, pcap: Path) -> CheckResult:
    a, b = check.between  # type: ignore[attr-defined]
    on = check.on  # type: ignore[attr-defined]
    name = getattr(check, "name", None) or f"capture on {on}: {', '.join(check.expect)} between {a} and {b}"  # type: ignore[attr-defined]
    subject = CaptureSubject(a, endpoint(plan, a, on), b, endpoint(plan, b, on), packets)
    table = judges(plan)
    try:
        judgements = [table[e](plan, check, subject) for e in check.expect]  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 — a judge that cannot read the frames fails its check, not the run
        return CheckResult(name, "capture", False, f"the capture could not be judged: {type(exc).__name__}: {exc}", data={"pcap": str(pcap)})
    counts: dict[str, int] = {}
    for j in judgements:
        counts.update(j.counts)
    detail = f"expected {'; '.join(j.expected for j in judgements)}; saw {'; '.join(j.seen for j in judgements)} in {len(packets)} frames"
    data: dict[str, object] = {"pcap": str(pcap)}
    if getattr(packets, "truncated", False):  # the capture's memory bound was hit: judged on the first frames only
        detail += f" (of {packets.seen} seen: the capture keeps at most its bound in memory; the pcap has {packets.written})"
        data.update(frames_seen=packets.seen, frames_kept=len(packets), frames_in_pcap=packets.written)
    return CheckResult(name, "capture", all(j.ok for j in judgements), detail, counts=counts, data=data)


def run_one(table: dict[str, Runner], ctx: CheckContext, check: object) -> CheckResult:
    """A runner that crashes on what a guest printed fails its own check with a readable detail; the others still run."""
    kind, spec = check.kind, check.spec  # type: ignore[attr-defined]
    try:
        result = table[kind](ctx, spec)
    except Exception as exc:  # noqa: BLE001 — isolating one check's failure is the point
        result = CheckResult(f"{kind} check", kind, False, f"the check could not be completed: {type(exc).__name__}: {exc}")
    if getattr(spec, "name", None):  # the scenario's name for it wins (summary, report, JUnit)
        result.name = spec.name
    return result


def forget_neighbours(ctx: CheckContext) -> None:
    """ARP is judged on what the check phase itself puts on the wire: a neighbour cache still warm
    from an earlier run (`vnetlab check` soon after `run --keep`) would answer without asking."""
    names = sorted({n for c in ctx.plan.scenario.checks if c.capture is not None and "arp" in c.capture.expect for n in c.capture.between})
    if not names:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:  # one SSH round trip each, at once
        for future in [pool.submit(ctx.node(name).run, ["ip", "neigh", "flush", "all"], 10.0) for name in names]:
            future.result()  # best effort in the guest: a failed flush shows in the ARP verdict


def run_checks(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> tuple[list[CheckResult], dict[str, Path]]:
    """Returns the results in scenario order and the pcap of each captured bridge."""
    ctx = CheckContext(plan, sessions, run_dir)
    forget_neighbours(ctx)
    table = runners(plan)
    bridges = sorted({c.capture.on for c in plan.scenario.checks if c.capture is not None})  # bridges and uplinks
    captures = {br: Capture(plan.namespace, capture_iface(plan, br), run_dir / f"{br}.pcap") for br in bridges}
    started: list[Capture] = []
    packets: dict[str, object] = {}
    results: dict[int, CheckResult] = {}
    try:
        for capture in captures.values():
            capture.start()
            started.append(capture)
        # One after another, in scenario order: two pings at once through a WireGuard tunnel make both
        # peers start a handshake at the same moment, and neither completes within the pings' wait.
        for i, check in enumerate(plan.scenario.checks):
            if check.kind != "capture":
                results[i] = run_one(table, ctx, check)
    finally:
        for br, capture in captures.items():
            if capture in started:
                packets[br] = capture.stop()
    for i, check in enumerate(plan.scenario.checks):
        if check.capture is not None:
            results[i] = judge_capture(plan, check.capture, packets[check.capture.on], captures[check.capture.on].pcap_path)
    return [results[i] for i in sorted(results)], {br: c.pcap_path for br, c in captures.items()}
