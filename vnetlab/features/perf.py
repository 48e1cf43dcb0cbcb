"""Throughput (iperf3) and latency (ping) between two lab nodes, for the VM-vs-container lesson.

The server runs on the target node (the guest's own /usr/bin/iperf3, or the
host's iperf3 inside the node's namespace), the client and the pings on the
source. Under TCG a guest's figures measure the emulator, not the network
path: the result says so instead of pretending otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence, Judgement, LabNode, Wire, node_ips, node_kind
from vnetlab.checks.capture import tcp_bytes
from vnetlab.checks.parse import MAX_JSON, excerpt, iperf_error, iperf_json, iperf_received, ping_rtt, ping_summary
from vnetlab.checks.ping import guest_of, kept_output, output_evidence, path_points, ping_argv, recorded
from vnetlab.features.base import Feature
from vnetlab.model.scenario import NAME, VM_NAME_MAX, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, node_interfaces, node_names, route_to
from vnetlab.plan.planner import Plan


@dataclass(frozen=True)
class PerfCheck:
    source: str = spec("node running the iperf3 client and the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)
    to: str = spec("node running the iperf3 server", pattern=NAME, max_length=VM_NAME_MAX)
    seconds: int = spec("iperf3 test length", default=2, minimum=1, maximum=10)
    pings: int = spec("pings for the latency figure", default=5, minimum=1, maximum=50)
    mbit_max: int | None = spec("fail when the throughput exceeds this many Mbit/s (e.g. a netem rate limit took effect)", key="mbit-max", default=None, minimum=1, maximum=100000)

IPERF3 = "iperf3"
IPERF_PORT = 5201  # iperf3's default: where the client sends its data
SERVER_ARGV = [IPERF3, "-s", "-1"]  # one-off: serves one test, then exits
CONNECT_RETRY_FOR = 8.0  # seconds: a guest's iperf3 server takes a moment to listen under TCG


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


def _client_result(client: str, argv: list[str], result: CommandResult) -> tuple[dict | None, str | None]:
    """(the JSON, None) of an iperf3 client run, or (None, why it measured nothing)."""
    data, why = iperf_json(result.stdout)  # guest output: bounded, never trusted to be an object
    if data is not None and not data:
        data, why = None, "an empty JSON object"
    error = iperf_error(data) if data is not None else f"exit {result.exit_code}: {why}; {excerpt(result.stdout + result.stderr, 200)}"
    return (data, None) if error is None else (None, f"`{' '.join(argv)}` on {client}: {error}")


def _iperf_client(client: LabNode, target: str, seconds: int) -> CommandResult:
    """Run the client until the server listens (or the retry time is up); returns its last run."""
    deadline = time.monotonic() + CONNECT_RETRY_FOR
    argv = client_argv(target, seconds)
    while True:
        result = client.run(argv, timeout=seconds + 30.0)
        _, error = _client_result(client.name, argv, result)
        if error is None or "refused" not in error or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def _iperf_output(result: CommandResult) -> dict[str, Any]:
    """An iperf3 client run as evidence: its JSON whole (up to what the parser reads, and one character more)."""
    return {"command": result.command, "exit": result.exit_code, "stdout": result.stdout[: MAX_JSON + 1], "stderr": kept_output(result.stderr)}


def run_measurement(client: LabNode, server: LabNode, target: str, seconds: int, pings: int) -> dict[str, Any]:
    """iperf3 client → server (one-off server, ended afterwards), then `pings` echo requests for the
    RTT; what the programs printed (the figures are read from it by `figures`)."""
    raw: dict[str, Any] = {"server_error": None, "iperf": None}
    try:
        stop = server.start(SERVER_ARGV)
    except Exception as exc:  # noqa: BLE001 — no server is a failed measurement, not a crashed check phase
        raw["server_error"] = f"cannot start `{' '.join(SERVER_ARGV)}` on {server.name}: {exc}"
    else:
        try:
            raw["iperf"] = _iperf_output(_iperf_client(client, target, seconds))
        finally:
            stop()
    raw["ping"] = output_evidence(client.run(ping_argv(pings, target), timeout=10.0 + 2.5 * pings))
    return raw


def figures(raw: dict[str, Any], client: str, target: str, seconds: int) -> PerfFigures:
    """The throughput and latency a measurement's outputs give."""
    error = raw.get("server_error")
    data = None
    if error is None:
        data, error = _client_result(client, client_argv(target, seconds), recorded(Evidence(raw["iperf"])))
    bits_per_second, nbytes, secs = iperf_received(data or {})
    ping = recorded(Evidence(raw["ping"]))
    summary, rtt = ping_summary(ping.stdout), ping_rtt(ping.stdout)
    return PerfFigures(
        mbit_s=round(bits_per_second / 1e6, 1),
        bytes=nbytes,
        seconds=round(secs, 2),
        rtt_min_ms=rtt[0] if rtt else None,
        rtt_avg_ms=rtt[1] if rtt else None,
        rtt_max_ms=rtt[2] if rtt else None,
        pings_sent=summary[0] if summary else 0,
        pings_received=summary[1] if summary else 0,
        error=error or None,
    )


def measure(client: LabNode, server: LabNode, target: str, seconds: int, pings: int) -> PerfFigures:
    return figures(run_measurement(client, server, target, seconds, pings), client.name, target, seconds)


def _target(plan: Plan, check: PerfCheck) -> str:
    iface = route_to(plan.scenario, check.source, check.to)
    assert iface is not None  # guaranteed by model validation
    return str(iface.ip)


def collect_perf(ctx: CheckContext, check: PerfCheck) -> Evidence:
    raw = run_measurement(ctx.node(check.source), ctx.node(check.to), _target(ctx.plan, check), check.seconds, check.pings)
    return Evidence(raw, guests=guest_of(ctx.plan, check.source, check.to))


def judge_perf(plan: Plan, check: PerfCheck, evidence: Evidence) -> CheckResult:
    """One row of the comparison; fails only when nothing was measured (no bytes, no echo reply)."""
    target = _target(plan, check)
    emulated = plan.domain_type == "qemu" and bool({check.source, check.to} & {v.name for v in plan.vms})
    f = figures(evidence.data, check.source, target, check.seconds)
    rtt = f"RTT {f.rtt_min_ms}/{f.rtt_avg_ms}/{f.rtt_max_ms} ms min/avg/max" if f.rtt_avg_ms is not None else "no RTT"
    detail = (
        f"expected iperf3 to move data and ≥1 echo reply; got {f.mbit_s} Mbit/s ({f.bytes} bytes in {f.seconds} s), "
        f"{rtt}, {f.pings_received}/{f.pings_sent} replies"
        + (" — a guest under TCG: this figure measures the CPU emulator, not the path" if emulated else "")
        + (f"; {f.error}" if f.error else "")
    )
    ok = f.ok
    if check.mbit_max is not None:
        ok = ok and f.mbit_s <= check.mbit_max
        detail += f"; at most {check.mbit_max} Mbit/s expected: {'within' if f.mbit_s <= check.mbit_max else 'above'} it"
    ends = f"{node_kind(plan, check.source)} → {node_kind(plan, check.to)}"
    data = {"path": f"{check.source} → {check.to}", "ends": ends, "via": _via(plan, check), "target": target, "emulated": emulated, **asdict(f)}
    return CheckResult(f"perf {check.source} → {check.to}", "perf", ok, detail, data=data)


WIRE_SHARE = 0.5  # of the bytes iperf3 reports received, what the capture must have seen cross
WIRE_BYTES_MAX = 16 << 20  # … capped: the capture keeps its first 32 MiB of frames, of every flow


def _wire_points(plan: Plan, check: PerfCheck) -> list[str]:
    return path_points(plan, check.source, _target(plan, check))


def judge_perf_wire(plan: Plan, check: PerfCheck, evidence: Evidence, frames: Mapping[str, Any]) -> Judgement:
    """On the wire: TCP payload to the iperf3 server's port, at least half of what iperf3 says it
    received (at most 16 MiB: the capture keeps only its first frames)."""
    target = _target(plan, check)
    claimed = figures(evidence.data, check.source, target, check.seconds).bytes
    want = max(1, min(int(claimed * WIRE_SHARE), WIRE_BYTES_MAX))
    points = _wire_points(plan, check)
    seen = {p: tcp_bytes(frames.get(p, ()), node_ips(plan, check.source), target, IPERF_PORT) for p in points}
    best = max(points, key=lambda p: seen[p], default=None)
    got = seen[best] if best is not None else 0
    where = " or ".join(points) or "no capture point"
    text = f"{got} bytes of TCP to {target}:{IPERF_PORT} on {best}" if got else f"no iperf3 data crossed {where}"
    return Judgement(got >= want, f"≥{want} bytes of TCP to {target}:{IPERF_PORT} on {where} (half of the {claimed} iperf3 reports)", text, {"wire_tcp_bytes": got})


PERF = CheckKind(collect_perf, judge_perf, Wire(_wire_points, judge_perf_wire))


def _via(plan: Plan, check: PerfCheck) -> str:
    """The way the traffic goes: one bridge (no IP hop), or the host's routing and NAT."""
    shared = sorted({s for s, _ in node_interfaces(plan.scenario, check.source)} & {s for s, _ in node_interfaces(plan.scenario, check.to)})
    if shared:
        return f"bridge {shared[0]}"
    source_bridges = {seg for seg, _ in node_interfaces(plan.scenario, check.source)}
    nat = next((n for n in plan.part("nat") if n.bridge in source_bridges), None)  # the NAT feature's records, if any
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


def _validate(r: Rules, perf: PerfCheck, path: str) -> None:
    everyone = node_names(r.scenario)
    for key, name in (("from", perf.source), ("to", perf.to)):
        if name not in everyone:
            r.add(f"{path}.{key}", f"no {r.node_words()} named {name!r}")
            return
    if perf.source == perf.to:
        r.add(f"{path}.to", "measuring a node against itself says nothing about the network")
    elif route_to(r.scenario, perf.source, perf.to) is None:
        r.add(f"{path}.to", f"{perf.source!r} has no route to {perf.to!r}")


class Perf(Feature):
    name = "perf"
    model = ModelExtension(
        checks=(decl("perf", PerfCheck | None, spec("measure throughput (iperf3) and latency (ping) between two nodes", default=None)),),
        check_validators={"perf": _validate},
    )
    check_kinds = {"perf": PERF}

    def summary(self, results: list[CheckResult]) -> Table | None:
        return perf_table(results)
