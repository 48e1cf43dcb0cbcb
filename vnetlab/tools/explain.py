"""`--explain`: the shell commands equivalent to what vnetlab does for a lab, step by step.

vnetlab itself talks netlink (pyroute2), libvirt and SSH from Python; a student
repeating the lab by hand needs iproute2, bridge, tunctl, virsh, wg and
ovs-vsctl lines instead. Everything here is a pure function of the plan, in the
order the lab is built, so the text can be pinned by a golden test.

Extending: a step adds a `(plan) -> Section | None` to SECTIONS, and a check
kind adds a function to CHECK_COMMANDS.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from vnetlab.backends import ovs
from vnetlab.checks.runner import ping_argv, ping_target
from vnetlab.model.scenario import Check, OpCheck, PingCheck, WireGuardCheck
from vnetlab.features import nat
from vnetlab.features.containers import equivalent_commands
from vnetlab.plan.planner import MGMT_BRIDGE, Plan, PlannedBridge, PlannedVM
from vnetlab.features.wireguard import guest_commands, handshake_command, key_upload_command


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]  # commands; lines starting with '#' are comments


def _ovs(plan: Plan) -> ovs.OvsPaths:
    return ovs.OvsPaths(ovs.ovs_dir(plan.lab_dir))


def _guest(vm: str, command: str) -> str:
    return f"{vm}$ {command}"


def namespace_section(plan: Plan) -> Section:
    ns = plan.namespace
    return Section(f"Lab namespace {ns} (everything below lives in it; nothing is addressed in the root namespace)", (
        f"ip netns add {ns}",
        f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        f"ip -n {ns} link set lo up",
    ))


def _linux_bridge(plan: Plan, b: PlannedBridge) -> list[str]:
    ns = plan.namespace
    lines = [f"ip -n {ns} link add {b.name} address {b.mac} type bridge", f"ip -n {ns} link set {b.name} up"]
    if b.cidr:
        lines.append(f"ip -n {ns} addr add {b.cidr} dev {b.name}")
    return lines


def _vsctl(plan: Plan, args: list[str]) -> str:
    return shlex.join(ovs.vsctl_argv(_ovs(plan), *args))


def bridges_section(plan: Plan) -> Section:
    ns = plan.namespace
    lines: list[str] = []
    ovs_bridges = [b for b in plan.bridges if b.type == "ovs"]
    if ovs_bridges:
        paths = _ovs(plan)
        lines += [
            "# Open vSwitch, userspace datapath, daemons private to this lab (vnetlab runs them in the foreground",
            "# as its children and records their PIDs; by hand, --detach puts them in the background)",
            f"mkdir -p {paths.dir}",
            shlex.join(["ovsdb-tool", "create", str(paths.db), str(ovs.SCHEMA)]),
            shlex.join(["ip", "netns", "exec", ns, *ovs.daemon_argv(paths, "ovsdb-server"), "--detach"]),
            _vsctl(plan, ["--no-wait", "init"]),
            shlex.join(["ip", "netns", "exec", ns, *ovs.daemon_argv(paths, "ovs-vswitchd"), "--detach"]),
        ]
    for b in plan.bridges:
        if b.type == "ovs":
            lines.append(_vsctl(plan, ovs.bridge_args(b.name, b.mac)))
            if b.capture_port:
                lines += [
                    f"# mirror every frame of {b.name} to {b.capture_port}: its own port only sees what is flooded to it",
                    _vsctl(plan, ovs.mirror_args(b.name, b.capture_port)),
                    f"ip -n {ns} link set {b.capture_port} up",
                ]
        else:
            lines += _linux_bridge(plan, b)
    return Section(f"Bridges ({MGMT_BRIDGE} is vnetlab's management bridge: SSH to the guests)", tuple(lines))


def _attach(plan: Plan, port: str, bridge: str) -> list[str]:
    ns = plan.namespace
    if plan.bridge(bridge).type == "ovs":
        return [_vsctl(plan, ["add-port", bridge, port]), f"ip -n {ns} link set {port} up"]
    return [f"ip -n {ns} link set {port} master {bridge} up"]


def guests_section(plan: Plan) -> Section:
    ns = plan.namespace
    lines = ["# each vNIC is a tap made down in the root namespace (the only place libvirt opens it), the guest starts",
             "# paused, its taps move into the lab namespace and join their bridges, then the guest runs"]
    for vm in plan.vms:
        lines.append(f"# {vm.name}")
        lines += [f"tunctl -t {n.tap}    # or: ip tuntap add dev {n.tap} mode tap" for n in vm.all_nics]
        lines += [f"virsh define {vm.initrd.parent / 'domain.xml'}    # `vnetlab plan --xml` prints it", f"virsh start --paused {vm.domain}"]
        for n in vm.all_nics:
            lines.append(f"ip link set {n.tap} netns {ns}")
            lines += _attach(plan, n.tap, n.bridge)
        lines.append(f"virsh resume {vm.domain}")
    return Section("Guests: taps and domains", tuple(lines))


def nodes_section(plan: Plan) -> Section | None:
    if not plan.nodes:
        return None
    lines: list[str] = []
    for node in plan.nodes:
        lines.append(f"# {node.kind} {node.name}")
        lines += equivalent_commands(plan, node)
    return Section("Containers and hosts: namespaces joined by veth pairs", tuple(lines))


def nat_section(plan: Plan) -> Section | None:
    if not plan.nat:
        return None
    return Section("Forwarding and masquerade in the lab namespace (it plays the host)", tuple(nat.equivalent_commands(plan.namespace, plan.nat)))


def _ssh(plan: Plan, vm: PlannedVM) -> str:
    return f"ip netns exec {plan.namespace} ssh -i {plan.lab_dir / 'secrets' / 'id_ed25519'} root@{vm.mgmt.ip}"


def addressing_section(plan: Plan) -> Section:
    lines = ["# `vmN$ command` means: run it in that guest, logged in with the line above it"]
    for vm in plan.vms:
        lines.append(f"# {vm.name}: {_ssh(plan, vm)}")
        for n in vm.nics:
            if n.cidr:
                lines.append(_guest(vm.name, f"ip addr add {n.cidr} dev {n.guest_name}"))
            lines.append(_guest(vm.name, f"ip link set {n.guest_name} up"))
    return Section("Addresses inside the guests", tuple(lines))


def wireguard_section(plan: Plan) -> Section | None:
    if not plan.wireguard:
        return None
    lines = ["# a key pair per member (vnetlab makes X25519 keys in Python; by hand:)"]
    public = {(w.tunnel, w.vm): w.key_file.with_suffix(".pub") for w in plan.wireguard}
    for w in plan.wireguard:
        lines.append(f"wg genkey > {w.key_file} && wg pubkey < {w.key_file} > {public[(w.tunnel, w.vm)]}")
    for w in plan.wireguard:
        lines.append(f"# {w.vm}: its private key goes to {w.guest_key_file} on stdin (dropbear has no sftp)")
        lines.append(f"{_ssh(plan, plan.vm(w.vm))} {shlex.quote(key_upload_command(w))} < {w.key_file}")
        lines += [_guest(w.vm, c) for c in guest_commands(w, lambda vm, t=w.tunnel: f'"$(cat {public[(t, vm)]})"')]
    return Section("WireGuard tunnels", tuple(lines))


def _source(plan: Plan, name: str) -> Callable[[str], str]:
    node = next((n for n in plan.nodes if n.name == name), None)
    if node is not None:
        return lambda command: f"ip netns exec {node.namespace} {command}"
    return lambda command: _guest(name, command)


def _op_commands(plan: Plan, op: OpCheck) -> list[str]:
    ns = plan.namespace
    tap = plan.vm(op.vm).nic_on(op.bridge).tap if op.vm else ""  # type: ignore[union-attr]
    return {
        "list": [f"ip -n {ns} link", f"bridge -n {ns} link show"],
        "detach": [f"ip -n {ns} link set {tap} nomaster    # brctl delif {op.bridge} {tap}"],
        "attach": [f"ip -n {ns} link set {tap} master {op.bridge} up    # brctl addif {op.bridge} {tap}"],
        "delete-tap": [f"ip -n {ns} link del {tap}    # tunctl -d {tap}"],
        "add-address": [f"ip -n {ns} addr add {op.address} dev {op.bridge}"],
        "delete-address": [f"ip -n {ns} addr del {op.address} dev {op.bridge}"],
        "link-down": [f"ip -n {ns} link set {op.bridge} down    # ifconfig {op.bridge} down"],
        "link-up": [f"ip -n {ns} link set {op.bridge} up"],
        "delete-bridge": [f"ip netns exec {ns} brctl delbr {op.bridge}    # " + ("refused (EBUSY) while it is up; `ip link del` would not refuse" if op.expect == "error" else "works once it is down")],
    }[op.action]


def _wireguard_check(plan: Plan, check: WireGuardCheck) -> list[str]:
    return [_guest(vm, handshake_command(check.tunnel)) for vm in check.between]


def _ping(plan: Plan, ping: PingCheck) -> list[str]:
    line = _source(plan, ping.source)(shlex.join(ping_argv(ping.count, ping_target(plan, ping))))
    return [line + ("    # must get no reply" if ping.expect == "failure" else "")]


CHECK_COMMANDS: dict[str, Callable[[Plan, object], list[str]]] = {
    "ping": _ping,  # type: ignore[dict-item]
    "wireguard": _wireguard_check,  # type: ignore[dict-item]
    "op": _op_commands,  # type: ignore[dict-item]
}


def _check_lines(plan: Plan, check: Check) -> list[str]:
    fn = CHECK_COMMANDS.get(check.kind)
    return fn(plan, check.spec) if fn is not None else [f"# ({check.kind} check: judged by vnetlab, see the report)"]


def checks_section(plan: Plan) -> Section | None:
    if not plan.scenario.checks:
        return None
    lines: list[str] = []
    captured = sorted({c.capture.bridge for c in plan.scenario.checks if c.capture is not None and c.capture.bridge})
    for br in captured:
        iface = plan.bridge(br).capture_iface
        lines.append(f"ip netns exec {plan.namespace} tcpdump -ni {iface} -w {br}.pcap &    # for the whole check phase")
    for check in plan.scenario.checks:
        if check.kind != "capture":
            lines += _check_lines(plan, check)
    if captured:
        lines.append("kill $(jobs -p)    # stop the capture(s), then read what the capture checks judge:")
        lines += [f"tcpdump -nr {br}.pcap" for br in captured]
    return Section("Checks, in scenario order", tuple(lines))


def teardown_section(plan: Plan) -> Section:
    lines: list[str] = []
    for r in reversed(plan.resources):
        if r.kind == "domain":
            lines.append(f"virsh destroy {r.name}; virsh undefine {r.name}")
        elif r.kind in ("tap", "bridge", "veth"):
            continue  # they go with the namespace, as in vnetlab.run.teardown
        elif r.kind == "ovs-bridge":
            lines.append(_vsctl(plan, ["--if-exists", "del-br", r.name]))
        elif r.kind == "process":
            lines.append(f"kill $(cat {_ovs(plan).pidfile(r.name)})")
        elif r.kind == "namespace":
            lines.append(f"ip netns del {r.name}    # its bridges, taps and veths go with it")
        else:
            lines.append(f"# remove {r.kind} {r.name}")
    return Section("Teardown (newest first)", tuple(lines))


SECTIONS: list[Callable[[Plan], Section | None]] = [
    namespace_section,
    bridges_section,
    guests_section,
    nodes_section,
    nat_section,
    addressing_section,
    wireguard_section,
    checks_section,
    teardown_section,
]


def sections(plan: Plan) -> list[Section]:
    return [s for s in (fn(plan) for fn in SECTIONS) if s is not None]


def explain(plan: Plan) -> str:
    """The whole lab as numbered sections of commands."""
    out = [f"# vnetlab --explain: lab {plan.lab} (scenario {plan.scenario.name}), as commands you can run by hand as root"]
    for i, section in enumerate(sections(plan), 1):
        out += ["", f"## {i}. {section.title}", *section.lines]
    return "\n".join(out) + "\n"
