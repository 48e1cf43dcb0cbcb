"""The topology of a lab as a picture: DOT (→ SVG through Graphviz) or Mermaid for a README.

Drawn from the Plan, so it shows the names the lab really uses (taps, MACs, management
addresses). The core draws the bridges, the VMs and the plan's namespace nodes (containers,
hosts, whatever kind a feature adds: each is drawn by its `kind`, wired to its bridge or,
for a routed link, to the lab namespace); features add their own edges (tunnels, NAT)
through their `graph` hook on a `Drawing`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from vnetlab.errors import VnetlabError
from vnetlab.model.addressing import bridge_subnets
from vnetlab.plan.planner import MGMT_BRIDGE, Plan, PlannedVM

ROUTER = "namespace_router"  # the lab namespace itself, where routed uplinks end


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # bridge | vm | container | … (the Plan field's name, singular)
    label: list[str]
    management: bool = False


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    label: list[str]
    management: bool = False
    overlay: bool = False  # a tunnel between nodes (e.g. WireGuard), not a wire to a bridge


@dataclass(frozen=True)
class Cluster:
    """Nodes drawn together in a labelled box (e.g. the guests of one hypervisor)."""

    id: str
    label: str
    members: tuple[str, ...]


@dataclass
class Topology:
    title: str
    namespace: str
    bridges: list[Node] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)

    def cluster_of(self, node_id: str) -> Cluster | None:
        return next((c for c in self.clusters if node_id in c.members), None)


def _node_id(kind: str, name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{kind}_{name}")


def image_label(vm: PlannedVM) -> str:
    """The image a guest boots, short: tiny, debian + frr, file my-cloud.qcow2."""
    return f"file {PurePosixPath(vm.image.file).name}" if vm.image.file else vm.image.label()


def _nic_label(nic: object) -> list[str]:
    v4 = getattr(nic, "cidr", None)
    v4 = f"{v4} (dhcp)" if v4 and getattr(nic, "dhcp", False) else v4
    first = " ".join(str(p) for p in (getattr(nic, "guest_name", None) or getattr(nic, "iface", None), v4) if p)
    v6 = getattr(nic, "cidr6", None)
    ends = [f"{v6} (slaac)" if getattr(nic, "slaac", False) else v6] if v6 else []
    ends += [f"{kind} {getattr(nic, kind)}" for kind in ("tap", "veth") if getattr(nic, kind, None)]
    if getattr(nic, "veth_cidr", None):
        ends.append(f"lab side {nic.veth_cidr}")
    extra = [*ends, getattr(nic, "mac", None)]
    return [line for line in (first, " · ".join(str(e) for e in extra if e)) if line]


@dataclass
class Drawing:
    """What a feature's graph hook adds to: the topology, and the ids of what is drawn so far."""

    topo: Topology
    bridge_ids: dict[str, str]  # bridge name → node id
    node_ids: dict[str, str] = field(default_factory=dict)  # VM / node name → node id

    def router(self) -> str:
        """The lab namespace as a router (where routed links end), drawn once."""
        if not any(b.id == ROUTER for b in self.topo.bridges):
            self.topo.bridges.append(Node(ROUTER, "router", ["lab namespace", "routes"]))
        return ROUTER

    def node(self, node: Node) -> None:
        self.topo.nodes.append(node)
        self.node_ids[node.label[0]] = node.id

    def edge(self, a: str, b: str, label: list[str], *, management: bool = False, overlay: bool = False) -> None:
        self.topo.edges.append(Edge(a, b, label, management, overlay))

    def cluster(self, name: str, label: str, members: list[str]) -> None:
        """Draw these nodes (ids) together in a labelled box; a node is in one box at most."""
        taken = {m for c in self.topo.clusters for m in c.members}
        self.topo.clusters.append(Cluster(_node_id("cluster", name), label, tuple(m for m in members if m not in taken)))

    def nic_edge(self, vm: str, nic: str) -> Edge | None:
        """The edge of a VM's NIC (its label starts with the NIC's name), for a feature to label."""
        vm_id = self.node_ids.get(vm)
        return next((e for e in self.topo.edges if e.a == vm_id and e.label and e.label[0].split(" ")[0] == nic), None)


def topology(plan: Plan, *, management: bool = True) -> Topology:
    """The lab's nodes and links; management=False leaves out vnetlab's own SSH network."""
    topo = Topology(f"{plan.scenario.name} (lab {plan.lab})", plan.namespace)
    subnets = {b.name: " · ".join(str(n) for n in bridge_subnets(b).networks()) or b.subnet for b in plan.scenario.bridges}
    for br in plan.bridges:
        mgmt = br.name == MGMT_BRIDGE
        if mgmt and not management:
            continue
        lines = [br.name, br.type + (f" · {subnets[br.name]}" if subnets.get(br.name) else "")]
        if br.guest is not None:
            lines.append(f"in switch guest {br.guest}")
        if br.cidr:
            lines.append(f"gateway {br.cidr}")
        topo.bridges.append(Node(_node_id("bridge", br.name), "bridge", lines, mgmt))
    drawing = Drawing(topo, {n.label[0]: n.id for n in topo.bridges})
    for vm in plan.vms:
        if vm.role != "vm":  # a guest that runs part of the network: its feature draws it (e.g. as a bridge's label)
            continue
        nid = _node_id("vm", vm.name)
        drawing.node(Node(nid, "vm", [vm.name, "vm", f"{image_label(vm)} · {vm.vcpus} vCPU · {vm.memory} MiB"]))
        for nic in vm.all_nics:
            if nic.bridge in drawing.bridge_ids:
                drawing.edge(nid, drawing.bridge_ids[nic.bridge], _nic_label(nic), management=nic.bridge == MGMT_BRIDGE)
    for node in plan.nodes:
        nid = _node_id(node.kind, node.name)
        drawing.node(Node(nid, node.kind, [node.name, node.kind]))
        if node.bridge is None:  # routed: the lab namespace itself is the other end
            drawing.edge(nid, drawing.router(), _nic_label(node))
        elif node.bridge in drawing.bridge_ids:
            drawing.edge(nid, drawing.bridge_ids[node.bridge], _nic_label(node))
    for feature in plan.features:
        feature.graph(plan, drawing)
    return topo


class GraphError(VnetlabError):
    """Rendering failed (e.g. Graphviz is missing)."""


# -- DOT -----------------------------------------------------------------------

_DOT_SHAPES = {"bridge": "box", "vm": "box3d", "container": "component", "host": "house", "router": "diamond"}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: list[str]) -> str:
    return _dot_quote("\n".join(lines)).replace("\n", "\\n")


def to_dot(topo: Topology) -> str:
    out = [
        f"graph {_dot_quote(topo.title)} {{",
        "  graph [rankdir=LR, fontname=\"Helvetica\", label=" + _dot_quote(topo.title) + ", labelloc=t];",
        "  node [fontname=\"Helvetica\", fontsize=11];",
        "  edge [fontname=\"Helvetica\", fontsize=9];",
        "  subgraph cluster_namespace {",
        f"    label={_dot_quote('namespace ' + topo.namespace)}; style=dashed; color=gray50;",
    ]
    for b in topo.bridges:
        style = "style=\"rounded,dashed\", color=gray50" if b.management else "style=\"rounded,filled\", fillcolor=\"#dbe9f6\""
        out.append(f"    {b.id} [shape=box, {style}, label={_dot_label(b.label)}];")
    out.append("  }")

    def dot_node(n: Node, indent: str) -> str:
        return f"{indent}{n.id} [shape={_DOT_SHAPES.get(n.kind, 'ellipse')}, label={_dot_label(n.label)}];"

    for c in topo.clusters:
        out += [f"  subgraph {c.id} {{", f"    label={_dot_quote(c.label)}; style=rounded; color=\"#8e6c1f\";"]
        out += [dot_node(n, "    ") for n in topo.nodes if n.id in c.members]
        out.append("  }")
    out += [dot_node(n, "  ") for n in topo.nodes if topo.cluster_of(n.id) is None]
    for e in topo.edges:
        style = ", style=dashed, color=gray50" if e.management else (", style=bold, color=\"#2e7d32\", fontcolor=\"#2e7d32\"" if e.overlay else "")
        out.append(f"  {e.a} -- {e.b} [label={_dot_label(e.label)}{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(dot: str) -> bytes:
    """Render DOT with Graphviz's `dot` (no Python binding is installed; the program is)."""
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise GraphError("Graphviz `dot` is not installed (apt-get install graphviz), or use --format mermaid|dot") from None
    if done.returncode != 0:
        raise GraphError(f"dot -Tsvg failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


# -- Mermaid -------------------------------------------------------------------

_MERMAID_SHAPES = {"bridge": ("[[", "]]"), "vm": ("(", ")"), "container": ("[/", "/]"), "host": ("[(", ")]"), "router": ("{", "}")}


def _mermaid_label(lines: list[str]) -> str:
    text = "<br/>".join(lines)
    return '"' + text.replace('"', "#quot;") + '"'


def to_mermaid(topo: Topology) -> str:
    out = ["flowchart LR", f"  subgraph ns[{_mermaid_label(['namespace ' + topo.namespace])}]"]
    for b in topo.bridges:
        left, right = _MERMAID_SHAPES.get(b.kind, ("[[", "]]"))
        out.append(f"    {b.id}{left}{_mermaid_label(b.label)}{right}")
    out.append("  end")

    def mermaid_node(n: Node, indent: str) -> str:
        left, right = _MERMAID_SHAPES.get(n.kind, ("[", "]"))
        return f"{indent}{n.id}{left}{_mermaid_label(n.label)}{right}"

    for c in topo.clusters:
        out.append(f"  subgraph {c.id}[{_mermaid_label([c.label])}]")
        out += [mermaid_node(n, "    ") for n in topo.nodes if n.id in c.members]
        out.append("  end")
    out += [mermaid_node(n, "  ") for n in topo.nodes if topo.cluster_of(n.id) is None]
    for e in topo.edges:
        link = "-.-" if e.management else ("===" if e.overlay else "---")
        out.append(f"  {e.a} {link}|{_mermaid_label(e.label)}| {e.b}")
    return "\n".join(out) + "\n"
