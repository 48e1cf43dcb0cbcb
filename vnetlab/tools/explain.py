"""`--explain`: the shell commands equivalent to what vnetlab does for a lab, step by step.

vnetlab itself talks netlink (pyroute2), libvirt and SSH from Python; a student
repeating the lab by hand needs iproute2, bridge, tunctl, virsh, wg and
ovs-vsctl lines instead. Everything here is a pure function of the plan, in the
order the lab is built, so the text can be pinned by a golden test.

The core writes the namespace, bridges, guests, addressing, checks and teardown;
features add sections (their `explain` hook, placed by `stage`), the commands of
their kinds of check (`check_commands`), and switch backends their own lines.

The text is meant to be pasted into a root shell, and much of it comes from a scenario (paths,
URIs, commands): every word is quoted (`sh`), a comment is kept to its one line (`comment`), and a
guest's command that spans lines is handed to the guest's `sh -c` as one quoted word, so nothing a
scenario says can become shell syntax on the host.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from typing import Any, Literal

from vnetlab.checks.base import capture_iface
from vnetlab.checks.ping import measures_recovery, ping_argv, ping_target
from vnetlab.plan.planner import MGMT_BRIDGE, Plan, PlannedBridge, PlannedVM
from vnetlab.run.configure import ipv6_settings

Stage = Literal["network", "configure"]  # after the guests are started; after they are addressed


def sh(*words: object) -> str:
    """One command line, every word quoted for a POSIX shell where it needs it (shlex.join)."""
    return shlex.join(str(w) for w in words)


def comment(text: str) -> str:
    """`# text` on one line: line breaks and other control characters become visible escapes."""
    return "# " + _one_line(text)


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]  # commands; lines starting with '#' are comments
    stage: Stage = "network"


def guest_line(vm: str, command: str | Sequence[object]) -> str:
    """`vm$ command`: run it in that guest (see the addressing section for how to log in). A command
    given as words is quoted; a shell line that spans lines goes to `sh -c` as one quoted word, so
    its second line can never be taken for a command of the host's."""
    if not isinstance(command, str):
        return f"{vm}$ {sh(*command)}"
    if not command.isprintable():
        return f"{vm}$ {sh('sh', '-c', command)}"
    return f"{vm}$ {command}"


def namespace_section(plan: Plan) -> Section:
    ns = plan.namespace
    return Section(f"Lab namespace {ns} (everything below lives in it; nothing is addressed in the root namespace)", (
        sh("ip", "netns", "add", ns),
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"),
        sh("ip", "-n", ns, "link", "set", "lo", "up"),
    ))


def _linux_bridge(plan: Plan, b: PlannedBridge) -> list[str]:
    ns = plan.namespace
    lines = [sh("ip", "-n", ns, "link", "add", b.name, "address", b.mac, "type", "bridge"), sh("ip", "-n", ns, "link", "set", b.name, "up")]
    if b.cidr:
        lines.append(sh("ip", "-n", ns, "addr", "add", b.cidr, "dev", b.name))
    return lines


def bridges_section(plan: Plan) -> Section:
    lines: list[str] = []
    for kind in dict.fromkeys(b.type for b in plan.bridges):
        switch = plan.switch(kind)
        if switch is not None:
            lines += switch.explain_setup(plan)
    for b in plan.bridges:
        if b.guest is not None:
            lines.append(f"# {b.name}: runs inside switch guest {b.guest} (see its section below)")
            continue
        switch = plan.switch(b.type)
        lines += switch.explain_bridge(plan, b) if switch is not None else _linux_bridge(plan, b)
    return Section(f"Bridges ({MGMT_BRIDGE} is vnetlab's management bridge: SSH to the guests)", tuple(lines))


def _attach(plan: Plan, port: str, bridge: str) -> list[str]:
    switch = plan.switch(plan.bridge(bridge).type)
    if switch is not None:
        return switch.explain_attach(plan, port, bridge)
    return [sh("ip", "-n", plan.namespace, "link", "set", port, "master", bridge, "up")]


def guests_section(plan: Plan) -> Section:
    ns = plan.namespace
    lines = ["# each vNIC is a tap made down in the root namespace (the only place libvirt opens it), the guest starts",
             "# paused, its taps move into the lab namespace and join their bridges, then the guest runs"]
    for vm in plan.vms:
        lines.append(f"# {vm.name}")
        lines += [f"{sh('tunctl', '-t', n.tap)}    # or: {sh('ip', 'tuntap', 'add', 'dev', n.tap, 'mode', 'tap')}" for n in vm.all_nics]
        lines += [f"{sh('virsh', 'define', vm.secrets.parent / 'domain.xml')}    # `vnetlab plan --xml` prints it", sh("virsh", "start", "--paused", vm.domain)]
        for n in vm.all_nics:
            lines.append(sh("ip", "link", "set", n.tap, "netns", ns))
            lines += _attach(plan, n.tap, n.port_of)
        lines.append(sh("virsh", "resume", vm.domain))
    return Section("Guests: taps and domains", tuple(lines))


def ssh_line(plan: Plan, vm: PlannedVM) -> str:
    """The ssh command that logs into `vm` by hand, from inside the lab namespace."""
    return sh("ip", "netns", "exec", plan.namespace, "ssh", "-i", plan.lab_dir / "secrets" / "id_ed25519", f"root@{vm.mgmt.ip}")


def addressing_section(plan: Plan) -> Section:
    lines = ["# `vmN$ command` means: run it in that guest, logged in with the line above it"]
    for vm in plan.vms:
        lines.append(f"# {vm.name}: {ssh_line(plan, vm)}")
        for n in vm.nics:
            lines += [guest_line(vm.name, line.replace("$dev", n.guest_name)) for line in ipv6_settings(n)]
            lines += [guest_line(vm.name, ["ip", "addr", "add", cidr, "dev", n.guest_name]) for cidr in n.static]
            lines.append(guest_line(vm.name, ["ip", "link", "set", n.guest_name, "up"]))
            if n.link_local:
                lines.append(comment(f"{vm.name} {n.guest_name}: link-local {n.link_local} (from its MAC, as the kernel forms it)"))
    return Section("Addresses inside the guests", tuple(lines))


def command_at(plan: Plan, name: str) -> Callable[[str], str]:
    """How a command is typed to run at node `name`: in its namespace (`ip netns exec`), or in the guest."""
    node = next((n for n in plan.nodes if n.name == name), None)
    if node is not None:
        return lambda command: f"{sh('ip', 'netns', 'exec', node.namespace)} {command}"
    return lambda command: guest_line(name, command)


def _ping(plan: Plan, ping: Any) -> list[str]:
    line = command_at(plan, ping.source)(shlex.join(ping_argv(ping.count, ping_target(plan, ping), recovery=measures_recovery(ping))))
    if measures_recovery(ping):  # in the background: the lines after it act while it runs
        return [line + " > recovery.txt &    # the lines below run while it does; `wait`, then its longest run of lost replies is the outage"]
    return [line + {"failure": "    # must get no reply", "no-reply": "    # the requests must leave and get no reply"}.get(ping.expect, "")]


def _check_lines(plan: Plan, check: Any) -> list[str]:
    commands: dict[str, Callable[[Plan, Any], list[str]]] = {"ping": _ping}
    for feature in plan.features:
        commands.update(feature.check_commands)
    fn = commands.get(check.kind)
    return fn(plan, check.spec) if fn is not None else [f"# ({check.kind} check: judged by vnetlab, see the report)"]


def checks_section(plan: Plan) -> Section | None:
    if not plan.scenario.checks:
        return None
    lines: list[str] = []
    captured = sorted({c.capture.on for c in plan.scenario.checks if c.capture is not None and (c.capture.bridge or c.capture.link)})
    for br in captured:
        iface = capture_iface(plan, br)
        lines.append(f"{sh('ip', 'netns', 'exec', plan.namespace, 'tcpdump', '-ni', iface, '-w', f'{br}.pcap')} &    # for the whole check phase")
    for check in plan.scenario.checks:
        if check.kind != "capture":
            lines += _check_lines(plan, check)
    if captured:
        lines.append("kill $(jobs -p)    # stop the capture(s), then read what the capture checks judge:")
        lines += [sh("tcpdump", "-nr", f"{br}.pcap") for br in captured]
    return Section("Checks, in scenario order", tuple(lines))


def teardown_section(plan: Plan) -> Section:
    lines: list[str] = []
    switches = [s for f in plan.features for s in f.switches if any(b.type == s.kind for b in plan.bridges)]
    switch_kinds = {kind: s for s in switches for kind in (s.bridge_resource, "process")}
    for r in reversed(plan.resources):
        if r.kind == "domain":
            uri = plan.vm(r.vm).uri if r.vm else None
            virsh = ["virsh", "-c", uri] if uri else ["virsh"]
            lines.append(f"{sh(*virsh, 'destroy', r.name)}; {sh(*virsh, 'undefine', r.name)}")
        elif r.kind in ("tap", "bridge", "veth"):
            continue  # they go with the namespace, as in vnetlab.run.teardown
        elif r.kind in switch_kinds:
            lines += switch_kinds[r.kind].explain_teardown(plan, r)
        elif r.kind == "namespace":
            lines.append(f"{sh('ip', 'netns', 'del', r.name)}    # its bridges, taps and veths go with it")
        else:
            lines.append(comment(f"remove {r.kind} {r.name}"))
    return Section("Teardown (newest first)", tuple(lines))


def sections(plan: Plan) -> list[Section]:
    """The core's sections with the features' placed by stage, in the order the lab is built."""
    added = [section for feature in plan.features for section in feature.explain(plan)]
    staged = {stage: [s for s in added if s.stage == stage] for stage in ("network", "configure")}
    core_before = [namespace_section(plan), bridges_section(plan), guests_section(plan)]
    checks = checks_section(plan)
    return [*core_before, *staged["network"], addressing_section(plan), *staged["configure"], *([checks] if checks else []), teardown_section(plan)]


def explain(plan: Plan) -> str:
    """The whole lab as numbered sections of commands."""
    out = [comment(f"vnetlab --explain: lab {plan.lab} (scenario {plan.scenario.name}), as commands you can run by hand as root")]
    for i, section in enumerate(sections(plan), 1):
        out += ["", "#" + comment(f"{i}. {section.title}"), *section.lines]
    return "\n".join(out) + "\n"
