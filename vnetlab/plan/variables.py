"""Template variables of a planned lab: the scenario's, with the plan's real MACs and its nodes' addresses.

What users' templates see once the lab is planned (commands, command checks, files, an exercise's
task text, hints, answers and solutions); vnetlab.model.templates has the variables the model
validates them against before anything is planned.
"""

from __future__ import annotations

from typing import Any

from vnetlab.model.templates import by_family, node_variables, scenario_variables
from vnetlab.plan.planner import Plan


def plan_variables(plan: Plan) -> dict[str, Any]:
    """Template variables with the plan's real MACs."""
    variables = scenario_variables(plan.scenario, {(n.vm, n.guest_name): n.mac for vm in plan.vms for n in vm.nics})
    for node in plan.nodes:
        variables[node.name] = variables["nodes"][node.name] = node_variables([(node.iface, *by_family(node.cidr), node.mac, None)])
    return variables
