"""Run a scenario's checks on a live lab: collect what each saw, keep it, judge it.

Checks are collected in scenario order. Captures run for the whole check phase, so a
capture check judges the traffic the other checks really produced; each result says
what was expected and what was seen. Collecting and judging are two steps: the
evidence (each check's JSON, and the pcaps) is kept in the run's folder, and the
judges decide from it alone, so `vnetlab judge RUN_DIR` decides the same way later.
With `wire` (an exercise), every kind with a signature on the wire is captured where
its traffic crosses and counts only when the capture saw it. The core knows ping and
the ARP/ICMP judges; every other kind of check and capture expectation comes from the
plan's features (their `check_kinds` and `judges`), so this module names none of them.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckKind, CheckResult, Evidence, Judge, Judgement, Stimulus, capture_iface, capture_segment, endpoint, expected_echo_pairs
from vnetlab.checks.capture import Capture, Frames, TrafficCounts, count_arp_icmp, count_echo_between, count_ndp
from vnetlab.checks.evidence import Collected, RunSetting, load_collected, read_setting, save_evidence, select_checks
from vnetlab.checks.ping import PING
from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.validate import parse_scenario
from vnetlab.printable import printable
from vnetlab.plan.planner import Plan, PlanOptions, make_plan
from vnetlab.paths import Layout
from vnetlab.signals import shielded


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
    segment = capture_segment(plan, check.on)  # type: ignore[attr-defined]
    away = [name for name, nic in ((s.name_a, s.nic_a), (s.name_b, s.nic_b)) if getattr(nic, "bridge", segment) != segment]
    routed = f" (routed: {' and '.join(away)} {'is' if len(away) == 1 else 'are'} not on {segment}, whose frames carry a router's MAC: judged by the addresses)" if away else ""
    return Judgement(
        c.icmp_echo_pairs >= want,
        f"≥{want} ICMP echo request/reply pairs between {s.nic_a.ip} and {s.nic_b.ip}{routed}",
        f"{c.icmp_echo_request} request(s), {c.icmp_echo_reply} reply(ies), {c.icmp_echo_pairs} pair(s)",
        {"icmp_echo_request": c.icmp_echo_request, "icmp_echo_reply": c.icmp_echo_reply, "icmp_echo_pairs": c.icmp_echo_pairs},
    )


def _v6(s: CaptureSubject) -> tuple[str, str]:
    a, b = getattr(s.nic_a, "ip6", None), getattr(s.nic_b, "ip6", None)
    assert a and b  # guaranteed by model validation: both have an IPv6 address on the bridge
    return a, b


def judge_icmp6_echo(plan: Plan, check: object, s: CaptureSubject) -> Judgement:
    a, b = _v6(s)
    c = count_echo_between(s.packets, a, b)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b, family=6))
    return Judgement(
        c.pairs >= want,
        f"≥{want} ICMPv6 echo request/reply pairs between {a} and {b}",
        f"{c.requests} request(s), {c.replies} reply(ies), {c.pairs} pair(s)",
        {"icmp6_echo_request": c.requests, "icmp6_echo_reply": c.replies, "icmp6_echo_pairs": c.pairs},
    )


def judge_ndp(plan: Plan, check: object, s: CaptureSubject) -> Judgement:
    """IPv6's ARP: a neighbour solicitation for the other's address, to its solicited-node multicast
    group (not to everyone, as ARP's broadcast), and the other's advertisement back."""
    _v6(s)
    ips_a = {ip for ip in (getattr(s.nic_a, "ip6", None), getattr(s.nic_a, "link_local", None)) if ip}
    ips_b = {ip for ip in (getattr(s.nic_b, "ip6", None), getattr(s.nic_b, "link_local", None)) if ip}
    c = count_ndp(s.packets, s.nic_a.mac, {i.split("/")[0] for i in ips_a}, s.nic_b.mac, {i.split("/")[0] for i in ips_b})
    where = f", sent to {', '.join(sorted(c.solicited_to))}" if c.solicited_to else ""
    return Judgement(
        c.solicitations >= 1 and c.advertisements >= 1,
        f"≥1 neighbour solicitation and ≥1 advertisement between {s.nic_a.mac} ({s.name_a}) and {s.nic_b.mac} ({s.name_b})",
        f"{c.solicitations} neighbour solicitation(s){where}, {c.advertisements} advertisement(s)",
        {"ndp_solicitation": c.solicitations, "ndp_advertisement": c.advertisements},
    )


CORE_KINDS: dict[str, CheckKind] = {"ping": PING}
CORE_JUDGES: dict[str, Judge] = {"arp": judge_arp, "icmp-echo": judge_icmp_echo, "ndp": judge_ndp, "icmp6-echo": judge_icmp6_echo}


def check_kinds(plan: Plan) -> dict[str, CheckKind]:
    out = dict(CORE_KINDS)
    for feature in plan.features:
        out.update(feature.check_kinds)
    return out


def judges(plan: Plan) -> dict[str, Judge]:
    out = dict(CORE_JUDGES)
    for feature in plan.features:
        out.update(feature.judges)
    return out


def judge_capture(plan: Plan, check: object, packets, pcap: Path, before: Evidence | None = None) -> CheckResult:
    """`before`: what went wrong making the traffic happen (a stimulus), said beside the verdict."""
    between = list(check.between)  # type: ignore[attr-defined]
    a, b = between[0], between[-1]  # one node: judged for it alone
    on = check.on  # type: ignore[attr-defined]
    who = f"between {a} and {b}" if len(between) == 2 else f"for {a}"
    name = getattr(check, "name", None) or f"capture on {on}: {', '.join(check.expect)} {who}"  # type: ignore[attr-defined]
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
    if before is not None and before.error:
        detail += f" (before the checks: {before.error})"
    data: dict[str, object] = {"pcap": str(pcap)}
    if getattr(packets, "truncated", False):  # the capture's memory bound was hit: judged on the first frames only
        detail += f" (of {packets.seen} seen: the capture keeps at most its bound in memory; the pcap has {packets.written})"
        data.update(frames_seen=packets.seen, frames_kept=len(packets), frames_in_pcap=packets.written)
    return CheckResult(name, "capture", all(j.ok for j in judgements), detail, counts=counts, data=data)


# -- one check: collect, then judge ------------------------------------------------------------------


def collect_one(kind: CheckKind, ctx: CheckContext, spec: Any) -> Evidence:
    """A collector that crashes on what a guest printed leaves evidence of why; the others still run."""
    try:
        return kind.collect(ctx, spec)
    except Exception as exc:  # noqa: BLE001 — isolating one check's failure is the point
        return Evidence(error=printable(f"{type(exc).__name__}: {exc}"))


def on_the_wire(result: CheckResult, wire: Judgement) -> CheckResult:
    """The verdict graded on the wire: it holds only when the capture saw the traffic too."""
    result.ok = result.ok and wire.ok
    result.detail += f"; on the wire: {wire.seen}" + ("" if wire.ok else f" (expected {wire.expected})")
    result.data["wire"] = {"ok": wire.ok, **wire.counts}
    return result


def judge_one(kind: CheckKind, plan: Plan, check: Any, evidence: Evidence, frames: Mapping[str, Frames], *, wire: bool = False) -> CheckResult:
    """A judge that cannot cope with the evidence fails its own check with a readable detail."""
    spec = check.spec
    if evidence.error is not None:
        result = CheckResult(f"{check.kind} check", check.kind, False, f"the check could not be completed: {evidence.error}")
    else:
        try:
            result = kind.judge(plan, spec, evidence)
            if wire and kind.wire is not None:
                result = on_the_wire(result, kind.wire.judge(plan, spec, evidence, frames))
        except Exception as exc:  # noqa: BLE001 — the guest's output is hostile input to the judge too
            result = CheckResult(f"{check.kind} check", check.kind, False, f"the check could not be judged: {type(exc).__name__}: {exc}")
    if getattr(spec, "name", None):  # the scenario's name for it wins (summary, report, JUnit)
        result.name = spec.name
    result.action = kind.acts
    return result.shown()


def run_one(table: Mapping[str, CheckKind], ctx: CheckContext, check: Any) -> CheckResult:
    """Collect and judge one check at once, each failure kept to that check."""
    kind = table[check.kind]
    return judge_one(kind, ctx.plan, check, collect_one(kind, ctx, check.spec), {}, wire=False)


# -- the check phase ---------------------------------------------------------------------------------


def capture_points(plan: Plan, kinds: Mapping[str, CheckKind], wire: bool) -> list[str]:
    """Bridges, links and uplinks captured for the whole phase: the capture checks', and with
    `wire` wherever the traffic of a kind with a wire signature crosses."""
    points = {c.capture.on for c in plan.scenario.checks if c.capture is not None}
    if wire:
        for c in plan.scenario.checks:
            kind = kinds.get(c.kind)
            if c.capture is None and kind is not None and kind.wire is not None:
                points.update(kind.wire.points(plan, c.spec))
    return sorted(points)


def on_each_node(ctx: CheckContext, names: list[str], argv: list[str], *, best_effort: bool = False) -> None:
    """Run `argv` on each node at once (one round trip each); the first failure is raised, or,
    `best_effort`, every failure is dropped."""
    if not names:
        return

    def one(name: str) -> None:
        try:
            ctx.node(name).run(argv, 10.0)
        except Exception:  # noqa: BLE001 — raised again unless best effort
            if not best_effort:
                raise

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(one, names))


def forget_neighbours(ctx: CheckContext, captures: list[Any]) -> None:
    """ARP and NDP are judged on what the check phase itself puts on the wire: a neighbour cache
    still warm from an earlier run (`vnetlab check` soon after `run --keep`), or from configuring
    the lab, would answer without asking."""
    # best effort in the guest: a failed flush shows in the ARP and NDP verdicts; a session that fails is the captures' error
    on_each_node(ctx, sorted({n for c in captures for n in c.between}), ["ip", "neigh", "flush", "all"])


CORE_STIMULI: dict[str, Stimulus] = {"arp": forget_neighbours, "ndp": forget_neighbours}

# The neighbour entries that hold no answer: lookups still under way (their probes may be spent) and failed ones.
FORGET_UNRESOLVED = ["ip", "neigh", "flush", "all", "nud", "incomplete", "nud", "failed"]


def forget_unresolved(ctx: CheckContext) -> None:
    """A ping's requests wait on its neighbour lookup, and a lookup that an earlier check phase left
    unanswered stays incomplete, its probes spent, until the kernel marks it failed: the requests
    queued on it meanwhile are dropped, none leaves. A student who fixed the lab within seconds of
    a failed check saw 0/3 replies and nothing on the wire (the exercise proofs, check → solve →
    check). Each ping's source forgets such entries first; resolved and static ones stay. A node
    that forget_neighbours serves (its ARP or NDP judged) forgets them all anyway. Best effort: a
    source that cannot be reached says so in its ping's verdict."""
    checks = ctx.plan.scenario.checks
    flushing = {e for e, fn in stimuli(ctx.plan).items() if fn is forget_neighbours}
    forgotten = {n for c in checks if c.capture is not None and flushing & set(c.capture.expect) for n in c.capture.between}
    sources = {c.spec.source for c in checks if c.kind == "ping"}
    on_each_node(ctx, sorted(sources - forgotten), FORGET_UNRESOLVED, best_effort=True)


def stimuli(plan: Plan) -> dict[str, Stimulus]:
    out = dict(CORE_STIMULI)
    for feature in plan.features:
        out.update(feature.stimuli)
    return out


def stimulate(ctx: CheckContext, collected: Collected) -> None:
    """Each stimulus once, with every capture check that expects it (one stimulus serving several
    expectations, e.g. ARP's and NDP's, runs once); a failure is kept as those captures' evidence."""
    table = stimuli(ctx.plan)
    wanted: dict[int, tuple[Stimulus, list[int]]] = {}
    for i, check in enumerate(ctx.plan.scenario.checks):
        if check.capture is None:
            continue
        for e in check.capture.expect:
            fn = table.get(e)
            if fn is not None:
                indexes = wanted.setdefault(id(fn), (fn, []))[1]
                if i not in indexes:
                    indexes.append(i)
    for fn, indexes in wanted.values():
        try:
            fn(ctx, [ctx.plan.scenario.checks[i].capture for i in indexes])
        except Exception as exc:  # noqa: BLE001 — the captures it served say so; the other checks still run
            for i in indexes:
                collected.evidence[i] = Evidence(error=printable(f"{type(exc).__name__}: {exc}"))


def collect_checks(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path, *, wire: bool = False, answer: Mapping[str, Any] | None = None) -> Collected:
    """Run every check of the plan on the live lab, captures around them all; judges nothing.
    The actions among them are undone at the end, whatever happened (a failure, Ctrl-C)."""
    ctx = CheckContext(plan, sessions, run_dir, wire=wire, answer=answer)
    kinds = check_kinds(plan)
    captures = {on: Capture(plan.namespace, capture_iface(plan, on), run_dir / f"{on}.pcap") for on in capture_points(plan, kinds, wire)}
    collected = Collected(pcaps={on: c.pcap_path for on, c in captures.items()}, wire=wire)
    started: list[Capture] = []
    background: dict[int, concurrent.futures.Future[Evidence]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="background check")
    try:
        for capture in captures.values():
            capture.start()
            started.append(capture)
        forget_unresolved(ctx)
        stimulate(ctx, collected)
        ctx.started = time.monotonic()  # the actions' and recoveries' times count from here, after the stimuli
        # One after another, in scenario order: two pings at once through a WireGuard tunnel make both
        # peers start a handshake at the same moment, and neither completes within the pings' wait.
        # A background check (a ping measuring a recovery) runs beside the entries after it.
        for i, check in enumerate(plan.scenario.checks):
            if check.kind == "capture":
                continue
            kind = kinds[check.kind]
            ctx.record = functools.partial(collected.evidence.__setitem__, i)
            if kind.background is not None and kind.background(check.spec):
                background[i] = pool.submit(collect_one, kind, ctx, check.spec)
            else:
                collected.evidence[i] = collect_one(kind, ctx, check.spec)
        for i, future in background.items():
            collected.evidence[i] = future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # after a failure or Ctrl-C: each is bounded in time, and ends with its sessions
        try:
            undo_actions(ctx, kinds, collected)
        finally:
            for on, capture in captures.items():
                if capture in started:
                    collected.frames[on] = capture.stop()
    return collected


def undo_actions(ctx: CheckContext, kinds: Mapping[str, CheckKind], collected: Collected) -> None:
    """Put back what the actions changed, newest change first, once per thing changed (from the
    state before its first change), so that the checks can run again on the same lab. Signals are
    held off meanwhile; what each undo did, or why it failed, goes into that action's evidence."""
    firsts: dict[str, int] = {}
    for i, evidence in sorted(collected.evidence.items()):
        key = evidence.data.get("restores")
        if isinstance(key, str) and kinds[ctx.plan.scenario.checks[i].kind].acts:
            firsts.setdefault(key, i)
    if not firsts:
        return
    with shielded():
        for key, i in sorted(firsts.items(), key=lambda item: -item[1]):
            check, evidence = ctx.plan.scenario.checks[i], collected.evidence[i]
            undo = kinds[check.kind].undo
            assert undo is not None
            try:
                evidence.data.update(undo(ctx, check.spec, evidence))
            except Exception as exc:  # noqa: BLE001 — reported in the action's verdict; the other undos still run
                evidence.data["undo_error"] = f"{type(exc).__name__}: {exc}"


def judge_checks(plan: Plan, collected: Collected) -> list[CheckResult]:
    """Each check's verdict from what was collected alone, in scenario order."""
    kinds = check_kinds(plan)
    results: list[CheckResult] = []
    for i, check in enumerate(plan.scenario.checks):
        if check.capture is not None:
            on = check.capture.on
            results.append(judge_capture(plan, check.capture, collected.frames[on], collected.pcaps[on], collected.evidence.get(i)).shown())
        else:
            results.append(judge_one(kinds[check.kind], plan, check, collected.evidence[i], collected.frames, wire=collected.wire))
    return results


def run_checks(plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path, *, wire: bool = False, answer: Mapping[str, Any] | None = None) -> tuple[list[CheckResult], dict[str, Path]]:
    """Collect, keep the evidence in run_dir (evidence.json beside the pcaps), judge. Returns the
    results in scenario order and the pcap of each capture point."""
    collected = collect_checks(plan, sessions, run_dir, wire=wire, answer=answer)
    save_evidence(run_dir, plan, collected)
    return judge_checks(plan, collected), dict(collected.pcaps)


# -- judging a run again -----------------------------------------------------------------------------


@dataclass
class JudgedRun:
    """A run judged again from its folder: the plan re-made from the scenario as run, the verdicts,
    and the evidence they came from."""

    setting: RunSetting
    plan: Plan
    results: list[CheckResult]
    collected: Collected


def setting_plan(setting: RunSetting, scenario_text: str, model: ScenarioModel) -> Plan:
    """The plan a run judged with, made again (the plan is a pure function of the scenario and these options)."""
    scenario = parse_scenario(scenario_text, setting.scenario_file, model, student=setting.student, allow_host_paths=setting.allow_host_paths)
    plan = make_plan(scenario, setting.lab, PlanOptions(setting.domain_type, Path(setting.kernel), Layout(Path(setting.layout)), host_kernel=frozenset(setting.host_kernel)))
    return select_checks(plan, setting.checks, setting.only)


def judge_run(run_dir: Path, model: ScenarioModel) -> JudgedRun:
    """`vnetlab judge RUN_DIR`: the checks of a run judged again from what its folder kept (the
    scenario as run, the plan options, evidence.json and the pcaps, each checked against its SHA-256)."""
    setting, text = read_setting(run_dir)
    plan = setting_plan(setting, text, model)
    collected = load_collected(run_dir, plan)
    return JudgedRun(setting, plan, judge_checks(plan, collected), collected)
