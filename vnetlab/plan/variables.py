"""Template variables of a planned lab: the scenario's, with the plan's real MACs and its nodes' addresses.

What users' templates see once the lab is planned (commands, command checks, files, an exercise's
task text, hints, answers and solutions); vnetlab.model.templates has the variables the model
validates them against before anything is planned.
"""

from __future__ import annotations

from typing import Any

from vnetlab.model.templates import by_family, node_variables, scenario_variables
from vnetlab.plan.planner import Plan


def switch_ports(plan: Plan) -> dict[tuple[str, str], str]:
    """(VM, NIC) → the switch port it is plugged into: the NIC of the guest at the other end of its
    point-to-point link when its bridge runs in a guest (a switch guest's p1, p2 …), else its tap
    (its bridge's port in the lab namespace). Decided by vnetlab's wiring outside every guest."""
    on_link = {n.bridge: n.guest_name for vm in plan.vms for n in vm.nics}  # a link's guest end (switch guests' NICs join only links)
    return {(n.vm, n.guest_name): on_link.get(n.attach, n.tap) if n.attach else n.tap for vm in plan.vms for n in vm.nics}


def plan_variables(plan: Plan) -> dict[str, Any]:
    """Template variables with the plan's real MACs and switch ports."""
    variables = scenario_variables(plan.scenario, {(n.vm, n.guest_name): n.mac for vm in plan.vms for n in vm.nics}, switch_ports(plan))
    for node in plan.nodes:
        variables[node.name] = variables["nodes"][node.name] = node_variables([(node.iface, *by_family(node.cidr), node.mac, None, node.veth)])
    return variables
