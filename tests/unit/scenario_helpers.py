"""What the feature tests share: a scenario's problems as text, checks appended, a plan made."""

from __future__ import annotations

from pathlib import Path

from vnetlab.compose import parse_scenario
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.plan.planner import Plan, PlanOptions, make_plan

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")


def problems(text: str) -> list[str]:
    """Every problem the loader reports for `text` (as lab.yaml), or [] when it loads."""
    try:
        parse_scenario(text, "lab.yaml")
    except ValidationError as exc:
        return [str(p) for p in exc.problems]
    return []


def checks_appended(base: str, *checks: str) -> str:
    return base + "checks:\n" + "".join(f"  - {c}\n" for c in checks)


def plan_of(text: str, lab: str) -> Plan:
    return make_plan(parse_scenario(text, "lab.yaml"), lab, PlanOptions(kernel=KERNEL))
