"""Link faults during a run: a cable pulled and plugged back, an impairment changed, a pause.

    vnetlab link LAB vm1.eth0 down        # the guest's NIC loses its carrier, as a pulled cable
    vnetlab link LAB vm1.eth0 up
    vnetlab link LAB c1.eth0 down         # a container's (or outside host's) veth
    vnetlab link LAB br1,br3 down         # the veth pair of a bridge link (bridge-links:)
    vnetlab link LAB sw-br0.p1 down       # a switch guest's port, where a bridge runs in one

    checks:
      - ping: {from: vm1, to: vm2, count: 200, measure: recovery, recovery-max-s: 5}
      - action: {wait: 1s}
      - action: {link: vm2.eth0, state: down}
      - action: {netem: {link: vm1.eth0, loss: 30%}}
      - action: {wait: 2s}
      - action: {link: vm2.eth0, state: up}

- A guest's NIC (a VM's, a switch guest's) is taken down through libvirt: its live <interface>
  gets <link state='down'/> (virDomainUpdateDeviceFlags, what `virsh domif-setlink` does). QEMU
  then drops its frames both ways and the guest's kernel sees the carrier go, as with a cable.
- A container's or outside host's link is its veth pair: the end in the lab namespace, a bridge
  port, is set down (pyroute2), and the node's eth0 loses its carrier. A routed uplink is refused:
  its lab end carries the lab namespace's routes, which a link down would delete.
- A link between two bridges (`bridge-links:`, the spanning tree lesson) is its veth pair: the end
  on the first bridge of the pair is set down, and both bridges see the port go.
- Actions are entries of a check list and run in its order. What each changed is put back at the
  end of the check phase (also after a failure or Ctrl-C), so `vnetlab check` can run again: a
  link to the state it had before the first action on it, a NIC's netem to the scenario's own.
- In a run folder an action is its record (when it ran, the state before, the state read back,
  what the end of the phase put back): `vnetlab judge` judges that record again, it never acts.
- A ping with `measure: recovery` runs in the background from its place in the list while the
  actions after it take links down and up, and is collected when it ends: its longest run of
  lost replies is the outage, `recovery-max-s` bounds it (checks/recovery.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import linux_bridge
from vnetlab.backends.linux_bridge import LISTENING
from vnetlab.backends.netns import namespace_exists
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.checks.evidence import EvidenceError, checks_at
from vnetlab.checks.ping import measures_recovery
from vnetlab.errors import InputError, VnetlabError
from vnetlab.features.base import CliCommand, CliContext, Feature
from vnetlab.model.scenario import IFACE_MAX, LINK, VM_NAME_MAX, ModelExtension, decl, split_link
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, feature_guests, feature_nodes
from vnetlab.plan.planner import METADATA_NS, MGMT_BRIDGE, Plan, PlannedVM
from vnetlab.run.connections import Connections
from vnetlab.tools.explain import guest_line
from vnetlab.tools.inspect import InspectRow
from vnetlab.tools.netem import Netem, NetemValueError, apply_script, change_live, clear_script, netem_problems, parse_duration, parse_netem

DISABLED = 0  # IFLA_BRPORT_STATE of a port whose link is down
SETTLE_TIMEOUT = 60.0  # seconds the end of the checks waits for bridge ports to settle after a link is back (STP: 2 × forward delay)
CARRIER_NEWS_S = 2.0
WAIT_MAX_US = 600_000_000  # 10 minutes: longer, and a check phase is better split
STATES = ("up", "down")
RECOVERY_COUNT_MIN = 20  # a recovery ping of fewer requests (1 s at 20 a second) cannot see an outage and its end


class LinkFaultError(VnetlabError):
    """A link could not be taken down or brought up, or its state not read."""


class UnknownLink(InputError, LinkFaultError):
    """The lab has no such link (exit 2 on the command line)."""


# -- the scenario keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NetemAction:
    """Change the impairment of the frames a VM NIC sends, from here on (netem, where the lab's netem runs)."""

    link: str = spec("the VM NIC, as VM.NIC (e.g. vm2.eth0)", pattern=LINK, max_length=VM_NAME_MAX + 1 + IFACE_MAX)
    delay: str | None = spec("added delay, e.g. 40ms (at most 60s)", default=None, max_length=20)
    jitter: str | None = spec("random variation of the delay, e.g. 5ms (needs delay)", default=None, max_length=20)
    loss: str | None = spec("share of frames dropped, e.g. 30%", default=None, max_length=20)
    rate: str | None = spec("rate limit, e.g. 1mbit", default=None, max_length=20)
    clear: bool = spec("remove the impairment instead (none of delay, jitter, loss, rate)", default=False)


@dataclass(frozen=True)
class ActionSpec:
    """Something done to the lab between checks, in list order; put back at the end of the check phase."""

    link: str | list[str] | None = spec(
        "a link to take down or bring up: a NIC as NODE.NIC (vm1.eth0: its carrier, through libvirt; c1.eth0: a container's or host's veth), "
        "or the link of two bridges joined by bridge-links, as [br1, br2]",
        default=None,
        max_length=VM_NAME_MAX + 1 + IFACE_MAX,
    )
    state: Literal["up", "down"] | None = spec("with link: down (the cable pulled) or up (plugged back)", default=None)
    netem: NetemAction | None = spec("impair a VM NIC's frames from here on: {link: vm2.eth0, loss: 30%}", default=None)
    wait: str | None = spec("pause, e.g. 2s or 500ms (at most 600s): a background ping keeps running meanwhile", default=None, max_length=20)

    def check_shape(self) -> list[str]:
        given = [k for k in ("link", "netem", "wait") if getattr(self, k) is not None]
        if len(given) != 1:
            return ["expected exactly one of: link (with state), netem, wait"]
        if self.link is not None and self.state is None:
            return ["state: missing (expected up or down: what to do to the link)"]
        if self.link is None and self.state is not None:
            return ["state goes with link: (the link to take down or bring up)"]
        return []


def link_label(link: str | list[str]) -> str:
    return link if isinstance(link, str) else "↔".join(link)


def _bridge_links(scenario: Any) -> list[tuple[str, str]]:
    """The bridge-links of the scenario (another feature's key, read by name)."""
    return [(lk.between[0], lk.between[1]) for lk in getattr(scenario, "bridge_links", ()) if len(lk.between) == 2]


def link_problem(scenario: Any, link: str | list[str]) -> str | None:
    """Why `link` names no link of the scenario that can be taken down, or None."""
    if isinstance(link, list):
        joined = _bridge_links(scenario)
        if len(link) != 2:
            return f"a link between bridges is [br1, br2]: expected two bridge names, got {len(link)}"
        if set(link) in [set(pair) for pair in joined]:
            return None
        listed = ", ".join(f"[{a}, {b}]" for a, b in joined) or "none"
        return f"no bridge-link joins {link[0]!r} and {link[1]!r} (bridge-links: {listed})"
    if "." not in link:
        return f"expected NODE.NIC (e.g. vm1.eth0) or [br1, br2], got {link!r}"
    node, nic = split_link(link)
    vm = next((v for v in scenario.vms if v.name == node), None)
    if vm is not None:
        names = [vm.nic_name(j) for j in range(len(vm.nics))]
        return None if nic in names else f"VM {node!r} has no NIC named {nic!r} (its NICs: {', '.join(names)})"
    found = next((n for n in feature_nodes(scenario) if n.name == node), None)
    if found is not None:
        names = [name for name, _ in found.nics]
        if nic not in names:
            return f"{found.kind} {node!r} has no interface named {nic!r} (its interfaces: {', '.join(names)})"
        bridges = {b.name for b in scenario.bridges}
        if not all(seg in bridges for seg, _ in found.interfaces):
            return f"{found.kind} {node!r} is behind a routed uplink: taking its link down would delete the lab namespace's routes through it"
        return None
    if node in feature_guests(scenario, maybe=True):
        return None  # a switch guest's port (p1, p2, …), on a host where the bridge runs in one: its NICs are planned, and found when the action runs
    return f"no VM, container or host named {node!r}"


def _validate_action(rules: Rules, action: ActionSpec, path: str) -> None:
    if action.link is not None:
        problem = link_problem(rules.scenario, action.link)
        if problem is not None:
            rules.add(f"{path}.link", problem)
    if action.wait is not None:
        try:
            parse_duration(action.wait, "wait", WAIT_MAX_US)
        except NetemValueError as exc:
            rules.add(f"{path}.wait", exc.detail)
    n = action.netem
    if n is not None:
        problem = link_problem(rules.scenario, n.link)
        if problem is None and split_link(n.link)[0] not in {v.name for v in rules.scenario.vms}:
            problem = f"netem impairs a VM NIC: {split_link(n.link)[0]!r} is not a VM of the scenario"
        if problem is not None:
            rules.add(f"{path}.netem.link", problem)
        values = (n.delay, n.jitter, n.loss, n.rate)
        if n.clear:
            if any(v is not None for v in values):
                rules.add(f"{path}.netem.clear", "clear takes no delay, jitter, loss or rate")
        else:
            for problem in netem_problems(*values):
                rules.add(f"{path}.netem" + (f".{problem.field}" if problem.field else ""), problem.detail)


def _validate_ping(rules: Rules, ping: Any, path: str) -> None:
    """`measure: recovery` and `recovery-max-s`: the ping must run long enough, expect replies, and be followed by an action."""
    if ping.recovery_max_s is not None and not measures_recovery(ping):
        rules.add(f"{path}.recovery-max-s", "recovery-max-s bounds a measured recovery: add measure: recovery")
    if not measures_recovery(ping):
        return
    if ping.expect != "success":
        rules.add(f"{path}.measure", "a recovery is measured on a ping that gets replies back in the end: drop expect")
    if ping.count < RECOVERY_COUNT_MIN:
        rules.add(f"{path}.count", f"{ping.count} requests (20 a second) cannot see an outage and its end: at least {RECOVERY_COUNT_MIN}, as many as the outage and the recovery take")
    listed, _, rest = path.rpartition("[")
    try:
        checks = checks_at(rules.scenario, listed)
        after = checks[int(rest.split("]")[0]) + 1:]
    except (EvidenceError, ValueError):
        return
    if not any(c.kind == "action" for c in after):
        rules.add(f"{path}.measure", "nothing after this ping acts on the lab: put the actions that cause the outage after it (e.g. - action: {link: vm2.eth0, state: down})")


MODEL = ModelExtension(
    ping_fields=(
        decl("measure", Literal["recovery"] | None, spec(
            "recovery: run in the background from here while the actions after it take links down and up; the longest run of lost replies is "
            "the outage, measured from the last reply before it to the first after it (needs iputils' ping, /usr/bin/ping)", default=None)),
        decl("recovery_max_s", float | None, spec("with measure: recovery, pass only if the replies came back within this many seconds", key="recovery-max-s", default=None, minimum=0, maximum=3600)),
    ),
    checks=(decl("action", ActionSpec | None, spec("act on the lab between checks: a link down or up, a netem change, a pause (undone at the end of the checks)", default=None)),),
    check_validators={"action": _validate_action, "ping": _validate_ping},
)


# -- the links of a planned lab, and their states ------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One link of a planned lab that can be taken down: a guest's NIC (libvirt) or the lab end of a veth (netlink)."""

    label: str  # vm1.eth0, c1.eth0, br1↔br3
    how: str  # for people: what is taken down
    vm: PlannedVM | None = None  # the guest whose NIC it is
    mac: str | None = None
    namespace: str | None = None  # where the veth end is
    ifname: str | None = None  # the veth end set down


def planned_links(plan: Plan) -> list[Link]:
    """Every link of the lab that can be pulled: the guests' data NICs, the nodes' veths on a bridge, the bridge links."""
    out = [Link(f"{vm.name}.{n.guest_name}", "the guest NIC's carrier, through libvirt", vm=vm, mac=n.mac) for vm in plan.vms for n in vm.nics]
    out += [Link(f"{n.name}.{n.iface}", f"the {n.kind}'s veth: its end {n.veth} in the lab namespace", namespace=plan.namespace, ifname=n.veth) for n in plan.nodes if n.bridge]
    stp = plan.part("stp", None)  # the bridge links' veths, as the stp feature planned them
    for link in getattr(stp, "links", ()):
        a, b = link.bridges
        out.append(Link(f"{a}↔{b}", f"the bridge link's veth: its end {link.veths[0]} on {a}", namespace=plan.namespace, ifname=link.veths[0]))
    return out


def find_link(plan: Plan, target: str | list[str]) -> Link:
    """The link `target` names (NODE.NIC, or two bridges of a bridge link in either order); UnknownLink says what there is."""
    links = planned_links(plan)
    if isinstance(target, list):
        found = next((lk for lk in links if lk.ifname and set(lk.label.split("↔")) == set(target) and "↔" in lk.label), None)
    else:
        found = next((lk for lk in links if lk.label == target), None)
    if found is None:
        raise UnknownLink(f"lab {plan.lab} has no link {link_label(target)!r} (links: {', '.join(lk.label for lk in links) or 'none'})")
    return found


def _domain(plan: Plan, vm: PlannedVM, connections: Connections) -> Any:
    dom = hv.lookup_of_lab(connections.get(vm.uri), vm.domain, plan.lab, METADATA_NS)
    if dom is None or not hv.is_running(dom):
        raise LinkFaultError(f"{vm.name} is not running (domain {vm.domain})")
    return dom


def read_state(plan: Plan, link: Link, connections: Connections) -> str:
    if link.vm is not None:
        return hv.link_state(_domain(plan, link.vm, connections), link.mac or "")
    assert link.namespace and link.ifname
    return linux_bridge.link_state(link.namespace, link.ifname)


def set_state(plan: Plan, link: Link, state: str, connections: Connections) -> str:
    """Take the link down or bring it up; returns its state read back."""
    if link.vm is not None:
        return hv.set_link_state(_domain(plan, link.vm, connections), link.mac or "", state)
    assert link.namespace and link.ifname
    (linux_bridge.set_link_up if state == "up" else linux_bridge.set_link_down)(link.namespace, link.ifname)
    return linux_bridge.link_state(link.namespace, link.ifname)


def settle(namespace: str, disabled: set[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """After a link is back: wait until no bridge port is listening or learning (a spanning tree
    moving back), so the next `vnetlab check` finds the lab as it was. (Then the caller flushes the
    addresses the bridges learned: 802.1D's topology change should age them out within 2 × forward
    delay, but this kernel (6.1) keeps its clean-up on the schedule it had, up to the 300 s ageing
    time; measured: right after br3↔br1 came back, br3 still sent vm1's frames to its now blocked
    port and vm1 → vm2 got 0/3 replies.) A port that was disabled
    counts as moving for its first seconds: the kernel tells the bridge of a carrier back from a
    deferred work item (linkwatch), within about a second. Returns the ports still moving."""
    began = time.monotonic()

    def read() -> list[tuple[str, str, int]]:
        fresh = time.monotonic() - began < CARRIER_NEWS_S
        return [(b, p, LISTENING if fresh and state == DISABLED and (b, p) in disabled else state) for b, p, state in linux_bridge.bridge_ports(namespace)]

    return linux_bridge.wait_settled(read, SETTLE_TIMEOUT)[1]


def link_command(plan: Plan, link: Link, state: str) -> str:
    """The same by hand."""
    if link.vm is not None:
        virsh = f"virsh -c '{link.vm.uri}'" if link.vm.uri else "virsh"
        return f"{virsh} domif-setlink {link.vm.domain} {link.mac} {state}"
    return f"ip -n {link.namespace} link set {link.ifname} {state}"


# -- the action ----------------------------------------------------------------------------------


def _netem_of(plan: Plan, vm: str, nic: str) -> Netem | None:
    """The scenario's own impairment of a NIC (the netem feature's plan, read by name), else None."""
    part = plan.part("netem", None)
    return next((lk.netem for lk in getattr(part, "links", ()) if (lk.vm, lk.nic) == (vm, nic)), None)


def action_name(action: ActionSpec) -> str:
    if action.link is not None:
        return f"link {link_label(action.link)} {action.state}"
    if action.netem is not None:
        n = action.netem
        return f"netem on {n.link}: " + ("cleared" if n.clear else parse_netem(n.delay, n.jitter, n.loss, n.rate).describe())
    return f"wait {action.wait}"


def collect_action(ctx: CheckContext, action: ActionSpec) -> Evidence:
    at = ctx.elapsed()
    if action.wait is not None:
        seconds = parse_duration(action.wait, "wait", WAIT_MAX_US) / 1_000_000
        time.sleep(seconds)
        return Evidence({"action": "wait", "at_s": at, "seconds": seconds})
    if action.link is not None:
        link = find_link(ctx.plan, action.link)
        with Connections() as connections:
            before = read_state(ctx.plan, link, connections)
            data: dict[str, Any] = {"action": "link", "link": link.label, "how": link.how, "at_s": at, "state": action.state, "before": before, "restores": f"link {link.label}"}
            evidence = Evidence(data)
            ctx.record(evidence)  # before the change: a Ctrl-C during it still finds what to put back (`before`)
            try:
                data["after"] = set_state(ctx.plan, link, action.state or "", connections)
            except VnetlabError as exc:
                return Evidence(data, error=str(exc))  # recorded with what to put back: it may have half happened
        return evidence
    n = action.netem
    assert n is not None
    vm, nic = split_link(n.link)
    netem = None if n.clear else parse_netem(n.delay, n.jitter, n.loss, n.rate)
    data = {"action": "netem", "link": n.link, "at_s": at, "netem": netem.describe() if netem else "none", "restores": f"netem {n.link}"}
    ctx.record(Evidence(data))  # before the change, as a link's
    try:
        data["seen"] = change_live(ctx.plan, vm, nic, netem, clear=n.clear)
    except VnetlabError as exc:
        return Evidence(data, error=str(exc))
    return Evidence(data, guests=(vm,) if not data["seen"].startswith("host ") else ())


def undo_action(ctx: CheckContext, action: ActionSpec, evidence: Evidence) -> dict[str, Any]:
    """Put back what the first action on this link changed."""
    d = evidence.data
    if d.get("action") == "link":
        link = find_link(ctx.plan, action.link)  # type: ignore[arg-type]
        with Connections() as connections:
            if read_state(ctx.plan, link, connections) == d["before"]:
                return {"undone": f"already {d['before']}"}
            disabled = {(b, p) for b, p, state in linux_bridge.bridge_ports(ctx.plan.namespace) if state == DISABLED}
            now = set_state(ctx.plan, link, d["before"], connections)
        out: dict[str, Any] = {"undone": f"{now} again", "undone_s": ctx.elapsed()}
        moving = settle(ctx.plan.namespace, disabled)
        if moving:
            out["undo_error"] = f"{link.label} is {now} again, but after {SETTLE_TIMEOUT:g} s the spanning tree still moves " + ", ".join(f"{b} port {p}" for b, p, _ in moving)
            return out
        out["undone"] += f", the bridges' ports settled by +{ctx.elapsed():g} s"
        if link.ifname is not None:  # a veth came back: ports may have moved under the addresses the bridges learned
            bridges = [b.name for b in ctx.plan.bridges if b.type == "linux" and b.guest is None and b.name != MGMT_BRIDGE]
            linux_bridge.flush_fdb(ctx.plan.namespace, bridges)
            out["undone"] += f", the learned addresses of {', '.join(bridges)} flushed"
        return out
    assert action.netem is not None
    vm, nic = split_link(action.netem.link)
    own = _netem_of(ctx.plan, vm, nic)
    seen = change_live(ctx.plan, vm, nic, own, clear=own is None)
    return {"undone": f"back to the scenario's netem: {seen}" if own else "netem removed", "undone_s": ctx.elapsed()}


def judge_action(plan: Plan, action: ActionSpec, evidence: Evidence) -> CheckResult:
    d = evidence.data
    name = action_name(action)
    at = f"at +{d.get('at_s', 0):g} s"
    if d.get("action") == "wait":
        return CheckResult(name, "action", True, f"{at}: waited {d.get('seconds', 0):g} s", data={"at_s": d.get("at_s")}, action=True)
    if d.get("action") == "link":
        ok = d.get("after") == d.get("state")
        detail = f"{at}: {d.get('link')} {d.get('after')} ({d.get('how')}; it was {d.get('before')})"
        if not ok:
            detail = f"{at}: {d.get('link')} should be {d.get('state')}, read back {d.get('after')} ({d.get('how')})"
    else:
        seen = str(d.get("seen", ""))
        ok = action.netem is not None and (action.netem.clear or "netem" in seen)
        detail = f"{at}: {d.get('link')} {d.get('netem')}; the kernel shows: {seen or 'nothing'}"
    if "undo_error" in d:
        ok = False
        detail += f"; could NOT be put back at the end of the checks: {d['undo_error']}"
    elif "undone" in d:
        detail += f"; put back at the end of the checks ({d['undone']})"
    data = {k: d[k] for k in ("at_s", "link", "before", "after", "state", "netem", "undone", "undone_s") if k in d}
    return CheckResult(name, "action", ok, detail, data=data, action=True)


ACTION = CheckKind(collect_action, judge_action, undo=undo_action)


def _action_commands(plan: Plan, action: ActionSpec) -> list[str]:
    if action.wait is not None:
        return [f"sleep {parse_duration(action.wait, 'wait', WAIT_MAX_US) / 1_000_000:g}"]
    if action.link is not None:
        link = find_link(plan, action.link)
        return [f"{link_command(plan, link, action.state or '')}    # {link.how}; as it was before at the end of the checks"]
    n = action.netem
    assert n is not None
    vm, nic = split_link(n.link)
    netem = None if n.clear else parse_netem(n.delay, n.jitter, n.loss, n.rate)
    own = _netem_of(plan, vm, nic)
    line = guest_line(vm, clear_script(nic) if netem is None else apply_script(nic, netem))
    return [line + f"    # at the end of the checks: {'back to ' + own.describe() if own else 'removed'}"]


# -- views and the command line ------------------------------------------------------------------


def inspect_rows(plan: Plan) -> list[InspectRow]:
    """Each link's state: a link taken down (by `vnetlab link`, or a check phase cut short) is a problem."""
    if not namespace_exists(plan.namespace):
        return []
    rows = []
    with Connections() as connections:
        for link in planned_links(plan):
            try:
                state = read_state(plan, link, connections)
            except VnetlabError as exc:
                rows.append(InspectRow(f"link {link.label}", "up", "unknown", [str(exc)]))
                continue
            problems = [] if state == "up" else [f"link {link.label} is down ({link.how}): `vnetlab link {plan.lab} {cli_name(link)} up` brings it back"]
            rows.append(InspectRow(f"link {link.label}", "up", state, problems))
    return rows


def _label(drawing: Any, label: str, word: str) -> None:
    """Add `word` to the edge of a link: a NIC's (vm1.eth0, c1.eth0) or a bridge link's (br1↔br2)."""
    if "↔" in label:
        a, b = label.split("↔")
        ids = {drawing.bridge_ids.get(a), drawing.bridge_ids.get(b)}
        edge = next((e for e in drawing.topo.edges if {e.a, e.b} == ids), None)
    else:
        node, nic = split_link(label)
        edge = drawing.nic_edge(node, nic) or next((e for e in drawing.topo.edges if e.a == drawing.node_ids.get(node)), None)
    if edge is not None and word not in edge.label:
        edge.label.append(word)


def cli_name(link: Link) -> str:
    return link.label.replace("↔", ",")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lab", metavar="LAB")
    parser.add_argument("link", metavar="LINK", nargs="?", help="NODE.NIC (vm1.eth0, c1.eth0, a switch guest's sw-br0.p1) or BR1,BR2 (a bridge link); without it, every link's state")
    parser.add_argument("state", metavar="STATE", nargs="?", choices=STATES, help="down (pull the cable) or up (plug it back); without it, the link's state")


def _run(args: argparse.Namespace, cli: CliContext) -> int:
    from vnetlab.paths import Layout
    from vnetlab.run.lab import LabError, LabPaths, check_lab_name, lab_lock, plan_from_state, read_state as read_lab

    check_lab_name(args.lab)
    paths = LabPaths(Layout(), args.lab)
    with lab_lock(args.lab, paths.state_file):
        state = read_lab(paths)
        if state.phase != "up":
            raise LabError(f"lab {args.lab!r} is not up (phase: {state.phase})")
        plan = plan_from_state(paths, state, cli.model)
        if args.link is None:
            links = planned_links(plan)
        else:
            links = [find_link(plan, args.link.split(",") if "," in args.link else args.link)]
        with Connections() as connections:
            for link in links:
                now = set_state(plan, link, args.state, connections) if args.state else read_state(plan, link, connections)
                cli.write_exact(f"{cli_name(link)}: {now} ({link.how})\n")
    return 0


class LinkFaults(Feature):
    name = "links"
    requires = ("stp", "netem")  # their plan parts are read by name: the bridge links' veths, the NICs' own netem
    model = MODEL
    check_kinds = {"action": ACTION}
    check_commands = {"action": _action_commands}

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        """The links the checks act on say so on their edge; of a running lab, a link that is down says so."""
        for check in plan.scenario.checks:
            action = check.spec if check.kind == "action" else None
            if action is not None and action.link is not None:
                _label(drawing, link_label(action.link), f"checks: {action.state}")
        if namespace_exists(plan.namespace):
            with Connections() as connections:
                for link in planned_links(plan):
                    try:
                        down = read_state(plan, link, connections) == "down"
                    except VnetlabError:
                        continue  # inspect says why
                    if down:
                        _label(drawing, link.label, "LINK DOWN")

    def cli_commands(self) -> list[CliCommand]:
        return [CliCommand(
            "link", "take a link of a running lab down or bring it up (a cable pulled), or show its state",
            "LINK is a guest NIC as VM.NIC (its carrier, through libvirt: `virsh domif-setlink`; a switch guest's port, sw-br0.p1, the same way), a container's or outside host's "
            "NODE.eth0 (its veth's end in the lab namespace), or BR1,BR2, the link of two bridges joined by bridge-links. "
            "Prints the state read back. Without STATE, prints the state; without LINK, every link's. A check list does the same "
            "with `- action: {link: vm1.eth0, state: down}`, put back at the end of its checks.",
            _arguments, _run,
        )]
