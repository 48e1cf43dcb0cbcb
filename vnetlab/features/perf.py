"""Throughput (iperf3) and latency (ping) between two lab nodes, for the VM-vs-container lesson.

The server runs on the target node (the guest's own /usr/bin/iperf3, or the
host's iperf3 inside the node's namespace), the client and the pings on the
source. Under TCG a guest's figures measure the emulator, not the network
path: the result says so instead of pretending otherwise.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rich.table import Table

from vnetlab.features.containers import LabNode

if TYPE_CHECKING:
    from vnetlab.checks.runner import CheckContext, CheckResult
    from vnetlab.model.scenario import PerfCheck
    from vnetlab.plan.planner import Plan

IPERF3 = "iperf3"
SERVER_ARGV = [IPERF3, "-s", "-1"]  # one-off: serves one test, then exits
CONNECT_RETRY_FOR = 8.0  # seconds: a guest's iperf3 server takes a moment to listen under TCG
RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)")  # iputils "rtt min/avg/max/mdev = …", busybox "round-trip min/avg/max = …"


@dataclass
class PerfFigures:
    mbit_s: float
    bytes: int
    seconds: float
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    pings_sent: int
    pings_received: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.bytes > 0 and self.pings_received > 0


def client_argv(target: str, seconds: int) -> list[str]:
    """The client command (JSON output, parsed here; also shown by `--explain`)."""
    return [IPERF3, "-c", target, "-t", str(seconds), "-J"]


def _iperf_client(client: LabNode, target: str, seconds: int) -> tuple[dict | None, str]:
    """Run the client until the server listens (or the retry time is up); returns (JSON, last error)."""
    deadline = time.monotonic() + CONNECT_RETRY_FOR
    argv = client_argv(target, seconds)
    while True:
        result = client.run(argv, timeout=seconds + 30.0)
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = None
        error = (data or {}).get("error") or (None if data else f"exit {result.exit_code}: {(result.stdout + result.stderr).strip()[-200:]}")
        if error is None:
            return data, ""
        if "refused" not in str(error) or time.monotonic() > deadline:
            return None, f"`{' '.join(argv)}` on {client.name}: {error}"
        time.sleep(0.3)


def measure(client: LabNode, server: LabNode, target: str, seconds: int, pings: int) -> PerfFigures:
    """iperf3 client → server (one-off server, ended afterwards), then `pings` echo requests for the RTT."""
    from vnetlab.checks.runner import (  # the ping checks' own command and parser
        PING_SUMMARY,
        ping_argv,
    )

    try:
        stop = server.start(SERVER_ARGV)
    except Exception as exc:  # noqa: BLE001 — no server is a failed measurement, not a crashed check phase
        data, error = None, f"cannot start `{' '.join(SERVER_ARGV)}` on {server.name}: {exc}"
    else:
        try:
            data, error = _iperf_client(client, target, seconds)
        finally:
            stop()
    received = (data or {}).get("end", {}).get("sum_received", {})
    ping = client.run(ping_argv(pings, target), timeout=10.0 + 2.5 * pings)
    summary, rtt = PING_SUMMARY.search(ping.stdout), RTT.search(ping.stdout)
    return PerfFigures(
        mbit_s=round(float(received.get("bits_per_second", 0.0)) / 1e6, 1),
        bytes=int(received.get("bytes", 0)),
        seconds=round(float(received.get("seconds", 0.0)), 2),
        rtt_min_ms=float(rtt[1]) if rtt else None,
        rtt_avg_ms=float(rtt[2]) if rtt else None,
        rtt_max_ms=float(rtt[3]) if rtt else None,
        pings_sent=int(summary[1]) if summary else 0,
        pings_received=int(summary[2]) if summary else 0,
        error=error or None,
    )


def run_check(ctx: CheckContext, check: PerfCheck) -> CheckResult:
    """One row of the comparison; fails only when nothing was measured (no bytes, no echo reply)."""
    from vnetlab.checks.runner import CheckResult
    from vnetlab.model.scenario import route_to

    iface = route_to(ctx.plan.scenario, check.source, check.to)
    assert iface is not None  # guaranteed by model validation
    target = str(iface.ip)
    emulated = ctx.plan.domain_type == "qemu" and bool({check.source, check.to} & {v.name for v in ctx.plan.vms})
    f = measure(ctx.node(check.source), ctx.node(check.to), target, check.seconds, check.pings)
    rtt = f"RTT {f.rtt_min_ms}/{f.rtt_avg_ms}/{f.rtt_max_ms} ms min/avg/max" if f.rtt_avg_ms is not None else "no RTT"
    detail = (
        f"expected iperf3 to move data and ≥1 echo reply; got {f.mbit_s} Mbit/s ({f.bytes} bytes in {f.seconds} s), "
        f"{rtt}, {f.pings_received}/{f.pings_sent} replies"
        + (" — a guest under TCG: this figure measures the CPU emulator, not the path" if emulated else "")
        + (f"; {f.error}" if f.error else "")
    )
    kinds = {**{v.name: "VM" for v in ctx.plan.vms}, **{n.name: n.kind for n in ctx.plan.nodes}}
    ends = f"{kinds[check.source]} → {kinds[check.to]}"
    data = {"path": f"{check.source} → {check.to}", "ends": ends, "via": _via(ctx.plan, check), "target": target, "emulated": emulated, **asdict(f)}
    return CheckResult(f"perf {check.source} → {check.to}", "perf", f.ok, detail, data=data)


def _via(plan: Plan, check: PerfCheck) -> str:
    """The way the traffic goes: one bridge (no IP hop), or the host's routing and NAT."""
    from vnetlab.model.scenario import node_interfaces

    shared = sorted({s for s, _ in node_interfaces(plan.scenario, check.source)} & {s for s, _ in node_interfaces(plan.scenario, check.to)})
    if shared:
        return f"bridge {shared[0]}"
    nat = next((n for n in plan.nat if any(c.name == check.source and c.nic.bridge == n.bridge for c in plan.scenario.containers)), None)
    return f"NAT out of {nat.uplink} (ip_forward)" if nat else "routed"


def perf_table(results: list[CheckResult]) -> Table | None:
    """The comparison as one table (the figures are also in each perf check's `data`)."""
    rows = [r for r in results if r.kind == "perf"]
    if not rows:
        return None
    table = Table(title="Throughput and latency (iperf3, ping) — same run", title_justify="left")
    for column in ("path", "ends", "via", "Mbit/s", "RTT avg ms", "note"):
        table.add_column(column, justify="right" if column in ("Mbit/s", "RTT avg ms") else "left")
    for r in rows:
        d = r.data
        note = "TCG guest" if d.get("emulated") else ""
        if not r.ok:
            note = "[red]not measured[/]"
        table.add_row(str(d["path"]), str(d["ends"]), str(d["via"]), f"{d['mbit_s']:.1f}", "-" if d["rtt_avg_ms"] is None else f"{d['rtt_avg_ms']:.3f}", note)
    if any(r.data.get("emulated") for r in rows):
        table.caption = "Under TCG the VM figures are emulation-bound: they measure the CPU emulator, not the network path, and say nothing about bridge vs NAT."
    return table
