"""Device operations on a running lab (tutorial §1), each run and verified as a check.

Operations act on the lab namespace through netlink (pyroute2), like `ip link`
and `bridge link` would; deleting a bridge goes through the bridge ioctl
SIOCBRDELBR, as `brctl delbr` in the tutorial does, because that is the
interface that refuses to delete a bridge that is up (netlink's RTM_DELLINK,
i.e. `ip link del`, deletes it up or down). Every result says what the kernel
did and what the namespace looks like afterwards; removals stay idempotent for
teardown (deleting what an operation already deleted is not an error).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from typing import Literal

from vnetlab.backends import linux_bridge
from vnetlab.backends.netns import run_in_namespace
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, VM_NAME_MAX, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, interface
from vnetlab.plan.planner import Plan
from vnetlab.tools.explain import sh


@dataclass(frozen=True)
class OpCheck:
    action: Literal["list", "detach", "attach", "link-down", "link-up", "add-address", "delete-address", "delete-tap", "delete-bridge"] = spec("device operation run on the lab's host side")
    bridge: str = spec("linux bridge the operation is about", pattern=NAME, max_length=IFACE_MAX)
    vm: str | None = spec("VM whose tap on the bridge is detached/attached/deleted", default=None, pattern=NAME, max_length=VM_NAME_MAX)
    address: str | None = spec("address with prefix for add-address/delete-address, e.g. 10.1.1.1/24", default=None)
    expect: Literal["success", "error"] = spec("whether the kernel must carry the operation out or refuse it", default="success")

SIOCBRDELBR = 0x89A1  # <linux/sockios.h>: what `brctl delbr` calls


def delete_bridge_ioctl(ns: str, bridge: str) -> None:
    """`brctl delbr BRIDGE` inside ns; the kernel answers EBUSY while the bridge is up."""

    def call() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCBRDELBR, struct.pack("16s", bridge.encode()))

    try:
        run_in_namespace(ns, call)
    except OSError as exc:
        raise linux_bridge.LinkError(f"delete bridge {bridge!r} (SIOCBRDELBR): [Errno {exc.errno}] {os.strerror(exc.errno or 0)}") from exc


def _tap(plan: Plan, op: OpCheck) -> str:
    assert op.vm is not None  # guaranteed by model validation
    nic = plan.vm(op.vm).nic_on(op.bridge)
    assert nic is not None
    return nic.tap


def _describe(plan: Plan, links: list[dict]) -> str:
    """`ip -br link`-like lines, each tap named after the VM NIC it backs."""
    owners = {n.tap: f"{n.vm} {n.guest_name}" for vm in plan.vms for n in vm.all_nics}
    lines = []
    for link in links:
        extra = [f"master {link['master']}"] if link["master"] else []
        extra += link["addresses"]
        owner = f" ({owners[link['name']]})" if link["name"] in owners else ""
        lines.append(f"{link['name']}{owner} {link['kind'] or 'loopback'} {link['state']}" + (" " + " ".join(extra) if extra else ""))
    return "; ".join(lines)


def _ports(links: list[dict], bridge: str) -> list[str]:
    return sorted(link["name"] for link in links if link["master"] == bridge)


def _title(op: OpCheck) -> str:
    target = {
        "list": f"list links, ports of {op.bridge}",
        "detach": f"detach {op.vm}'s tap from {op.bridge}",
        "attach": f"attach {op.vm}'s tap to {op.bridge}",
        "delete-tap": f"delete {op.vm}'s tap on {op.bridge}",
        "add-address": f"add {op.address} to {op.bridge}",
        "delete-address": f"delete {op.address} from {op.bridge}",
        "link-down": f"set {op.bridge} down",
        "link-up": f"set {op.bridge} up",
        "delete-bridge": f"delete bridge {op.bridge} (brctl delbr's ioctl)",
    }[op.action]
    return f"op: {target}" + (" (must be refused)" if op.expect == "error" else "")


def _perform(plan: Plan, op: OpCheck) -> None:
    ns = plan.namespace
    if op.action == "detach":
        linux_bridge.detach_from_bridge(ns, _tap(plan, op))
    elif op.action == "attach":
        linux_bridge.attach_to_bridge(ns, _tap(plan, op), op.bridge)
    elif op.action == "delete-tap":
        linux_bridge.delete_link(ns, _tap(plan, op))
    elif op.action == "add-address":
        assert op.address is not None
        linux_bridge.add_address(ns, op.bridge, op.address)
    elif op.action == "delete-address":
        assert op.address is not None
        linux_bridge.delete_address(ns, op.bridge, op.address)
    elif op.action == "link-down":
        linux_bridge.set_link_down(ns, op.bridge)
    elif op.action == "link-up":
        linux_bridge.set_link_up(ns, op.bridge)
    elif op.action == "delete-bridge":
        delete_bridge_ioctl(ns, op.bridge)


def _effect(plan: Plan, op: OpCheck, links: list[dict]) -> tuple[bool, str, str]:
    """Whether the namespace now shows the operation's effect: (ok, expected, seen)."""
    by_name = {link["name"]: link for link in links}
    bridge = by_name.get(op.bridge)
    if op.action == "list":
        planned = sorted(n.tap for vm in plan.vms for n in vm.nics if n.bridge == op.bridge)
        ports = _ports(links, op.bridge)
        return ports == planned, f"ports of {op.bridge}: {', '.join(planned)}", f"ports of {op.bridge}: {', '.join(ports) or 'none'}"
    if op.action in ("detach", "attach", "delete-tap"):
        tap = by_name.get(_tap(plan, op))
        if op.action == "delete-tap":
            return tap is None, f"no link {_tap(plan, op)}", "it is gone" if tap is None else f"it still exists (master {tap['master']})"
        want = op.bridge if op.action == "attach" else None
        seen = "gone" if tap is None else f"master {tap['master'] or 'none'}, {tap['state']}"
        return tap is not None and tap["master"] == want, f"{_tap(plan, op)} master {want or 'none'}", seen
    if op.action in ("add-address", "delete-address"):
        present = bridge is not None and op.address in bridge["addresses"]
        want_present = op.action == "add-address"
        seen = f"{op.bridge} has {', '.join(bridge['addresses']) or 'no address'}" if bridge else f"no {op.bridge}"
        return present == want_present, f"{op.address} {'on' if want_present else 'not on'} {op.bridge}", seen
    if op.action in ("link-down", "link-up"):
        want = op.action.removeprefix("link-")
        return bridge is not None and bridge["state"] == want, f"{op.bridge} {want}", bridge["state"] if bridge else "gone"
    # delete-bridge: refused means the bridge must still be there, done means it must be gone
    if op.expect == "error":
        return bridge is not None, f"{op.bridge} still exists", f"{op.bridge} {'still exists, ' + bridge['state'] if bridge else 'is gone'}"
    return bridge is None, f"{op.bridge} gone", "it is gone" if bridge is None else f"it still exists ({bridge['state']})"


def collect_op(ctx: CheckContext, op: OpCheck) -> Evidence:
    """Perform the operation, then read the namespace back (netlink): what the kernel said, and the links."""
    plan = ctx.plan
    error: str | None = None
    if op.action != "list":
        try:
            _perform(plan, op)
        except linux_bridge.LinkError as exc:
            error = str(exc)
    return Evidence({"refused": error, "links": linux_bridge.list_links(plan.namespace)})


def judge_op(plan: Plan, op: OpCheck, evidence: Evidence) -> CheckResult:
    """Whether the kernel did (or refused) what was expected, and the namespace read back shows it."""
    error, links = evidence.data["refused"], evidence.data["links"]
    effect_ok, expected, seen = _effect(plan, op, links)
    if op.expect == "error":
        ok = error is not None and effect_ok
        detail = f"expected the kernel to refuse and {expected}; " + (f"it refused: {error}; {seen}" if error else f"it did not refuse; {seen}")
    else:
        ok = error is None and effect_ok
        detail = f"expected {expected}; " + (f"the kernel refused: {error}; {seen}" if error else f"saw {seen}")
    if op.action == "list":
        detail += f" — links in {plan.namespace}: {_describe(plan, links)}"
    data = {"links": links, **({"error": error} if error else {})}
    return CheckResult(_title(op), "op", ok, detail, data=data)


OP = CheckKind(collect_op, judge_op)


# -- rules and commands ----------------------------------------------------------------


_OP_NEEDS_VM = {"detach", "attach", "delete-tap"}
_OP_NEEDS_ADDRESS = {"add-address", "delete-address"}


def _validate_op(r: Rules, op: OpCheck, path: str) -> None:
    scenario = r.scenario
    bridge = next((b for b in scenario.bridges if b.name == op.bridge), None)
    if bridge is None:
        r.add(f"{path}.bridge", f"no bridge named {op.bridge!r}")
    elif bridge.type != "linux":
        r.add(f"{path}.bridge", f"device operations work on linux bridges; {op.bridge!r} is type {bridge.type}")
    if op.action in _OP_NEEDS_VM:
        if op.vm is None:
            r.add(f"{path}.vm", f"action {op.action} needs the VM whose tap it is about")
        elif op.vm not in {v.name for v in scenario.vms}:
            r.add(f"{path}.vm", f"no VM named {op.vm!r}")
        elif bridge is not None and not any(n.bridge == op.bridge for n in scenario.vm(op.vm).nics):
            r.add(f"{path}.vm", f"VM {op.vm!r} has no NIC on bridge {op.bridge!r}")
    elif op.vm is not None:
        r.add(f"{path}.vm", f"action {op.action} takes no vm")
    if op.action in _OP_NEEDS_ADDRESS:
        if op.address is None:
            r.add(f"{path}.address", f"action {op.action} needs an address with prefix, e.g. 10.1.1.1/24")
        elif interface(op.address) is None:
            r.add(f"{path}.address", f"expected an IPv4 address with prefix like 10.1.1.1/24, got {op.address!r}")
    elif op.address is not None:
        r.add(f"{path}.address", f"action {op.action} takes no address")


def op_commands(plan: Plan, op: OpCheck) -> list[str]:
    """What an operation does, as the tutorial's commands (for `--explain`)."""
    ns = plan.namespace
    tap = plan.vm(op.vm).nic_on(op.bridge).tap if op.vm else ""  # type: ignore[union-attr]
    return {
        "list": [sh("ip", "-n", ns, "link"), sh("bridge", "-n", ns, "link", "show")],
        "detach": [f"{sh('ip', '-n', ns, 'link', 'set', tap, 'nomaster')}    # {sh('brctl', 'delif', op.bridge, tap)}"],
        "attach": [f"{sh('ip', '-n', ns, 'link', 'set', tap, 'master', op.bridge, 'up')}    # {sh('brctl', 'addif', op.bridge, tap)}"],
        "delete-tap": [f"{sh('ip', '-n', ns, 'link', 'del', tap)}    # {sh('tunctl', '-d', tap)}"],
        "add-address": [sh("ip", "-n", ns, "addr", "add", op.address, "dev", op.bridge)],
        "delete-address": [sh("ip", "-n", ns, "addr", "del", op.address, "dev", op.bridge)],
        "link-down": [f"{sh('ip', '-n', ns, 'link', 'set', op.bridge, 'down')}    # {sh('ifconfig', op.bridge, 'down')}"],
        "link-up": [sh("ip", "-n", ns, "link", "set", op.bridge, "up")],
        "delete-bridge": [f"{sh('ip', 'netns', 'exec', ns, 'brctl', 'delbr', op.bridge)}    # " + ("refused (EBUSY) while it is up; `ip link del` would not refuse" if op.expect == "error" else "works once it is down")],
    }[op.action]


class DeviceOps(Feature):
    name = "ops"
    model = ModelExtension(
        checks=(decl("op", OpCheck | None, spec("perform a device operation on the running lab and verify its effect", default=None)),),
        check_validators={"op": _validate_op},
    )
    check_kinds = {"op": OP}
    check_commands = {"op": op_commands}
