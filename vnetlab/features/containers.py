"""Containers and outside hosts: lab nodes that are network namespaces joined by veth pairs.

A container is what the tutorial draws: a namespace whose eth0 is one end of a
veth pair, the other end a port of a bridge in the lab namespace; a bridge may carry
the containers' gateway (the lab namespace's address on it). An outside host
("physical LAN", "internet") is a namespace behind an uplink: a veth whose lab end
plays the host's eth0 — a bridge port (bridged uplink) or an addressed interface the
lab namespace routes through (routed uplink, which NAT can masquerade out of).

This module owns the `containers:` and `hosts:` sections, a bridge's `gateway:`, the
`unaddressed` check and the `bridged` capture expectation.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from vnetlab.backends import linux_bridge, netns
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckKind, CheckResult, Evidence, Judgement, expected_echo_pairs
from vnetlab.checks.capture import count_ipv4
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, NODE_NAME_MAX, Expectation, ModelExtension, NodeDecl, NodeSection, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.addressing import bridge_subnets
from vnetlab.model.validate import Rules
from vnetlab.plan.planner import NODE_IFACE, Plan, PlanContext, PlannedNode, PlanPart, Resource
from vnetlab.run.apply import ApplyContext
from vnetlab.tools.explain import Section, comment, sh
from vnetlab.tools.inspect import InspectRow



# -- the scenario keys ---------------------------------------------------------------


@dataclass(frozen=True)
class ContainerNic:
    bridge: str = spec("bridge the container's veth is a port of", pattern=NAME, max_length=IFACE_MAX)
    address: str = spec("IPv4 address with prefix, e.g. 10.2.0.2/24")


CONTAINERS = NodeSection(
    "containers",
    "Container",
    (
        decl("name", str, spec("container name (its namespace is vnl-<lab>.<name>)", pattern=NAME, max_length=NODE_NAME_MAX)),
        decl("nic", ContainerNic, spec("its eth0: a veth whose other end is a port of a bridge")),
    ),
    "containers: namespaces joined to a bridge by a veth pair",
    "A container as the tutorial draws it: a network namespace joined to a bridge by a veth pair.",
)


@dataclass(frozen=True)
class Uplink:
    """The host's eth0: a veth from the lab namespace into the namespace of an outside host."""

    name: str = spec("name of the lab end (plays the host's eth0)", pattern=NAME, max_length=IFACE_MAX)
    bridge: str | None = spec("bridged uplink: the lab end is an unaddressed port of this bridge", default=None, pattern=NAME, max_length=IFACE_MAX)
    address: str | None = spec("routed uplink: the lab end's IPv4 address with prefix (the host's outside address)", default=None)

    def check_shape(self) -> list[str]:
        return [] if (self.bridge is None) != (self.address is None) else ["expected exactly one of: bridge (bridged uplink), address (routed uplink)"]


HOSTS = NodeSection(
    "hosts",
    "Host",
    (
        decl("name", str, spec("host name (its namespace is vnl-<lab>.<name>)", pattern=NAME, max_length=NODE_NAME_MAX)),
        decl("address", str, spec("IPv4 address with prefix of its eth0, on the uplink's segment")),
        decl("uplink", Uplink, spec("the veth that connects it to the lab host")),
    ),
    "outside hosts (physical LAN, internet), each in a namespace behind an uplink",
    'A machine outside the lab host ("physical LAN", "internet"): its own namespace behind an uplink.',
)


@dataclass(frozen=True)
class UnaddressedCheck:
    interface: str = spec("bridge or uplink of the lab namespace that must carry no IPv4 address (bridged: the host's IP stack stays out)", pattern=NAME, max_length=IFACE_MAX)


def container_veth(name: str) -> str:
    """Lab-namespace end of a container's veth pair."""
    return f"ve-{name}"


def uplink_segment(uplink: Any) -> str:
    """The segment a host sits on: its bridge, or the point-to-point segment of a routed uplink."""
    return uplink.bridge or f"uplink {uplink.name}"


def node_namespace(lab: str, node: str) -> str:
    """`vnl-<lab>.<node>`: lab names cannot contain '.', so no lab's namespace can be another's node namespace."""
    return f"vnl-{lab}.{node}"


def _nodes(scenario: Any) -> list[NodeDecl]:
    out = [NodeDecl(c.name, "container", f"containers[{i}]", ((c.nic.bridge, c.nic.address),), c, ((NODE_IFACE, c.nic.address),)) for i, c in enumerate(scenario.containers)]
    out += [NodeDecl(h.name, "host", f"hosts[{i}]", ((uplink_segment(h.uplink), h.address),), h, ((NODE_IFACE, h.address),)) for i, h in enumerate(scenario.hosts)]
    return out


def _uplinks(scenario: Any) -> list[str]:
    return [h.uplink.name for h in scenario.hosts]


def _validate(r: Rules) -> None:
    """Gateways, containers, hosts and their uplinks: names unique per lab (one namespace each, one
    lab-namespace interface each), addresses fitting their segment."""
    scenario = r.scenario
    for i, br in enumerate(scenario.bridges):
        if br.gateway is None:
            continue
        net = r.bridges.get(br.name)
        if net is None:
            r.add(f"bridges[{i}].gateway", "a gateway needs the bridge's IPv4 subnet")
        else:
            gw = r.address(f"bridges[{i}].gateway", f"{br.gateway}/{net.prefixlen}", net, f"bridge {br.name!r}")
            if gw is not None:
                r.claim(f"bridges[{i}].gateway", gw.ip, f"the gateway of {br.name}")
    for i, c in enumerate(scenario.containers):
        path = f"containers[{i}]"
        if c.name in r.names:
            r.add(f"{path}.name", f"{c.name!r} is already the name of a VM, container or host (each node has its own namespace)")
        r.names.add(c.name)
        if container_veth(c.name) in r.lab_ifaces:
            r.add(f"{path}.name", f"its veth {container_veth(c.name)!r} clashes with another interface of the lab namespace")
        r.lab_ifaces.add(container_veth(c.name))
        if c.nic.bridge not in r.bridges:
            r.add(f"{path}.nic.bridge", f"no bridge named {c.nic.bridge!r} (bridges: {', '.join(r.bridges) or 'none'})")
            continue
        iface = r.address(f"{path}.nic.address", c.nic.address, r.bridges[c.nic.bridge], f"bridge {c.nic.bridge!r}")
        if iface is not None:
            r.claim(f"{path}.nic.address", iface.ip, f"{c.name} eth0")
    outside_nets: list[ipaddress.IPv4Network] = []  # each routed uplink is its own segment of the lab namespace
    for i, h in enumerate(scenario.hosts):
        path = f"hosts[{i}]"
        up = h.uplink
        if h.name in r.names:
            r.add(f"{path}.name", f"{h.name!r} is already the name of a VM, container or host (each node has its own namespace)")
        r.names.add(h.name)
        if up.name.startswith("vnl") or up.name in r.lab_ifaces:
            r.add(f"{path}.uplink.name", f"{up.name!r} is already an interface of the lab namespace (or reserved)")
        r.lab_ifaces.add(up.name)
        if up.bridge is not None:
            if up.bridge not in r.bridges:
                r.add(f"{path}.uplink.bridge", f"no bridge named {up.bridge!r} (bridges: {', '.join(r.bridges) or 'none'})")
                continue
            iface = r.address(f"{path}.address", h.address, r.bridges[up.bridge], f"bridge {up.bridge!r} (the uplink bridges it)")
            if iface is not None:
                r.claim(f"{path}.address", iface.ip, f"{h.name} eth0")
            continue
        outside = r.address(f"{path}.uplink.address", up.address or "", None, "")
        if outside is None:
            continue
        clash = next((n for n in [r.mgmt, *r.bridges.values(), *outside_nets] if n is not None and n.overlaps(outside.network)), None)
        if clash is not None:
            r.add(f"{path}.uplink.address", f"{outside.network} overlaps {clash}, a subnet already in the lab (the outside needs its own)")
        outside_nets.append(outside.network)
        r.claim(f"{path}.uplink.address", outside.ip, f"uplink {up.name}")
        iface = r.address(f"{path}.address", h.address, outside.network, f"uplink {up.name!r}")
        if iface is not None:
            r.claim(f"{path}.address", iface.ip, f"{h.name} eth0")


def _validate_unaddressed(r: Rules, check: UnaddressedCheck, path: str) -> None:
    if check.interface not in {b.name for b in r.scenario.bridges} | set(_uplinks(r.scenario)):
        r.add(f"{path}.interface", f"no bridge or uplink named {check.interface!r}")


def _uplink_host(scenario: Any, name: str | None) -> Any:
    return next((h for h in scenario.hosts if h.uplink.name == name), None)


def _validate_bridged(r: Rules, cap: Any, path: str) -> None:
    host = _uplink_host(r.scenario, cap.interface)
    if host is None or host.uplink.bridge is None or host.name != cap.between[1]:
        r.add(f"{path}.expect", "bridged is judged on a bridged uplink (interface:) leading to between[1]")


MODEL = ModelExtension(
    node_sections=(CONTAINERS, HOSTS),
    bridge_fields=(
        decl("gateway", str | None, spec("IPv4 address the lab namespace (playing the host) takes on this bridge, e.g. 10.2.0.1; containers route through it", default=None)),
    ),
    checks=(decl("unaddressed", UnaddressedCheck | None, spec("assert the lab namespace holds no address on an interface", default=None)),),
    check_validators={"unaddressed": _validate_unaddressed},
    expectations=(Expectation("bridged", _validate_bridged, node_scoped=True),),
    node_kinds=("container", "host"),
    validate=_validate,
    nodes=_nodes,
    lab_interfaces=_uplinks,
)


# -- plan ------------------------------------------------------------------------------


def plan_nodes(ctx: PlanContext) -> tuple[PlannedNode, ...]:
    """Containers then hosts, with deterministic MACs from the plan's allocator."""
    scenario, lab, take_mac = ctx.scenario, ctx.lab, ctx.take_mac
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


def _gateway_cidrs(scenario: Any) -> dict[str, str]:
    """The lab namespace's address on each bridge that is the containers' gateway."""
    return {b.name: f"{b.gateway}/{net.prefixlen}" for b in scenario.bridges if b.gateway is not None and (net := bridge_subnets(b).ipv4) is not None}


def equivalent_commands(plan: Plan, node: PlannedNode) -> list[str]:
    """What create_node does, as iproute2 commands (for people reading `--explain`, never executed)."""
    lab, ns = plan.namespace, node.namespace
    cmds = [
        sh("ip", "netns", "add", ns),
        sh("ip", "-n", lab, "link", "add", node.veth, "address", node.veth_mac, "type", "veth", "peer", "name", node.iface, "netns", ns, "address", node.mac),
    ]
    if node.bridge:
        cmds.append(sh("ip", "-n", lab, "link", "set", node.veth, "master", node.bridge, "up"))
    else:
        cmds += [sh("ip", "-n", lab, "addr", "add", node.veth_cidr, "dev", node.veth), sh("ip", "-n", lab, "link", "set", node.veth, "up")]
    cmds += [sh("ip", "-n", ns, "addr", "add", node.cidr, "dev", node.iface), sh("ip", "-n", ns, "link", "set", node.iface, "up")]
    if node.gateway:
        cmds.append(sh("ip", "-n", ns, "route", "add", "default", "via", node.gateway))
    return cmds


# -- apply -----------------------------------------------------------------------------


def _set_mac(ns: str, ifname: str, mac: str) -> None:
    linux_bridge.with_netlink(ns, f"setting the MAC of {ifname}", lambda ipr: ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], address=mac))


def create_node(plan: Plan, ctx: ApplyContext, node: PlannedNode) -> None:
    """Namespace, veth pair (recorded before each exists), MACs, addresses, default route."""
    if netns.namespace_exists(node.namespace):  # not recorded: teardown must never remove someone else's namespace
        raise netns.NamespaceError(f"namespace {node.namespace!r} already exists but no lab state records it: left alone")
    ctx.record("namespace", node.namespace, node.name)
    netns.create_namespace(node.namespace)
    ctx.record("veth", node.veth, node.name)
    linux_bridge.create_veth(plan.namespace, node.veth, node.namespace, node.iface)
    _set_mac(plan.namespace, node.veth, node.veth_mac)
    _set_mac(node.namespace, node.iface, node.mac)
    if node.bridge:
        ctx.attach(node.veth, node.bridge)
    else:
        assert node.veth_cidr is not None  # a routed uplink has an address (model validation)
        linux_bridge.add_address(plan.namespace, node.veth, node.veth_cidr)
        linux_bridge.set_link_up(plan.namespace, node.veth)
    linux_bridge.add_address(node.namespace, node.iface, node.cidr)
    linux_bridge.set_link_up(node.namespace, node.iface)
    if node.gateway:
        gateway = node.gateway
        linux_bridge.with_netlink(node.namespace, f"adding the default route via {gateway}", lambda ipr: ipr.route("add", dst="0.0.0.0/0", gateway=gateway))


def interface_addresses(ns: str, ifname: str) -> list[str] | None:
    """IPv4/IPv6 addresses the kernel reports on ifname in ns (None: no such interface)."""
    link = next((l for l in linux_bridge.list_links(ns) if l["name"] == ifname), None)
    return None if link is None else list(link["addresses"])


# -- checks ----------------------------------------------------------------------------


def collect_unaddressed(ctx: CheckContext, check: UnaddressedCheck) -> Evidence:
    """The lab namespace's addresses on the interface (netlink; None: no such interface)."""
    return Evidence({"addresses": interface_addresses(ctx.plan.namespace, check.interface)})


def judge_unaddressed(plan: Plan, check: UnaddressedCheck, evidence: Evidence) -> CheckResult:
    """A bridged path keeps the host's IP stack out: the interface exists and has no IPv4 address."""
    found = evidence.data["addresses"]
    name = f"no address on {check.interface} in {plan.namespace}"
    if found is None:
        return CheckResult(name, "unaddressed", False, f"expected interface {check.interface} in {plan.namespace}; it does not exist")
    ipv4 = [a for a in found if ":" not in a]
    detail = f"expected no IPv4 address on {check.interface} (the host stays out of the bridged path), found {', '.join(ipv4) or 'none'}"
    return CheckResult(name, "unaddressed", not ipv4, detail, data={"addresses": found})


UNADDRESSED = CheckKind(collect_unaddressed, judge_unaddressed)


def run_unaddressed(ctx: CheckContext, check: UnaddressedCheck) -> CheckResult:
    return UNADDRESSED.run(ctx, check)


def judge_bridged(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """On a bridged uplink, a's frames to b carry a's own MAC and IP: no router, no NAT in between."""
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    own = count_ipv4(s.packets, src=s.nic_a.ip, dst=s.nic_b.ip, ether_src=s.nic_a.mac)
    from_a = count_ipv4(s.packets, src=s.nic_a.ip, dst=s.nic_b.ip)
    return Judgement(
        own >= want and own == from_a,
        f"≥{want} frames {s.nic_a.ip} → {s.nic_b.ip} on {check.on}, all from {s.name_a}'s own MAC {s.nic_a.mac}",
        f"{from_a} frame(s) {s.nic_a.ip} → {s.nic_b.ip}, {own} from {s.nic_a.mac}",
        {"bridged_own_mac": own, "bridged_from_a": from_a},
    )


# -- the feature -----------------------------------------------------------------------


class Containers(Feature):
    name = "containers"
    model = MODEL
    check_kinds = {"unaddressed": UNADDRESSED}
    judges = {"bridged": judge_bridged}

    def plan(self, ctx: PlanContext) -> PlanPart:
        nodes = plan_nodes(ctx)
        resources = tuple(r for n in nodes for r in (Resource("namespace", n.namespace, n.name), Resource("veth", n.veth, n.name)))
        return PlanPart(nodes=nodes, resources=resources, bridge_addresses=_gateway_cidrs(ctx.scenario))

    def dump(self, plan: Plan) -> dict[str, Any]:
        if not plan.nodes:
            return {}
        return {"nodes": [
            {
                "name": n.name,
                "kind": n.kind,
                "namespace": n.namespace,
                "nic": {"name": n.iface, "mac": n.mac, "address": n.cidr, **({"gateway": n.gateway} if n.gateway else {})},
                "veth": {"name": n.veth, "mac": n.veth_mac, **({"bridge": n.bridge} if n.bridge else {"address": n.veth_cidr})},
            }
            for n in plan.nodes if n.kind in ("container", "host")
        ]}

    def apply(self, plan: Plan, ctx: ApplyContext) -> None:
        for node in plan.nodes:
            if node.kind in ("container", "host"):
                create_node(plan, ctx, node)

    def explain(self, plan: Plan) -> list[Section]:
        nodes = [n for n in plan.nodes if n.kind in ("container", "host")]
        if not nodes:
            return []
        lines: list[str] = []
        for node in nodes:
            lines.append(comment(f"{node.kind} {node.name}"))
            lines += equivalent_commands(plan, node)
        return [Section("Containers and hosts: namespaces joined by veth pairs", tuple(lines), stage="network")]

    def inspect(self, plan: Plan) -> list[InspectRow]:
        rows = []
        links = {link["name"]: link for link in linux_bridge.list_links(plan.namespace)} if netns.namespace_exists(plan.namespace) else {}
        for node in plan.nodes:
            if node.kind not in ("container", "host"):
                continue
            problems = []
            if not netns.namespace_exists(node.namespace):
                problems.append(f"namespace {node.namespace} is missing")
            link = links.get(node.veth)
            if link is None:
                problems.append(f"veth {node.veth} is not in the lab namespace")
            elif node.bridge and link["master"] != node.bridge:
                problems.append(f"veth {node.veth} is a port of {link['master'] or 'no bridge'}, planned {node.bridge}")
            state = "missing" if link is None else f"{link['state']}" + (f", port of {link['master']}" if link["master"] else "")
            rows.append(InspectRow(f"{node.kind} {node.name}", f"{node.namespace}, veth {node.veth}", state, problems))
        return rows
