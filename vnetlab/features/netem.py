"""Link impairment per guest NIC (`netem:`): delay, jitter, loss and rate on the frames a NIC sends.

    nics:
      - {bridge: br0, address: 10.1.1.2/24, netem: {delay: 40ms, jitter: 5ms, loss: 1%, rate: 20mbit}}

Where it runs: inside the guest, as a netem qdisc at the root of that NIC (`tc qdisc replace dev
eth0 root netem …`); the tiny image carries iproute2's tc and the sch_netem module, the debian kind
has both. The host-side place for "the frames this NIC sends" would be the ingress of its tap,
which needs the netem qdisc and an ifb device; this machine's kernel (and CI's) has neither (`vnetlab
doctor` shows the probe), so the guest is the one place that works on every host, and the run's
progress line says so. `vnetlab netem LAB VM NIC` changes or clears it on a running lab and prints
the qdisc read back; `inspect` reads it back too. Ping checks can then assert the round-trip time
and the loss they measured (`rtt-min-ms`, `rtt-max-ms`, `loss-max`).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab.backends.ssh import GuestSSH
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.run.configure import open_ssh
from vnetlab.tools.explain import Section, guest_line
from vnetlab.tools.inspect import InspectRow
from vnetlab.tools.netem import Netem, apply_in_guest, apply_script, netem_problems, parse_netem, read_back

WHERE = "inside the guest (this host kernel has no netem qdisc for its taps)"


@dataclass(frozen=True)
class NetemSpec:
    """Impairment of the frames this NIC sends (a netem qdisc on it inside the guest)."""

    delay: str | None = spec("added delay, e.g. 40ms, 1.5s, 500us (at most 60s)", default=None, max_length=20)
    jitter: str | None = spec("random variation of the delay, e.g. 5ms (needs delay)", default=None, max_length=20)
    loss: str | None = spec("share of frames dropped, e.g. 10% (0% to 100%)", default=None, max_length=20)
    rate: str | None = spec("rate limit, e.g. 20mbit, 512kbit, 1gbit (8kbit to 10gbit)", default=None, max_length=20)


def _nics(scenario: Any) -> Iterator[tuple[int, int, Any, Any]]:
    for i, vm in enumerate(scenario.vms):
        for j, nic in enumerate(vm.nics):
            if nic.netem is not None:
                yield i, j, vm, nic


def _validate(rules: Rules) -> None:
    for i, j, _vm, nic in _nics(rules.scenario):
        n = nic.netem
        for problem in netem_problems(n.delay, n.jitter, n.loss, n.rate):
            rules.add(f"vms[{i}].nics[{j}].netem" + (f".{problem.field}" if problem.field else ""), problem.detail)


MODEL = ModelExtension(
    nic_fields=(decl("netem", NetemSpec | None, spec("impair the frames this NIC sends: delay, jitter, loss, rate (netem, inside the guest)", default=None)),),
    validate=_validate,
)


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestNetem:
    vm: str
    nic: str  # the interface name inside the guest
    netem: Netem


@dataclass(frozen=True)
class NetemPart:
    links: tuple[GuestNetem, ...]


def plan_netem(ctx: PlanContext) -> NetemPart | None:
    links = []
    for _i, j, vm, nic in _nics(ctx.scenario):
        n = nic.netem
        links.append(GuestNetem(vm.name, vm.nic_name(j), parse_netem(n.delay, n.jitter, n.loss, n.rate)))
    return NetemPart(tuple(links)) if links else None


def _part(plan: Plan) -> NetemPart | None:
    return plan.part("netem")


def _by_vm(part: NetemPart | None) -> dict[str, list[GuestNetem]]:
    by_vm: dict[str, list[GuestNetem]] = {}
    for link in part.links if part else ():
        by_vm.setdefault(link.vm, []).append(link)
    return by_vm


# -- configure, and reading it back ------------------------------------------------------------


def configure_guests(plan: Plan, sessions: dict[str, GuestSSH]) -> None:
    by_vm = _by_vm(_part(plan))

    def one(vm: str) -> None:
        for link in by_vm[vm]:
            apply_in_guest(sessions[vm], vm, link.nic, link.netem)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(by_vm))) as pool:
        for future in [pool.submit(one, vm) for vm in by_vm]:
            future.result()


def inspect_rows(plan: Plan) -> list[InspectRow]:
    rows = []
    for vm, links in _by_vm(_part(plan)).items():
        try:
            ssh = open_ssh(plan, plan.vm(vm), time.monotonic() + 10.0)
        except VnetlabError as exc:
            rows += [InspectRow(f"netem on {vm} {link.nic}", link.netem.describe(), "unknown", [f"cannot reach {vm}: {exc}"]) for link in links]
            continue
        try:
            for link in links:
                line = read_back(ssh, link.nic)
                rows.append(InspectRow(f"netem on {vm} {link.nic}", link.netem.describe(), line or "no netem qdisc", [] if line else [f"{vm} {link.nic} has no netem qdisc"]))
        finally:
            ssh.close()
    return rows


def explain_lines(plan: Plan) -> list[str]:
    return [guest_line(link.vm, apply_script(link.nic, link.netem)) for link in (_part(plan).links if _part(plan) else ())]


class NetemFeature(Feature):
    name = "netem"
    model = MODEL

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_netem(ctx)
        return PlanPart(data=part) if part else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        return {"netem": [{"vm": link.vm, "nic": link.nic, "netem": link.netem.describe(), "where": "guest", "tc": apply_script(link.nic, link.netem)} for link in part.links]}

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        if not part:
            return None
        return "netem " + WHERE + ": " + "; ".join(f"{link.vm} {link.nic} {link.netem.describe()}" for link in part.links)

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        configure_guests(plan, sessions)

    def explain(self, plan: Plan) -> list[Section]:
        lines = explain_lines(plan)
        return [Section("Link impairment (netem) inside the guests: the host kernel has no netem qdisc", tuple(lines), stage="configure")] if lines else []

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each impaired guest NIC's edge says how."""
        for link in _part(plan).links if _part(plan) else ():
            vm_id = drawing.node_ids.get(link.vm)
            edge = next((e for e in drawing.topo.edges if e.a == vm_id and e.label and e.label[0].split(" ")[0] == link.nic), None)
            if edge is not None:
                edge.label.append(f"netem {link.netem.describe()}")

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)
