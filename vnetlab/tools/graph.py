"""The topology of a lab as a picture: DOT (→ SVG through Graphviz) or Mermaid for a README.

Drawn from the Plan, so it shows the names the lab really uses (taps, MACs, management
addresses). Every tuple of planned nodes in the Plan (vms today; containers, hosts, … as
the model grows) becomes a node kind; anything with a `bridge` attribute (a NIC, an uplink)
becomes an edge to that bridge. A new node kind therefore appears without an edit here.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from dataclasses import dataclass, field

from vnetlab.errors import VnetlabError
from vnetlab.plan.planner import MGMT_BRIDGE, Plan

_NOT_NODES = {"bridges", "resources"}  # Plan fields that are not node kinds
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


@dataclass
class Topology:
    title: str
    namespace: str
    bridges: list[Node] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def _node_id(kind: str, name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{kind}_{name}")


def _attachments(item: object) -> list[object]:
    """What ties a planned node to the lab: its NICs (all_nics, else nics), or itself if it has a
    bridge (a container's veth) or a veth of its own (a routed uplink, ending in the namespace)."""
    for attr in ("all_nics", "nics", "interfaces"):
        value = getattr(item, attr, None)
        if isinstance(value, (tuple, list)):
            return [n for n in value if getattr(n, "bridge", None)]
    return [item] if getattr(item, "bridge", None) or getattr(item, "veth", None) else []


def _nic_label(nic: object) -> list[str]:
    first = " ".join(str(p) for p in (getattr(nic, "guest_name", None) or getattr(nic, "iface", None), getattr(nic, "cidr", None)) if p)
    ends = [f"{kind} {getattr(nic, kind)}" for kind in ("tap", "veth") if getattr(nic, kind, None)]
    if getattr(nic, "veth_cidr", None):
        ends.append(f"lab side {nic.veth_cidr}")
    extra = [*ends, getattr(nic, "mac", None)]
    return [line for line in (first, " · ".join(str(e) for e in extra if e)) if line]


def _overlay_edges(plan: Plan, node_ids: dict[str, str]) -> list[Edge]:
    """Tunnels: any Plan tuple of per-VM interfaces with peers (WireGuard today), one edge per pair."""
    edges: list[Edge] = []
    for f in dataclasses.fields(plan):
        items = getattr(plan, f.name)
        if not isinstance(items, (tuple, list)) or not all(hasattr(i, "peers") and hasattr(i, "vm") for i in items):
            continue
        address = {(getattr(i, "tunnel", f.name), i.vm): getattr(i, "address", "") for i in items}
        for i in items:
            tunnel = getattr(i, "tunnel", f.name)
            for peer in i.peers:
                if i.vm < peer.vm and i.vm in node_ids and peer.vm in node_ids:
                    label = [f"{f.name} {tunnel}", f"{address.get((tunnel, i.vm), '')} ↔ {address.get((tunnel, peer.vm), '')}"]
                    edges.append(Edge(node_ids[i.vm], node_ids[peer.vm], label, overlay=True))
    return edges


def topology(plan: Plan, *, management: bool = True) -> Topology:
    """The lab's nodes and links; management=False leaves out vnetlab's own SSH network."""
    topo = Topology(f"{plan.scenario.name} (lab {plan.lab})", plan.namespace)
    subnets = {b.name: b.subnet for b in plan.scenario.bridges}
    for br in plan.bridges:
        mgmt = br.name == MGMT_BRIDGE
        if mgmt and not management:
            continue
        lines = [br.name, br.type + (f" · {subnets[br.name]}" if subnets.get(br.name) else "")]
        if br.cidr:
            lines.append(f"gateway {br.cidr}")
        topo.bridges.append(Node(_node_id("bridge", br.name), "bridge", lines, mgmt))
    bridge_ids = {n.label[0]: n.id for n in topo.bridges}
    for f in dataclasses.fields(plan):
        items = getattr(plan, f.name)
        if f.name in _NOT_NODES or not isinstance(items, (tuple, list)) or not items or not all(hasattr(i, "name") for i in items):
            continue
        for item in items:
            own = getattr(item, "kind", None)
            kind = own if isinstance(own, str) else _singular(f.name)
            nid = _node_id(kind, item.name)
            size = [f"{item.vcpus} vCPU · {item.memory} MiB"] if hasattr(item, "vcpus") and hasattr(item, "memory") else []
            topo.nodes.append(Node(nid, kind, [item.name, kind, *size]))
            for nic in _attachments(item):
                bridge = getattr(nic, "bridge", None)
                if bridge is None:  # routed: the lab namespace itself is the other end
                    if not any(b.id == ROUTER for b in topo.bridges):
                        topo.bridges.append(Node(ROUTER, "router", ["lab namespace", "routes"]))
                    topo.edges.append(Edge(nid, ROUTER, _nic_label(nic)))
                elif bridge in bridge_ids:
                    topo.edges.append(Edge(nid, bridge_ids[bridge], _nic_label(nic), bridge == MGMT_BRIDGE))
    topo.edges += _overlay_edges(plan, {n.label[0]: n.id for n in topo.nodes})
    topo.edges += _nat_edges(plan, topo, bridge_ids)
    return topo


def _nat_edges(plan: Plan, topo: Topology, bridge_ids: dict[str, str]) -> list[Edge]:
    """Masquerading bridges (Plan tuples of unnamed items with a bridge and an uplink): bridge → routing namespace."""
    edges: list[Edge] = []
    for f in dataclasses.fields(plan):
        items = getattr(plan, f.name)
        if f.name in _NOT_NODES or not isinstance(items, (tuple, list)):
            continue
        for item in items:
            if hasattr(item, "name") or not (getattr(item, "bridge", None) in bridge_ids and getattr(item, "uplink", None)):
                continue
            if not any(b.id == ROUTER for b in topo.bridges):
                topo.bridges.append(Node(ROUTER, "router", ["lab namespace", "routes"]))
            label = [f"{f.name}: masquerade {getattr(item, 'subnet', '')}".rstrip(), f"out of {item.uplink}" + (f" as {item.outside}" if getattr(item, "outside", None) else "")]
            edges.append(Edge(bridge_ids[item.bridge], ROUTER, label, overlay=True))
    return edges


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
    for n in topo.nodes:
        out.append(f"  {n.id} [shape={_DOT_SHAPES.get(n.kind, 'ellipse')}, label={_dot_label(n.label)}];")
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
    for n in topo.nodes:
        left, right = _MERMAID_SHAPES.get(n.kind, ("[", "]"))
        out.append(f"  {n.id}{left}{_mermaid_label(n.label)}{right}")
    for e in topo.edges:
        link = "-.-" if e.management else ("===" if e.overlay else "---")
        out.append(f"  {e.a} {link}|{_mermaid_label(e.label)}| {e.b}")
    return "\n".join(out) + "\n"
