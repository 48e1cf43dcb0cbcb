"""The topology drawing of a seat and the live state of its links, for the student's page.

The drawing is `vnetlab graph`'s (vnetlab.tools.graph), without the management network. A link is
a guest NIC's tap and the bridge port it is: its state is read from the lab namespace (netlink),
never from inside the guest, so what a student does in the guest shows as what reaches the wire:
the tap's operational state, its bridge port state (forwarding, blocking …) and the frames it
carried since the last look. Each link names its edge in the SVG (Graphviz titles an edge
"a--b"), so the page colours the drawing.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from vnetlab.backends.linux_bridge import LinkError, with_netlink
from vnetlab.plan.planner import MGMT_BRIDGE, Plan
from vnetlab.tools.graph import to_dot, to_svg, topology
from vnetlab.tools.inspect import PORT_STATES


@dataclass(frozen=True)
class Link:
    vm: str
    nic: str
    bridge: str
    tap: str
    edge: str | None  # the SVG edge's title, "a--b"


def drawing(plan: Plan) -> tuple[bytes, list[Link]]:
    """The SVG and the links it draws (data NICs of the scenario's VMs). A student's drawing names
    each guest NIC, never its planned address, MAC or tap: in an exercise those are often what the
    student must set or find (setup took the address away; a task asks whose MAC answered)."""
    topo = topology(plan, management=False)
    topo.edges = [dataclasses.replace(e, label=e.label[:1] and [e.label[0].split(" ")[0]]) for e in topo.edges]
    node_ids = {n.label[0]: n.id for n in topo.nodes if n.kind == "vm"}
    links = []
    for vm in plan.vms:
        for nic in vm.nics:
            if nic.bridge == MGMT_BRIDGE:
                continue
            vm_id = node_ids.get(vm.name)
            edge = next((e for e in topo.edges if e.a == vm_id and e.label and e.label[0].split(" ")[0] == nic.guest_name), None)
            links.append(Link(vm.name, nic.guest_name, nic.bridge, nic.tap, f"{edge.a}--{edge.b}" if edge else None))
    return to_svg(to_dot(topo)), links


def _counters(ns: str) -> dict[str, tuple[str | None, str | None, int, int]]:
    """link → (operstate, bridge port state, rx packets, tx packets) in namespace ns."""

    def op(ipr) -> dict[str, tuple[str | None, str | None, int, int]]:
        out = {}
        for link in ipr.link("dump"):
            info = link.get_attr("IFLA_LINKINFO")
            slave = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
            state = slave.get_attr("IFLA_BRPORT_STATE") if slave is not None else None
            stats = link.get_attr("IFLA_STATS64") or {}
            out[link.get_attr("IFLA_IFNAME")] = (
                link.get_attr("IFLA_OPERSTATE"),
                None if state is None else PORT_STATES.get(int(state), str(state)),
                int(stats.get("rx_packets", 0)),
                int(stats.get("tx_packets", 0)),
            )
        return out

    return with_netlink(ns, "reading the links' state", op)


class LinkWatch:
    """Reads a seat's links and tells frames per second since the previous read."""

    def __init__(self, plan: Plan, links: list[Link]) -> None:
        self.plan = plan
        self.links = links
        self._last: tuple[float, dict[str, tuple[int, int]]] | None = None

    def read(self) -> list[dict]:
        try:
            now, seen = time.monotonic(), _counters(self.plan.namespace)
        except LinkError as exc:
            return [{"vm": link.vm, "nic": link.nic, "bridge": link.bridge, "edge": link.edge, "state": "unknown", "detail": str(exc)} for link in self.links]
        before = self._last
        self._last = (now, {name: (rx, tx) for name, (_, _, rx, tx) in seen.items()})
        rows = []
        for link in self.links:
            oper, port, rx, tx = seen.get(link.tap, (None, None, 0, 0))
            rate = None
            if before is not None and link.tap in before[1] and now > before[0]:
                old_rx, old_tx = before[1][link.tap]
                rate = round(((rx - old_rx) + (tx - old_tx)) / (now - before[0]), 1)
            up = oper in ("UP", "UNKNOWN") and port in (None, "forwarding")
            state = "missing" if link.tap not in seen else ("up" if up else "down")
            detail = f"tap {(oper or '?').lower()}" + (f", port {port}" if port else "")
            rows.append({"vm": link.vm, "nic": link.nic, "bridge": link.bridge, "edge": link.edge, "state": state, "detail": detail, "frames_per_s": rate})
        return rows
