"""The topology drawing: DOT and Mermaid text from a plan, and new node kinds appearing by themselves."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from vnetlab.tools.graph import to_dot, to_mermaid, to_svg, topology
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.paths import scenario_files
from vnetlab.features.base import Feature
from vnetlab.plan.planner import Plan, PlannedNode, make_plan

SCENARIO = """\
name: two-vm-ping
description: test
bridges:
  - {name: br0, subnet: 10.1.1.0/24}
  - {name: br-x}
vms:
  - name: vm1
    nics: [{bridge: br0, address: 10.1.1.2/24}, {bridge: br-x}]
  - name: vm2
    nics: [{bridge: br0, address: 10.1.1.3/24}]
"""


@pytest.fixture
def plan() -> Plan:
    return make_plan(parse_scenario(SCENARIO, "t.yaml"), "demo")


def test_dot_has_bridges_in_the_namespace_vms_and_one_edge_per_nic(plan):
    dot = to_dot(topology(plan))
    assert dot.startswith('graph "two-vm-ping (lab demo)" {')
    cluster = dot.split("subgraph cluster_namespace {")[1].split("  }")[0]
    assert 'label="namespace vnl-demo"' in cluster
    assert 'bridge_br0 [shape=box, style="rounded,filled", fillcolor="#dbe9f6", label="br0\\nlinux · 10.1.1.0/24"];' in cluster
    assert "bridge_br_x" in cluster and "bridge_vnl_mgmt" in cluster
    assert 'vm_vm1 [shape=box3d, label="vm1\\nvm\\ntiny · 1 vCPU · 128 MiB"];' in dot
    vm1 = plan.vm("vm1")
    assert f'vm_vm1 -- bridge_br0 [label="eth0 10.1.1.2/24\\ntap {vm1.nics[0].tap} · {vm1.nics[0].mac}"];' in dot
    assert f'vm_vm1 -- bridge_br_x [label="eth1\\ntap {vm1.nics[1].tap} · {vm1.nics[1].mac}"];' in dot
    assert dot.count(" -- ") == 5  # 3 data NICs + 2 management NICs
    assert dot.count("style=dashed, color=gray50];") == 2  # the management links


def test_management_can_be_left_out(plan):
    dot = to_dot(topology(plan, management=False))
    assert "vnl_mgmt" not in dot and "mgmt0" not in dot and dot.count(" -- ") == 3


def test_mermaid_text(plan):
    text = to_mermaid(topology(plan))
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  subgraph ns["namespace vnl-demo"]' in lines
    assert '    bridge_br0[["br0<br/>linux · 10.1.1.0/24"]]' in lines
    assert '  vm_vm2("vm2<br/>vm<br/>tiny · 1 vCPU · 128 MiB")' in lines
    tap = plan.vm("vm2").nics[0]
    assert f'  vm_vm2 ---|"eth0 10.1.1.3/24<br/>tap {tap.tap} · {tap.mac}"| bridge_br0' in lines
    assert sum(" -.-|" in line for line in lines) == 2  # management links are dotted


def test_quotes_in_labels_are_escaped(plan):
    topo = topology(plan)
    topo.title = 'a "quoted" lab'
    assert 'graph "a \\"quoted\\" lab" {' in to_dot(topo)
    topo.bridges[1].label[0] = 'b"r'
    assert '[["b#quot;r<br/>' in to_mermaid(topo)


def _with_nodes(plan: Plan, *nodes: PlannedNode) -> Plan:
    return dataclasses.replace(plan, nodes=(*plan.nodes, *nodes))


def test_a_new_node_kind_in_the_plan_shows_up(plan):
    """Namespace nodes of any kind a feature adds are drawn by their kind, wired to their bridge or the lab namespace."""
    wan = PlannedNode("wan", "uplink", "ns-wan", "02:00:00:00:00:01", "192.0.2.2/24", "vnlup0", "02:00:00:00:00:02", "br0", None, None)
    isp = PlannedNode("isp", "uplink", "ns-isp", "02:00:00:00:00:03", "192.0.2.2/24", "vnlup0", "02:00:00:00:00:04", None, "192.0.2.1/24", None)
    box = PlannedNode("c1", "container", "ns-c1", "02:00:00:00:00:05", "10.9.0.2/24", "ve-c1", "02:00:00:00:00:06", "br-x", None, None)
    topo = topology(_with_nodes(plan, wan, isp, box))
    assert {n.id: n.kind for n in topo.nodes if n.kind != "vm"} == {"uplink_wan": "uplink", "uplink_isp": "uplink", "container_c1": "container"}
    dot = to_dot(topo)
    assert 'uplink_wan [shape=ellipse, label="wan\\nuplink"];' in dot
    assert 'uplink_wan -- bridge_br0 [label="eth0 192.0.2.2/24\\nveth vnlup0 · 02:00:00:00:00:01"];' in dot
    assert 'container_c1 [shape=component, label="c1\\ncontainer"];' in dot
    # a routed uplink ends in the lab namespace itself
    assert 'namespace_router [shape=box' in dot and 'uplink_isp -- namespace_router [label="eth0 192.0.2.2/24\\nveth vnlup0 · lab side 192.0.2.1/24 · 02:00:00:00:00:03"];' in dot
    assert '  uplink_wan ---|"eth0 192.0.2.2/24<br/>veth vnlup0 · 02:00:00:00:00:01"| bridge_br0' in to_mermaid(topo)


class _Tunnels(Feature):
    """A feature that draws one overlay edge, as WireGuard does."""

    name = "tunnels"

    def graph(self, plan, drawing):
        drawing.edge(drawing.node_ids["vm1"], drawing.node_ids["vm2"], ["tunnels wg0", "192.168.2.1/24 ↔ 192.168.2.2/24"], overlay=True)


def test_a_feature_draws_its_own_edges(plan):
    topo = topology(dataclasses.replace(plan, features=(*plan.features, _Tunnels())))
    dot = to_dot(topo)
    assert dot.count("vm_vm1 -- vm_vm2") == 1
    assert 'vm_vm1 -- vm_vm2 [label="tunnels wg0\\n192.168.2.1/24 ↔ 192.168.2.2/24", style=bold' in dot
    assert '  vm_vm1 ===|"tunnels wg0<br/>192.168.2.1/24 ↔ 192.168.2.2/24"| vm_vm2' in to_mermaid(topo)


def test_wireguard_tunnels_are_drawn_once_per_pair():
    dot = to_dot(topology(make_plan(load_scenario(scenario_files()[0].parent / "wireguard-vpn.yaml"), "demo")))
    assert dot.count("vm_vm1 -- vm_vm2") == 1
    assert 'vm_vm1 -- vm_vm2 [label="wireguard wg0\\n192.168.2.1/24 ↔ 192.168.2.2/24", style=bold' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_svg_renders(plan):
    svg = to_svg(to_dot(topology(plan))).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "vm1" in svg and "br0" in svg


def test_cli_graph_of_a_scenario_without_touching_the_system(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "g.mmd"
    result = subprocess.run([sys.executable, "-m", "vnetlab", "graph", "two-vm-ping", "--format", "mermaid", "--no-management", "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("flowchart LR") and "vnl_mgmt" not in text and text.count(" ---|") == 2
    assert "wrote" in result.stderr and "2 link(s)" in result.stderr


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_every_shipped_scenario_is_drawn_with_all_its_nodes(path):
    plan = make_plan(load_scenario(path), "demo")
    topo = topology(plan)
    drawn = {n.label[0] for n in topo.nodes}
    assert {v.name for v in plan.vms if v.role == "vm"} | {n.name for n in getattr(plan, "nodes", ())} <= drawn
    switch_guests = [b for b in plan.bridges if b.guest]  # drawn as their bridge, labelled with the guest
    assert all(any(n.label[0] == b.name and f"in switch guest {b.guest}" in n.label for n in topo.bridges) for b in switch_guests)
    linked = {e.a for e in topo.edges}
    assert all(n.id in linked for n in topo.nodes), "every node is wired to something"
    assert to_mermaid(topo).startswith("flowchart LR") and to_dot(topo).endswith("}\n")


def test_a_masquerading_bridge_is_drawn_to_the_routing_namespace():
    topo = topology(make_plan(load_scenario(scenario_files()[0].parent / "container-bridge-nat.yaml"), "demo"))
    assert [b.id for b in topo.bridges].count("namespace_router") == 1
    assert '  bridge_br0 ===|"nat: masquerade 10.2.0.0/24<br/>out of eth0 as 203.0.113.1"| namespace_router' in to_mermaid(topo)
