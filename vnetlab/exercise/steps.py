"""Commands an exercise runs on a lab's nodes: its setup, and the reference solution of a task."""

from __future__ import annotations

from typing import Any

from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import lab_node
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.model.templates import render
from vnetlab.plan.planner import Plan
from vnetlab.plan.variables import plan_variables


class StepError(VnetlabError):
    """An exercise's setup (or a solve step) failed: the lab is not what the exercise starts from."""


def run_steps(plan: Plan, sessions: dict[str, GuestSSH], steps: list[Any], what: str) -> list[str]:
    """Run each step's command on its node (a guest over SSH, a namespace node in its namespace), in
    order; each must exit 0 within its timeout. Returns a log entry per step."""
    variables = plan_variables(plan)
    logs = []
    for step in steps:
        command = render(step.run, variables)
        result = lab_node(plan, sessions, step.node).run(["sh", "-c", command], timeout=float(step.timeout))
        logs.append(f"{step.node}$ {command}\n{result.stdout}{result.stderr}[{result.ended}]\n")
        if result.exit_code != 0:
            raise StepError(f"{what}: `{command}` on {step.node} {result.exited}: {excerpt(result.stdout + result.stderr)}")
    return logs
