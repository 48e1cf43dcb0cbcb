"""`vnetlab exec LAB NODE -- COMMAND`: a shell command on any node of a running lab.

A VM runs it over SSH (`sh -c`, like the scenario's exec: and command checks), a container or
outside host in its own namespace with the host's sh. The exit status is the command's.
"""

from __future__ import annotations

import time

from vnetlab.backends.netns import namespace_exists
from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import GuestNode, NamespaceNode
from vnetlab.plan.planner import Plan
from vnetlab.run.configure import open_ssh
from vnetlab.run.lab import LabError

SSH_CONNECT_TIMEOUT = 20.0


def node_names(plan: Plan) -> list[str]:
    return [vm.name for vm in plan.vms] + [n.name for n in plan.nodes]


def exec_on(plan: Plan, name: str, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
    if not namespace_exists(plan.namespace):
        raise LabError(f"lab {plan.lab!r} has no namespace {plan.namespace} (is it up? see `vnetlab status`)")
    argv = ["sh", "-c", command]
    if any(vm.name == name for vm in plan.vms):
        with open_ssh(plan, plan.vm(name), time.monotonic() + SSH_CONNECT_TIMEOUT) as ssh:
            if stdin is not None:
                return ssh.run(GuestNode(name, ssh).command_line(argv), timeout=timeout, stdin=stdin, check=False)
            return GuestNode(name, ssh).run(argv, timeout)
    node = next((n for n in plan.nodes if n.name == name), None)
    if node is None:
        raise LabError(f"lab {plan.lab!r} has no node {name!r} (nodes: {', '.join(node_names(plan))})")
    return NamespaceNode(name, node.namespace).run(argv, timeout, stdin=stdin)
