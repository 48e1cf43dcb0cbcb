"""The ping check: echo requests from one node to another (or to an address), counted from ping's
summary; in an exercise, also on the wire (the echo pairs vnetlab's own capture saw)."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence, Judgement, Wire, nic_cidrs, node_ips, target_of
from vnetlab.checks.capture import count_echo, count_udp_from
from vnetlab.checks.parse import MAX_TEXT, excerpt, ping_replies, ping_rtt, ping_summary
from vnetlab.checks.recovery import describe as describe_outage, first_sequence, longest_outage
from vnetlab.model.addressing import parse_address
from vnetlab.model.validate import interface, node_interfaces, overlay_named, rendered, shown_target
from vnetlab.plan.planner import Plan

if TYPE_CHECKING:
    from vnetlab.checks.capture import Frames

PING_INTERVAL = "0.01"  # 100 echo requests a second: a lab wants the verdict, not a paced probe (3 take 20 ms, not 100)
RECOVERY_INTERVAL = "0.05"  # `measure: recovery`: its count is a time window, 20 requests a second (links.RECOVERY_COUNT_MIN)


def ping_target(plan: Plan, ping: Any) -> str:
    """A named target means its address the source reaches, or its address on the overlay `via` names."""
    via = getattr(ping, "via", None)
    if via is not None:
        overlay = overlay_named(plan.scenario, via)
        assert overlay is not None  # guaranteed by model validation
        return str(interface(overlay.members[ping.to]).ip)  # type: ignore[union-attr]
    return target_of(plan, ping.source, rendered(plan.scenario, ping.to), getattr(ping, "family", None))


def ping_argv(count: int, target: str, *, recovery: bool = False) -> list[str]:
    """The command a ping check runs at its source (also shown by `--explain`); measuring a
    `recovery`, iputils' ping stamps each reply (-D) and paces its requests at RECOVERY_INTERVAL."""
    program, interval = (["/usr/bin/ping", "-D"], RECOVERY_INTERVAL) if recovery else (["ping"], PING_INTERVAL)
    return program + ["-c", str(count), "-i", interval, "-W", "2", target]


UNREACHABLE = ("Network is unreachable", "No route to host")  # what sendto()/connect() say when the source's kernel has no route


def must_fail(ping: Any) -> bool:
    return ping.expect in ("failure", "no-reply")


def no_route(result: CommandResult) -> str | None:
    """Which of UNREACHABLE the ping printed: the source refused to send (not a reply missing on the wire)."""
    text = result.stdout[-MAX_TEXT:] + result.stderr[-MAX_TEXT:]
    return next((words for words in UNREACHABLE if words in text), None)


def measures_recovery(ping: Any) -> bool:
    """`measure: recovery`: it runs in the background while the actions after it take a link down."""
    return getattr(ping, "measure", None) == "recovery"


# -- evidence of a program run on a node -----------------------------------------------------------


def kept_output(text: str) -> str:
    """What of a program's output the evidence keeps: the tail the bounded parsers look at (one
    character more when cut, so that a re-judged text is cut the same way, its partial first line dropped)."""
    return text if len(text) <= MAX_TEXT else text[-(MAX_TEXT + 1):]


def output_evidence(result: CommandResult, **more: Any) -> dict[str, Any]:
    killed = {"signal": result.signal} if getattr(result, "signal", None) else {}
    return {"command": getattr(result, "command", ""), "exit": result.exit_code, **killed, "stdout": kept_output(result.stdout), "stderr": kept_output(result.stderr), **more}


def recorded(evidence: Evidence) -> CommandResult:
    """The program run an evidence records, as its collector saw it."""
    d = evidence.data
    killed = d.get("signal")
    return CommandResult(str(d.get("command", "")), int(d.get("exit", -1)), str(d.get("stdout", "")), str(d.get("stderr", "")), signal=str(killed)[:32] if killed else None)


def guest_of(plan: Plan, *names: str) -> tuple[str, ...]:
    """The guests among these nodes (their programs' output is the student's to shape); a namespace node is none."""
    guests = {v.name for v in plan.vms}
    return tuple(n for n in dict.fromkeys(names) if n in guests)


# -- the ping check ----------------------------------------------------------------------------------


def ping_name(ping: Any, plan: Plan | None = None) -> str:
    via = getattr(ping, "via", None)
    family = f" (IPv{ping.family})" if getattr(ping, "family", None) else ""
    to = shown_target(plan.scenario, ping.to) if plan is not None else ping.to
    return f"ping {ping.source} → {to}{family}" + (f" via {via}" if via else "") + {"failure": " (must fail)", "no-reply": " (no reply on the wire)"}.get(ping.expect, "")


def collect_ping(ctx: CheckContext, ping: Any) -> Evidence:
    measuring = measures_recovery(ping)
    argv = ping_argv(ping.count, ping_target(ctx.plan, ping), recovery=measuring)
    started = ctx.elapsed() if measuring else None
    # iputils sends on its schedule whatever comes back, and waits 2 s for the last reply (-W 2)
    result = ctx.node(ping.source).run(argv, timeout=(15.0 + 0.2 * ping.count) if measuring else (10.0 + 2.5 * ping.count))
    more = {"started_s": started, "ended_s": ctx.elapsed()} if measuring else {}  # beside the actions' times
    return Evidence(output_evidence(result, **more), guests=guest_of(ctx.plan, ping.source))


def judge_ping(plan: Plan, ping: Any, evidence: Evidence) -> CheckResult:
    target = ping_target(plan, ping)
    name = ping_name(ping, plan)
    command = shlex.join(ping_argv(ping.count, target, recovery=measures_recovery(ping)))
    result = recorded(evidence)
    summary = ping_summary(result.stdout)  # guest output: bounded parsing, never trusted
    sent, received = summary or (0, 0)
    rtt = ping_rtt(result.stdout)
    data: dict[str, Any] = {"target": target, "sent": sent, "received": received}
    if rtt is not None:
        data.update(rtt_min_ms=rtt[0], rtt_avg_ms=rtt[1], rtt_max_ms=rtt[2])
    refused = no_route(result)
    if must_fail(ping) and (summary is None or received == 0) and refused is not None:
        data["failure"] = "no route"
        said = f"`{command}` said {refused!r} ({result.ended}): {ping.source} has no route to {target}, nothing was sent"
        if ping.expect == "no-reply":
            return CheckResult(name, "ping", False, f"expected the requests to leave {ping.source} and get no reply; but {said}", data=data)
        return CheckResult(name, "ping", True, f"no route from the source: {said}", data=data)
    if summary is None:
        return CheckResult(name, "ping", False, f"`{command}` printed no summary ({result.ended}): {excerpt(result.stdout + result.stderr)}", data=data)
    if must_fail(ping):
        if received == 0:
            data["failure"] = "no reply"
        return CheckResult(name, "ping", received == 0, f"expected no echo reply from {target}, got {received}/{sent}" + (": no reply on the wire (the requests left the source, nothing came back)" if received == 0 else ""), data=data)
    if measures_recovery(ping):
        return judge_recovery(ping, name, target, result.stdout, sent, received, data, evidence)
    loss = 100.0 * (ping.count - received) / ping.count
    data["loss_percent"] = round(loss, 1)
    if ping.loss_max is None:
        ok, detail = received == ping.count, f"expected {ping.count}/{ping.count} echo replies from {target}, got {received}/{sent}"
    else:
        ok = received > 0 and loss <= ping.loss_max
        detail = f"expected at most {ping.loss_max}% of {ping.count} echo requests to {target} lost, lost {loss:g}% ({received}/{sent} replies)"
    bounds = [(ping.rtt_min_ms, "at least"), (ping.rtt_max_ms, "at most")]
    wanted = [f"{word} {limit} ms" for limit, word in bounds if limit is not None]
    if wanted:
        if rtt is None:
            ok, seen = False, "no round-trip times"
        else:
            avg = rtt[1]
            ok = ok and (ping.rtt_min_ms is None or avg >= ping.rtt_min_ms) and (ping.rtt_max_ms is None or avg <= ping.rtt_max_ms)
            seen = f"min/avg/max {rtt[0]:g}/{avg:g}/{rtt[2]:g} ms"
        detail += f"; average round trip {' and '.join(wanted)}: {seen}"
    return CheckResult(name, "ping", ok, detail, data=data)


def judge_recovery(ping: Any, name: str, target: str, stdout: str, sent: int, received: int, data: dict[str, Any], evidence: Evidence) -> CheckResult:
    """`measure: recovery`: the longest run of lost replies must end, within `recovery-max-s` when given."""
    interval = float(RECOVERY_INTERVAL)
    outage = longest_outage(ping_replies(stdout), sent, interval, first_sequence(stdout))
    limit = getattr(ping, "recovery_max_s", None)
    bound = f" (at most {limit:g} s allowed)" if limit is not None else ""
    window = evidence.data.get("started_s"), evidence.data.get("ended_s")
    during = f"; it ran from +{window[0]:g} s to +{window[1]:g} s of the checks" if all(isinstance(t, (int, float)) for t in window) else ""
    if outage is None:
        return CheckResult(name, "ping", False, f"no echo reply from {target} was lost ({received}/{sent}): no outage to measure a recovery from{during}", data=data)
    data.update(recovery_s=outage.seconds, outage_lost=outage.lost, outage_first_seq=outage.first_lost, outage_resumed_seq=outage.resumed)
    ok = outage.seconds is not None and (limit is None or outage.seconds <= limit)
    return CheckResult(name, "ping", ok, f"{describe_outage(outage, sent, interval)}{bound}{during}", data=data)


def run_ping(ctx: CheckContext, ping: Any) -> CheckResult:
    """Collect and judge a ping at once (the pytest plugin's ad hoc ping)."""
    return PING.run(ctx, ping)


# -- on the wire -------------------------------------------------------------------------------------


def path_points(plan: Plan, source: str, target: str) -> list[str]:
    """Where vnetlab's captures see `source`'s traffic to address `target` leave and come back: the
    bridge of its NIC with an address on the target's subnet (its own, or a sub-interface's: a
    trunk's VLANs), else of every NIC with an address (a routed path starts there); that NIC's link
    (VM.NIC) when the bridge runs in a switch guest; a container's or host's bridge, or its uplink."""
    node = next((n for n in plan.nodes if n.name == source), None)
    if node is not None:
        return [node.bridge or node.veth]
    address = parse_address(target)
    family = address.version if address is not None else 4
    of_family = [(n, [c for c in cidrs if ipaddress.ip_interface(c).version == family]) for n, cidrs in nic_cidrs(plan, source)]
    addressed = [(n, cidrs) for n, cidrs in of_family if cidrs]  # a trunk's addresses are its sub-interfaces'
    shared = [n for n, cidrs in addressed if address is not None and any(address in ipaddress.ip_interface(c).network for c in cidrs)]
    on_host = {b.name for b in plan.bridges if b.guest is None}
    return list(dict.fromkeys(n.bridge if n.bridge in on_host else f"{source}.{n.guest_name}" for n in (shared or [n for n, _ in addressed])))


def echo_on_wire(plan: Plan, source: str, target: str, frames: Mapping[str, Frames], points: list[str], *, claimed: int, must_fail: bool, size: int | None = None) -> Judgement:
    """Judge an echo exchange source → target by what crossed the capture points: for a success, at
    least `claimed` (≥ 1) request/reply pairs on one of them; for a failure, no reply on any."""
    sources = node_ips(plan, source)
    what = "echo" + (f" ({size}-byte packets)" if size else "")
    counts = {p: count_echo(frames.get(p, ()), sources, target, size) for p in points}
    where = " or ".join(points) or "no capture point"
    best = max(points, key=lambda p: (counts[p].pairs, counts[p].requests), default=None)
    c = counts[best] if best is not None else None
    figures = {"wire_echo_requests": c.requests if c else 0, "wire_echo_replies": c.replies if c else 0, "wire_echo_pairs": c.pairs if c else 0}
    tally = f"{figures['wire_echo_requests']} {what} request(s) → {target}, {figures['wire_echo_replies']} reply(ies)"
    if must_fail:
        replied = [p for p in points if counts[p].replies]
        seen = f"{counts[replied[0]].replies} {what} reply(ies) from {target} crossed {replied[0]}" if replied else f"no {what} reply crossed {where} ({tally})"
        return Judgement(not replied, f"no {what} reply from {target} on {where}", seen, figures)
    want = max(1, claimed)
    if c is None or c.replies == 0:
        seen = f"no {what} reply crossed {where} ({tally})"
    else:
        seen = f"{c.pairs} {what} request/reply pair(s) {', '.join(sorted(sources))} ↔ {target} on {best} ({tally})"
    return Judgement(c is not None and c.pairs >= want, f"≥{want} {what} request/reply pair(s) with {target} on {where}", seen, figures)


def _overlay_points(plan: Plan, ping: Any) -> list[str]:
    overlay = overlay_named(plan.scenario, ping.via)
    return [overlay.underlay] if overlay is not None and overlay.underlay else []


def _underlay_ip(plan: Plan, node: str, segment: str) -> str | None:
    return next((str(i.ip) for seg, i in node_interfaces(plan.scenario, node) if seg == segment), None)


def ping_points(plan: Plan, ping: Any) -> list[str]:
    if getattr(ping, "via", None) is not None:
        return _overlay_points(plan, ping)
    return path_points(plan, ping.source, ping_target(plan, ping))


def _claimed(plan: Plan, ping: Any, evidence: Evidence) -> int:
    summary = ping_summary(recorded(evidence).stdout)
    return summary[1] if summary else 0


def judge_ping_wire(plan: Plan, ping: Any, evidence: Evidence, frames: Mapping[str, Frames]) -> Judgement:
    """On the wire: the echo pairs between the two addresses; through an overlay (a tunnel), its
    carrier datagrams both ways between the members' underlay addresses."""
    points = ping_points(plan, ping)
    claimed = _claimed(plan, ping, evidence)
    via = getattr(ping, "via", None)
    if via is None:
        return echo_on_wire(plan, ping.source, ping_target(plan, ping), frames, points, claimed=claimed, must_fail=must_fail(ping))
    overlay = overlay_named(plan.scenario, via)
    assert overlay is not None and overlay.underlay and overlay.port  # guaranteed by model validation and the overlay's feature
    a, b = _underlay_ip(plan, ping.source, overlay.underlay), _underlay_ip(plan, ping.to, overlay.underlay)
    packets = frames.get(overlay.underlay, ())
    there = count_udp_from(packets, a, b, overlay.port) if a and b else 0
    back = count_udp_from(packets, b, a, overlay.port) if a and b else 0
    figures = {"wire_carrier_out": there, "wire_carrier_back": back}
    seen = f"{there} datagram(s) {a} → {b} and {back} back on UDP port {overlay.port} ({overlay.kind} {via})"
    if must_fail(ping):
        return Judgement(back == 0, f"no {overlay.kind} datagram from {b} back on {overlay.underlay}", seen + f" on {overlay.underlay}", figures)
    want = max(1, claimed)
    if back == 0:
        seen = f"no reply crossed {overlay.underlay}: " + seen
    return Judgement(there >= want and back >= want, f"≥{want} {overlay.kind} datagram(s) each way between {a} and {b} on {overlay.underlay}", seen, figures)


PING = CheckKind(collect_ping, judge_ping, Wire(ping_points, judge_ping_wire), background=measures_recovery)
