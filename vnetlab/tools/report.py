"""The run report: a JSON document for machines and a summary table for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vnetlab.checks.base import CheckResult
from vnetlab.model.scenario import ScenarioModel
from vnetlab.printable import printable, printable_data
from vnetlab.run.lab import Outcome
from vnetlab.run.progress import StepTiming, VMEvent
from vnetlab.tools.waterfall import timeline, waterfall_svg


def report_json(outcome: Outcome, steps: list[StepTiming], events: Sequence[VMEvent] = ()) -> dict:
    """Every string in it printable (vnetlab.printable): check details and errors quote guests and
    remote hosts, and the report is read back into terminals, JUnit and web pages."""
    accel = outcome.accel
    return printable_data({
        "scenario": outcome.scenario,
        "lab": outcome.lab,
        "ok": outcome.ok,
        "accel": accel.name if accel else None,
        "accel_detail": {"domain_type": accel.domain_type, "reason": accel.reason} if accel else None,
        "error": outcome.error,
        "placement": outcome.placement,
        "kept": outcome.kept,
        "steps": [{"name": s.name, "seconds": s.seconds, "ok": s.ok} for s in steps],
        "guests": {name: timing.to_json() for name, timing in outcome.guests.items()},
        "timeline": timeline(steps, events),
        "memory": outcome.memory_json(),
        "cpu": outcome.cpu_json(),
        "checks": [c.to_json() for c in outcome.checks],
        **({"features": outcome.reported} if outcome.reported else {}),
        "artifacts": outcome.artifacts,
    })  # type: ignore[return-value]


def write_report(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def save_reports(
    outcome: Outcome, steps: list[StepTiming], events: Sequence[VMEvent] = (), *, report: Path | None = None, junit: Path | None = None
) -> dict:
    """report.json, junit.xml and the boot waterfall (SVG) into the run's artifact folder (and named
    in the report), copies of the first two where asked."""
    from vnetlab.tools.junit import write_junit

    run_dir = outcome.artifacts.get("dir")
    if run_dir:
        outcome.artifacts["report"] = str(Path(str(run_dir)) / "report.json")
        outcome.artifacts["junit"] = str(Path(str(run_dir)) / "junit.xml")
        waterfall = Path(str(run_dir)) / "waterfall.svg"
        waterfall.write_text(waterfall_svg(f"vnetlab {outcome.scenario} (lab {outcome.lab}): where the time went", steps, events))
        outcome.artifacts["waterfall"] = str(waterfall)
    data = report_json(outcome, steps, events)
    if run_dir:
        write_report(Path(str(outcome.artifacts["report"])), data)
        write_junit(Path(str(outcome.artifacts["junit"])), data)
    if report:
        write_report(report, data)
    if junit:
        write_junit(junit, data)
    return data


def _artifact_files(artifacts: dict) -> str:
    names = [Path(str(artifacts[k])).name for k in ("report", "junit", "waterfall") if artifacts.get(k)]
    for key, what in (("pcap", "pcap"), ("console", "console log"), ("domain_xml", "domain XML")):
        n = len(artifacts.get(key) or {})
        if n:
            names.append(f"{n} {what}{'s' if n > 1 else ''}")
    return f" ({', '.join(names)})" if names else ""


def tally_text(results: Sequence[CheckResult]) -> str:
    """'3/4 checks passed', with the actions among them counted apart ('…, 2 actions done')."""
    checks = [r for r in results if not r.action]
    actions = [r for r in results if r.action]
    if not results:
        return "no checks"
    text = f"{sum(r.ok for r in checks)}/{len(checks)} checks passed"
    if actions:
        done = sum(r.ok for r in actions)
        text += f", {len(actions)} action{'s' if len(actions) != 1 else ''} done" if done == len(actions) else f", {done}/{len(actions)} actions done"
    return text


def print_summary(console: Console, outcome: Outcome, steps: list[StepTiming], model: ScenarioModel) -> None:
    if outcome.checks:
        table = Table(title=f"Checks — lab {outcome.lab}", title_justify="left", show_lines=False)
        table.add_column("", width=2)
        table.add_column("check")
        table.add_column("detail", overflow="fold")
        for c in outcome.checks:
            table.add_row("[green]✓[/]" if c.ok else "[red]✗[/]", Text(printable(c.name)), Text(printable(c.detail)))  # guest text: never markup, never escape sequences
        console.print(table)
        for feature in model.features:  # e.g. the throughput table of perf checks
            extra = feature.summary(outcome.checks)
            if extra is not None:
                console.print(extra)
    for feature in model.features:  # e.g. the DHCP leases
        if feature.name in outcome.reported:
            for line in feature.report_lines(outcome.reported[feature.name]):
                console.print(Text(line), soft_wrap=True)
    total_seconds = sum(s.seconds for s in steps)
    verdict = "[bold green]PASS[/]" if outcome.ok else "[bold red]FAIL[/]"
    tally = tally_text(outcome.checks)
    if outcome.ok and outcome.kept and not outcome.checks:
        verdict, tally = "[bold green]UP[/]", "ready, no checks run"
    accel = outcome.accel.name if outcome.accel else "?"
    console.print(f"{verdict} {outcome.scenario} (lab {outcome.lab}): {tally}, accel {accel}, {total_seconds:.1f} s", soft_wrap=True)
    if outcome.error:
        console.print(f"[red]error:[/] {escape(printable(outcome.error))}", soft_wrap=True)  # a message, not markup; unwrapped for copying
    if outcome.kept:
        console.print(f"the lab is still up: `vnetlab check {outcome.lab}`, then `vnetlab down {outcome.lab}`", soft_wrap=True)
    if outcome.artifacts.get("dir"):
        console.print(f"artifacts: {escape(str(outcome.artifacts['dir']))}{_artifact_files(outcome.artifacts)}", soft_wrap=True)
