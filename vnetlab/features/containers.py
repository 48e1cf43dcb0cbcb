"""Lab nodes that are network namespaces (containers, outside hosts), and running commands on any node.

A container is what the tutorial draws: a namespace whose eth0 is one end of a
veth pair, the other end a port of a bridge in the lab namespace. An outside
host ("physical LAN", "internet") is a namespace behind an uplink: a veth whose
lab end plays the host's eth0 — a bridge port (bridged uplink) or an addressed
interface the lab namespace routes and masquerades through (routed uplink).

Planning here is pure (plan.make_plan calls plan_nodes); creating and running
commands touch only namespaces the lab created.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from pyroute2 import IPRoute

from vnetlab.backends import netns
from vnetlab.backends import linux_bridge
from vnetlab.model.scenario import Scenario, container_veth
from vnetlab.backends.ssh import CommandResult, GuestSSH

if TYPE_CHECKING:
    from vnetlab.checks.runner import CheckContext, CheckResult
    from vnetlab.model.scenario import UnaddressedCheck
    from vnetlab.plan.planner import Plan, PlannedNic
    from vnetlab.run.state import LabState

T = TypeVar("T")
NODE_IFACE = "eth0"  # the node's end of its veth, inside its own namespace


@dataclass(frozen=True)
class PlannedNode:
    name: str
    kind: str  # container | host
    namespace: str
    mac: str  # of its eth0
    cidr: str  # address with prefix of its eth0
    veth: str  # the lab-namespace end of its veth pair
    veth_mac: str
    bridge: str | None  # the lab end is a port of this bridge (containers, bridged uplinks)
    veth_cidr: str | None  # routed uplink: the lab end's address (the host's outside address)
    gateway: str | None  # default route inside the node (containers behind a gateway bridge)
    iface: str = NODE_IFACE

    @property
    def ip(self) -> str:
        return self.cidr.split("/")[0]


def node_namespace(lab: str, node: str) -> str:
    """`vnl-<lab>.<node>`: lab names cannot contain '.', so no lab's namespace can be another's node namespace."""
    return f"vnl-{lab}.{node}"


def plan_nodes(scenario: Scenario, lab: str, take_mac: Callable[..., str]) -> tuple[PlannedNode, ...]:
    """Containers then hosts, with deterministic MACs from the plan's allocator."""
    gateways = {b.name: b.gateway for b in scenario.bridges}
    nodes = [
        PlannedNode(
            c.name, "container", node_namespace(lab, c.name), take_mac("02:00:00", c.name, NODE_IFACE), c.nic.address,
            container_veth(c.name), take_mac("02:00:00", "veth", c.name), c.nic.bridge, None, gateways.get(c.nic.bridge),
        )
        for c in scenario.containers
    ]
    nodes += [
        PlannedNode(
            h.name, "host", node_namespace(lab, h.name), take_mac("02:00:00", h.name, NODE_IFACE), h.address,
            h.uplink.name, take_mac("02:00:00", "veth", h.name), h.uplink.bridge, h.uplink.address, None,
        )
        for h in scenario.hosts
    ]
    return tuple(nodes)


def equivalent_commands(plan: Plan, node: PlannedNode) -> list[str]:
    """What create_node does, as iproute2 commands (for people reading `--explain`, never executed)."""
    lab, ns = plan.namespace, node.namespace
    cmds = [
        f"ip netns add {ns}",
        f"ip -n {lab} link add {node.veth} address {node.veth_mac} type veth peer name {node.iface} netns {ns} address {node.mac}",
    ]
    if node.bridge:
        cmds.append(f"ip -n {lab} link set {node.veth} master {node.bridge} up")
    else:
        cmds += [f"ip -n {lab} addr add {node.veth_cidr} dev {node.veth}", f"ip -n {lab} link set {node.veth} up"]
    cmds += [f"ip -n {ns} addr add {node.cidr} dev {node.iface}", f"ip -n {ns} link set {node.iface} up"]
    if node.gateway:
        cmds.append(f"ip -n {ns} route add default via {node.gateway}")
    return cmds


def _netlink(ns: str, fn: Callable[[IPRoute], T]) -> T:
    def call() -> T:
        with IPRoute() as ipr:
            return fn(ipr)

    return netns.run_in_namespace(ns, call)


def _set_mac(ns: str, ifname: str, mac: str) -> None:
    _netlink(ns, lambda ipr: ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], address=mac))


def create_node(plan: Plan, state: LabState, node: PlannedNode, attach: Callable[[str, str], None]) -> None:
    """Namespace, veth pair (recorded before each exists), MACs, addresses, default route.

    attach(port, bridge) enslaves the lab end with the bridge's own backend (linux or OVS).
    """
    if netns.namespace_exists(node.namespace):  # not recorded: teardown must never remove someone else's namespace
        raise netns.NamespaceError(f"namespace {node.namespace!r} already exists but no lab state records it: left alone")
    state.record(plan.lab_dir, "namespace", node.namespace, node.name)
    netns.create_namespace(node.namespace)
    state.record(plan.lab_dir, "veth", node.veth, node.name)
    linux_bridge.create_veth(plan.namespace, node.veth, node.namespace, node.iface)
    _set_mac(plan.namespace, node.veth, node.veth_mac)
    _set_mac(node.namespace, node.iface, node.mac)
    if node.bridge:
        attach(node.veth, node.bridge)
    else:
        assert node.veth_cidr is not None  # a routed uplink has an address (model validation)
        linux_bridge.add_address(plan.namespace, node.veth, node.veth_cidr)
        linux_bridge.set_link_up(plan.namespace, node.veth)
    linux_bridge.add_address(node.namespace, node.iface, node.cidr)
    linux_bridge.set_link_up(node.namespace, node.iface)
    if node.gateway:
        gateway = node.gateway
        _netlink(node.namespace, lambda ipr: ipr.route("add", dst="0.0.0.0/0", gateway=gateway))


def interface_addresses(ns: str, ifname: str) -> list[str] | None:
    """IPv4/IPv6 addresses the kernel reports on ifname in ns (None: no such interface)."""
    link = next((l for l in linux_bridge.list_links(ns) if l["name"] == ifname), None)
    return None if link is None else list(link["addresses"])


# -- running commands on a node ------------------------------------------------


class LabNode(Protocol):
    """Something a check can run a program on: a guest (over SSH) or a namespace (subprocess inside it)."""

    name: str

    def run(self, argv: list[str], timeout: float) -> CommandResult: ...

    def start(self, argv: list[str]) -> Callable[[], None]:
        """Start argv in the background; returns a function that ends it."""
        ...


@dataclass
class GuestNode:
    name: str
    ssh: GuestSSH

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self.ssh.run(shlex.join(argv), timeout=timeout, check=False)

    def start(self, argv: list[str]) -> Callable[[], None]:
        # Inside the guest: its own process, gone with the guest; the PID file lets us end it sooner.
        pidfile = f"/tmp/vnetlab-{argv[0].rsplit('/', 1)[-1]}.pid"
        self.ssh.run(f"{shlex.join(argv)} </dev/null >/dev/null 2>&1 & echo $! > {pidfile}", timeout=10.0)

        def stop() -> None:
            self.ssh.run(f"kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}", timeout=10.0, check=False)

        return stop


@dataclass
class NamespaceNode:
    name: str
    namespace: str

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        """The host's program, forked from a thread inside the namespace (a child inherits the thread's namespace)."""
        try:
            done = netns.run_in_namespace(self.namespace, subprocess.run, argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return CommandResult(shlex.join(argv), 124, _text(exc.stdout), _text(exc.stderr) + f"\n(timed out after {timeout:g} s)")
        except OSError as exc:  # e.g. the program is not installed on the host
            return CommandResult(shlex.join(argv), 127, "", f"cannot run {argv[0]} in namespace {self.namespace}: {exc}")
        return CommandResult(shlex.join(argv), done.returncode, done.stdout, done.stderr)

    def start(self, argv: list[str]) -> Callable[[], None]:
        proc = netns.run_in_namespace(self.namespace, subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop() -> None:
            if proc.poll() is None:
                proc.terminate()  # our own child, by its PID
                try:
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        return stop


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def lab_node(plan: Plan, sessions: dict[str, GuestSSH], name: str) -> LabNode:
    """The node called `name`: a VM through its SSH session, a container or host through its namespace."""
    if name in sessions:
        return GuestNode(name, sessions[name])
    node = next(n for n in plan.nodes if n.name == name)
    return NamespaceNode(name, node.namespace)


def endpoint(plan: Plan, name: str, on: str) -> PlannedNic | PlannedNode:
    """What a capture on `on` sees of node `name`: a container's or host's eth0, or the VM's NIC on
    that bridge (for an uplink: on the bridge the uplink is a port of)."""
    node = next((n for n in plan.nodes if n.name == name), None)
    if node is not None:
        return node
    vm = plan.vm(name)
    bridge = next((n.bridge for n in plan.nodes if n.veth == on and n.bridge), on)
    return vm.nic_on(bridge) or next(n for n in vm.nics if n.ip)


def run_unaddressed(ctx: CheckContext, check: UnaddressedCheck) -> CheckResult:
    """Read the lab namespace's addresses (netlink): a bridged path keeps the host's IP stack out."""
    from vnetlab.checks.runner import CheckResult

    found = interface_addresses(ctx.plan.namespace, check.interface)
    name = f"no address on {check.interface} in {ctx.plan.namespace}"
    if found is None:
        return CheckResult(name, "unaddressed", False, f"expected interface {check.interface} in {ctx.plan.namespace}; it does not exist")
    ipv4 = [a for a in found if ":" not in a]
    detail = f"expected no IPv4 address on {check.interface} (the host stays out of the bridged path), found {', '.join(ipv4) or 'none'}"
    return CheckResult(name, "unaddressed", not ipv4, detail, data={"addresses": found})
