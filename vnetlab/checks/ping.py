"""The ping check: echo requests from one node to another (or to an address), counted from ping's summary."""

from __future__ import annotations

import shlex
from typing import Any

from vnetlab.checks.base import CheckContext, CheckResult
from vnetlab.checks.parse import excerpt, ping_rtt, ping_summary
from vnetlab.model.validate import interface, overlay_named, route_to
from vnetlab.plan.planner import Plan

PING_INTERVAL = "0.05"  # 20 echo requests a second: a lab wants the verdict, not a paced probe


def ping_target(plan: Plan, ping: Any) -> str:
    """A named target means its address the source reaches, or its address on the overlay `via` names."""
    via = getattr(ping, "via", None)
    if via is not None:
        overlay = overlay_named(plan.scenario, via)
        assert overlay is not None  # guaranteed by model validation
        return str(interface(overlay.members[ping.to]).ip)  # type: ignore[union-attr]
    iface = route_to(plan.scenario, ping.source, ping.to)  # None for an address literal
    return str(iface.ip) if iface is not None else ping.to


def ping_argv(count: int, target: str) -> list[str]:
    """The command a ping check runs at its source (also shown by `--explain`)."""
    return ["ping", "-c", str(count), "-i", PING_INTERVAL, "-W", "2", target]


def run_ping(ctx: CheckContext, ping: Any) -> CheckResult:
    target = ping_target(ctx.plan, ping)
    via = getattr(ping, "via", None)
    name = f"ping {ping.source} → {ping.to}" + (f" via {via}" if via else "") + (" (must fail)" if ping.expect == "failure" else "")
    argv = ping_argv(ping.count, target)
    command = shlex.join(argv)
    result = ctx.node(ping.source).run(argv, timeout=10.0 + 2.5 * ping.count)
    summary = ping_summary(result.stdout)  # guest output: bounded parsing, never trusted
    sent, received = summary or (0, 0)
    rtt = ping_rtt(result.stdout)
    data: dict[str, Any] = {"target": target, "sent": sent, "received": received}
    if rtt is not None:
        data.update(rtt_min_ms=rtt[0], rtt_avg_ms=rtt[1], rtt_max_ms=rtt[2])
    if summary is None:
        return CheckResult(name, "ping", False, f"`{command}` printed no summary (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}", data=data)
    if ping.expect == "failure":
        return CheckResult(name, "ping", received == 0, f"expected no echo reply from {target}, got {received}/{sent}", data=data)
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
