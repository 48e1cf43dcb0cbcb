"""Link impairment per guest NIC (`netem:`): delay, jitter, loss and rate on the frames a NIC sends.

    nics:
      - {bridge: br0, address: 10.1.1.2/24, netem: {delay: 40ms, jitter: 5ms, loss: 1%, rate: 20mbit}}

Where it runs, by the kernel probe: on the host when its kernel has the netem qdisc, ifb devices
and the mirred action — the frames a NIC sends arrive on its tap's ingress, which is redirected to
an ifb device carrying the netem qdisc (backends/host_netem.py) — else inside the guest, as a netem
qdisc at the root of that NIC (`tc qdisc add dev eth0 root netem …`; the tiny image carries
iproute2's tc and the sch_netem module, the debian kind has both). This machine's kernel (and
CI's) has ifb and mirred but no netem, so its labs impair inside the guests; the run says where and
why (a plan note). `vnetlab netem LAB VM NIC` changes or clears it on a running lab and prints
the qdisc read back; `inspect` reads it back too. Ping checks can then assert the round-trip time
and the loss they measured (`rtt-min-ms`, `rtt-max-ms`, `loss-max`).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnetlab.backends import host_netem
from vnetlab.backends.linux_bridge import delete_link, link_exists
from vnetlab.backends.netns import namespace_exists
from vnetlab.backends.ssh import GuestSSH
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules
from vnetlab.plan.planner import Plan, PlanContext, PlanPart, Resource
from vnetlab.run.configure import open_ssh
from vnetlab.tools.explain import Section, guest_line, sh
from vnetlab.tools.inspect import InspectRow

if TYPE_CHECKING:
    from vnetlab.run.apply import ApplyContext
    from vnetlab.run.state import LabState, RecordedResource
from vnetlab.tools.netem import Netem, tc_rate, apply_in_guest, apply_script, netem_problems, parse_netem, read_back

HOST_NEEDS = {  # kernel-probe key → what the host path needs of the host kernel
    "netem": "the netem qdisc (CONFIG_NET_SCH_NETEM)",
    "ifb": "ifb devices (CONFIG_IFB)",
    "mirred": "the mirred action (CONFIG_NET_ACT_MIRRED)",
}


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
class NicNetem:
    vm: str
    nic: str  # the interface name inside the guest
    netem: Netem
    tap: str = ""
    ifb: str | None = None  # on the host: the ifb device the tap's ingress is redirected to; None: inside the guest

    @property
    def where(self) -> str:
        return "host" if self.ifb else "guest"


@dataclass(frozen=True)
class NetemPart:
    links: tuple[NicNetem, ...]
    why: str  # why it runs where it does


def ifb_name(index: int) -> str:
    """'_' is in no scenario name: no bridge or node of the lab namespace is called so."""
    return f"nq_{index}"


def plan_netem(ctx: PlanContext) -> tuple[NetemPart, tuple[str, ...]] | None:
    lacking = [words for key, words in HOST_NEEDS.items() if key not in ctx.host_kernel]
    links = []
    for _i, j, vm, nic in _nics(ctx.scenario):
        n = nic.netem
        tap = next(p for p in ctx.vms if p.name == vm.name).nics[j].tap
        links.append(NicNetem(vm.name, vm.nic_name(j), parse_netem(n.delay, n.jitter, n.loss, n.rate), tap, None if lacking else ifb_name(len(links))))
    if not links:
        return None
    which = ", ".join(f"{link.vm} {link.nic}" for link in links)
    if lacking:
        why = f"this host's kernel lacks {', '.join(lacking)}"
        note = f"netem ({which}) runs inside the guests: {why}"
    else:
        why = "the host kernel has the netem qdisc, ifb devices and the mirred action"
        note = f"netem ({which}) runs on the host: each tap's ingress is redirected to an ifb device with the netem qdisc"
    return NetemPart(tuple(links), why), (note,)


def _part(plan: Plan) -> NetemPart | None:
    return plan.part("netem")


def _links(plan: Plan, where: str) -> list[NicNetem]:
    part = _part(plan)
    return [link for link in part.links if link.where == where] if part else []


def _by_vm(links: list[NicNetem]) -> dict[str, list[NicNetem]]:
    by_vm: dict[str, list[NicNetem]] = {}
    for link in links:
        by_vm.setdefault(link.vm, []).append(link)
    return by_vm


# -- apply and configure, and reading it back --------------------------------------------------


def create_ifbs(plan: Plan, ctx: ApplyContext) -> None:
    for link in _links(plan, "host"):
        ctx.record("ifb", link.ifb)
        host_netem.create_ifb(plan.namespace, link.ifb)


def remove_ifb(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    if namespace_exists(state.namespace) and link_exists(state.namespace, resource.name):
        delete_link(state.namespace, resource.name)


def configure_links(plan: Plan, sessions: dict[str, GuestSSH]) -> None:
    for link in _links(plan, "host"):
        host_netem.impair(plan.namespace, link.tap, link.ifb, link.netem)
    by_vm = _by_vm(_links(plan, "guest"))

    def one(vm: str) -> None:
        for link in by_vm[vm]:
            apply_in_guest(sessions[vm], vm, link.nic, link.netem)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(by_vm))) as pool:
        for future in [pool.submit(one, vm) for vm in by_vm]:
            future.result()


def inspect_rows(plan: Plan) -> list[InspectRow]:
    rows = []
    for link in _links(plan, "host"):
        label = f"netem on {link.vm} {link.nic} (host: tap {link.tap} → {link.ifb})"
        try:
            line = host_netem.read_netem(plan.namespace, link.ifb) if namespace_exists(plan.namespace) else None
        except VnetlabError as exc:
            rows.append(InspectRow(label, link.netem.describe(), "unknown", [str(exc)]))
            continue
        rows.append(InspectRow(label, link.netem.describe(), line or "no netem qdisc", [] if line else [f"{link.ifb} has no netem qdisc"]))
    for vm, links in _by_vm(_links(plan, "guest")).items():
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


def host_lines(plan: Plan, link: NicNetem) -> list[str]:
    ns, tap, ifb, n = plan.namespace, link.tap, link.ifb, link.netem
    netem = n.tc_args(rate=False)
    lines = [
        f"{sh('ip', '-n', ns, 'link', 'add', ifb, 'type', 'ifb')} && {sh('ip', '-n', ns, 'link', 'set', ifb, 'up')}",
        f"{sh('tc', '-n', ns, 'qdisc', 'add', 'dev', tap, 'ingress')}    # {link.vm} {link.nic}: the frames it sends arrive here",
        sh("tc", "-n", ns, "filter", "add", "dev", tap, "parent", "ffff:", "protocol", "all", "prio", "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb),
        sh("tc", "-n", ns, "qdisc", "add", "dev", ifb, "root", "handle", "1:", "netem", *netem),
    ]
    if n.rate_bits is not None:
        lines.append(sh("tc", "-n", ns, "qdisc", "add", "dev", ifb, "parent", "1:", "handle", "2:", "tbf", "rate", tc_rate(n.rate_bits), "burst", host_netem.tbf_burst(n.rate_bits), "latency", f"{host_netem.TBF_LATENCY_US // 1000}ms"))
    return lines


def explain_sections(plan: Plan) -> list[Section]:
    part = _part(plan)
    if not part:
        return []
    sections = []
    if host := _links(plan, "host"):
        sections.append(Section(f"Link impairment (netem) on the host ({part.why})", tuple(line for link in host for line in host_lines(plan, link)), stage="configure"))
    if guest := _links(plan, "guest"):
        sections.append(Section(f"Link impairment (netem) inside the guests ({part.why})", tuple(guest_line(link.vm, apply_script(link.nic, link.netem)) for link in guest), stage="configure"))
    return sections


class NetemFeature(Feature):
    name = "netem"
    model = MODEL

    removers = {"ifb": remove_ifb}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        planned = plan_netem(ctx)
        if planned is None:
            return None
        part, notes = planned
        return PlanPart(data=part, notes=notes, resources=tuple(Resource("ifb", link.ifb) for link in part.links if link.ifb))

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part:
            return {}
        return {"netem": [
            {"vm": link.vm, "nic": link.nic, "netem": link.netem.describe(), "where": link.where,
             **({"ifb": link.ifb, "tc": host_lines(plan, link)} if link.ifb else {"tc": apply_script(link.nic, link.netem)})}
            for link in part.links
        ]}

    def apply(self, plan: Plan, ctx: ApplyContext) -> None:
        create_ifbs(plan, ctx)

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        if not part:
            return None
        where = "on the host taps" if part.links[0].ifb else "inside the guests"
        return f"netem {where}: " + "; ".join(f"{link.vm} {link.nic} {link.netem.describe()}" for link in part.links)

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        configure_links(plan, sessions)

    def explain(self, plan: Plan) -> list[Section]:
        return explain_sections(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        """Each impaired guest NIC's edge says how."""
        for link in _part(plan).links if _part(plan) else ():
            edge = drawing.nic_edge(link.vm, link.nic)
            if edge is not None:
                edge.label.append(f"netem {link.netem.describe()}")

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)
