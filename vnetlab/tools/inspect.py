"""`vnetlab inspect`: the chain a running lab really has, read from the live system.

For every vNIC: libvirt domain → qemu PID → the /dev/net/tun file descriptor it holds
(/proc/<pid>/fd, and /proc/<pid>/fdinfo whose `iff:` line names the tap) → the tap in the
lab namespace (netlink) → its bridge, port and link state → the guest interface with that
MAC and its addresses (over SSH). The plan only says what *should* be; each link of the
chain that differs from it, or is missing, is reported as a problem.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import libvirt

from vnetlab.backends import libvirt_domains as hv
from vnetlab.run.connections import Connections
from vnetlab.backends import netns
from vnetlab.backends import linux_bridge
from vnetlab.backends.linux_bridge import list_links
from vnetlab.backends.ssh import SSHError
from vnetlab.backends.warm_image import KIND, WARM_IMAGE_ATTRIBUTE
from vnetlab.checks.parse import guest_links
from vnetlab.model.scenario import ScenarioModel
from vnetlab.paths import Layout
from vnetlab.plan.planner import METADATA_NS, Plan, PlannedNic, PlannedVM
from vnetlab.run.configure import open_ssh
from vnetlab.run.lab import running_plan

TUN_DEVICE = "/dev/net/tun"
GUEST_SSH_TIMEOUT = 8.0
# IFLA_BRPORT_STATE values, <linux/if_bridge.h>
PORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}
_DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


@dataclass
class NicChain:
    guest_name: str
    mac: str
    tap: str
    bridge_planned: str
    address_planned: str | None
    in_domain_xml: bool = False
    tun_fd: int | None = None
    tap_state: str | None = None  # administrative up/down, in the lab namespace
    tap_oper: str | None = None  # operstate (UP once qemu has the queue open and the link is up)
    bridge: str | None = None  # the bridge the tap is really a port of
    bridge_state: str | None = None
    port_state: str | None = None  # STP port state: forwarding, …
    guest_iface: str | None = None
    guest_state: str | None = None
    guest_addresses: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class VMChain:
    name: str
    domain: str
    state: str
    pid: int | None
    nics: list[NicChain]
    problems: list[str] = field(default_factory=list)
    host: str | None = None  # the hypervisor it runs on when not this machine (its qemu PID and fds are not read from here)
    start: str | None = None  # "warm (warm-<key>)": restored from that warm image; "cold": booted (from its live XML)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(n.problems for n in self.nics)


@dataclass
class InspectRow:
    """One thing a feature checks on the live lab (a container's namespace and veth, …)."""

    what: str
    planned: str
    state: str
    problems: list[str] = field(default_factory=list)


@dataclass
class LabInspection:
    lab: str
    scenario: str
    namespace: str
    namespace_present: bool
    bridges: list[dict]
    vms: list[VMChain]
    others: list[InspectRow] = field(default_factory=list)  # from the features' inspect hooks

    @property
    def ok(self) -> bool:
        return self.namespace_present and all(v.ok for v in self.vms) and not any(b["problems"] for b in self.bridges) and not any(r.problems for r in self.others)

    def to_json(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        for vm, data in zip(self.vms, out["vms"]):
            data["ok"] = vm.ok
        return out


def tun_fds(pid: int) -> dict[str, int]:
    """tap name → fd number, for every /dev/net/tun file descriptor process `pid` holds."""
    found: dict[str, int] = {}
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            if os.readlink(entry) != TUN_DEVICE:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{entry.name}").read_text()
        except OSError:  # closed meanwhile
            continue
        match = re.search(r"^iff:\s*(\S+)", info, re.MULTILINE)
        if match:
            found[match[1]] = int(entry.name)
    return found


def _port_details(ns: str) -> dict[str, tuple[str | None, str | None]]:
    """port → (operstate, bridge port state) in namespace ns; list_links has the rest."""
    return {name: (oper, PORT_STATES.get(state, str(state)) if state is not None else None) for name, _, state, oper in linux_bridge.port_states(ns)}


def _domain_xml(dom: libvirt.virDomain) -> ET.Element:
    return ET.fromstring(hv.bounded(f"XML of {dom.name()}", lambda: dom.XMLDesc(0)))


def _start_of(root: ET.Element) -> str:
    """How the guest started, from the metadata of its live XML: restored from a warm image, or booted."""
    lab = root.find(f"metadata/{{{METADATA_NS}}}lab")
    warm = lab.get(WARM_IMAGE_ATTRIBUTE) if lab is not None else None
    return f"warm ({KIND}-{warm})" if warm else "cold"


def _domain_macs(root: ET.Element) -> dict[str, str]:
    """MAC → tap (target dev) from the domain's live XML."""
    out: dict[str, str] = {}
    for iface in root.iter("interface"):
        mac, target = iface.find("mac"), iface.find("target")
        if mac is not None and target is not None:
            out[(mac.get("address") or "").lower()] = target.get("dev") or ""
    return out


def parse_guest_ip(link_text: str, addr_text: str) -> dict[str, tuple[str, str, list[str]]]:
    """MAC → (interface, up|down, addresses) from a guest's `ip -o link` and `ip -o addr` (hostile text: bounded)."""
    return guest_links(link_text, addr_text)


def _guest_view(plan: Plan, vm: PlannedVM) -> tuple[dict[str, tuple[str, str, list[str]]] | None, str | None]:
    try:
        with open_ssh(plan, vm, time.monotonic() + GUEST_SSH_TIMEOUT) as ssh:
            result = ssh.run("ip -o link; echo ---; ip -o addr", timeout=GUEST_SSH_TIMEOUT)
    except (SSHError, OSError) as exc:
        return None, f"guest not reachable over SSH: {exc}"
    link_text, _, addr_text = result.stdout.partition("---")
    return parse_guest_ip(link_text, addr_text), None


def _inspect_nic(nic: PlannedNic, macs: dict[str, str], fds: dict[str, int] | None, links: dict[str, dict], ports: dict, guest: dict | None) -> NicChain:
    """fds: the tun fds its qemu holds (None: qemu runs on another hypervisor, not read from here)."""
    c = NicChain(nic.guest_name, nic.mac, nic.tap, nic.port_of, nic.cidr)
    c.in_domain_xml = macs.get(nic.mac) == nic.tap
    if not c.in_domain_xml:
        c.problems.append(f"the live domain XML has no interface {nic.mac} on tap {nic.tap}" + (f" (it names {macs[nic.mac]!r})" if nic.mac in macs else ""))
    c.tun_fd = fds.get(nic.tap) if fds is not None else None
    if fds is not None and c.tun_fd is None:
        c.problems.append(f"qemu holds no /dev/net/tun fd attached to {nic.tap} (missing fd)")
    link = links.get(nic.tap)
    if link is None:
        c.problems.append(f"tap {nic.tap} is not in its lab namespace")
    else:
        c.tap_state, c.bridge = link["state"], link["master"]
        c.tap_oper, c.port_state = ports.get(nic.tap, (None, None))
        if c.bridge is None:
            c.problems.append(f"tap {nic.tap} is detached: it is a port of no bridge (planned: {nic.port_of})")
        elif c.bridge != nic.port_of:
            c.problems.append(f"tap {nic.tap} is a port of {c.bridge}, planned {nic.port_of}")
        else:
            c.bridge_state = links[c.bridge]["state"] if c.bridge in links else None
            if c.bridge_state != "up":
                c.problems.append(f"bridge {c.bridge} is {c.bridge_state}")
            if c.port_state not in (None, "forwarding"):
                c.problems.append(f"bridge port {nic.tap} is {c.port_state}, not forwarding")
        if c.tap_state != "up":
            c.problems.append(f"tap {nic.tap} is administratively down")
    if guest is not None:
        seen = guest.get(nic.mac)
        if seen is None:
            c.problems.append(f"the guest has no interface with MAC {nic.mac}")
        else:
            c.guest_iface, c.guest_state, c.guest_addresses = seen
            if c.guest_state != "up":
                c.problems.append(f"guest interface {c.guest_iface} is down")
            for cidr in (nic.cidr, nic.cidr6):
                if cidr and not any(_same_address(cidr, held) for held in c.guest_addresses):
                    c.problems.append(f"guest interface {c.guest_iface} lacks {cidr} (has {', '.join(c.guest_addresses) or 'none'})")
    return c


def _same_address(planned: str, held: str) -> bool:
    """The guest spells an IPv6 address its own way (leading zeros, `::`): compared as addresses."""
    try:
        return ipaddress.ip_interface(planned) == ipaddress.ip_interface(held)
    except ValueError:
        return planned == held


def inspect_lab(lab: str, model: ScenarioModel, *, guests: bool = True, layout: Layout | None = None) -> LabInspection:
    plan = running_plan(lab, model, layout)
    present = netns.namespace_exists(plan.namespace)
    links: dict[str, dict] = {link["name"]: link for link in list_links(plan.namespace)} if present else {}
    ports = _port_details(plan.namespace) if present else {}
    bridges = []
    for br in plan.bridges:
        if br.guest is not None:  # nothing of it on the host: its feature's rows read it from the switch guest
            continue
        link = links.get(br.name)
        problems = [] if link and link["state"] == "up" else [f"bridge {br.name} is " + ("missing" if link is None else link["state"])]
        ports_of = sorted(name for name, li in links.items() if li["master"] == br.name)
        bridges.append({"name": br.name, "type": br.type, "state": link["state"] if link else None, "addresses": link["addresses"] if link else [], "ports": ports_of, "problems": problems})
    vms: list[VMChain] = []
    connections = Connections()
    try:
        for vm in plan.vms:
            foreign = None
            # On another hypervisor its qemu and taps are there: its feature reads the taps' links.
            elsewhere = next((found for f in plan.features if (found := f.links_of(plan, vm)) is not None), None) if vm.host else None
            try:
                dom = hv.lookup_of_lab(connections.get(vm.uri), vm.domain, lab, METADATA_NS)  # a same-named domain of another lab is not this guest
            except hv.ForeignDomain as exc:
                dom, foreign = None, exc
            state = ("not this lab's" if foreign else "missing") if dom is None else _DOMAIN_STATES.get(hv.bounded(f"state of {vm.domain}", dom.state)[0], "unknown")
            pid = hv.qemu_pid(vm.domain) if dom is not None and vm.host is None else None
            chain = VMChain(vm.name, vm.domain, state, pid, [], host=vm.host)
            if foreign is not None:
                chain.problems.append(str(foreign))
            elif dom is None:
                chain.problems.append(f"libvirt has no domain {vm.domain}")
            elif state != "running":
                chain.problems.append(f"domain {vm.domain} is {state}")
            if dom is not None and pid is None and vm.host is None:
                chain.problems.append(f"no qemu process for {vm.domain} (pid file missing or process gone)")
            guest, why = _guest_view(plan, vm) if guests and state == "running" else (None, None)
            if why:
                chain.problems.append(why)
            live = _domain_xml(dom) if dom is not None else None
            macs = _domain_macs(live) if live is not None else {}
            chain.start = _start_of(live) if live is not None else None
            fds = (tun_fds(pid) if pid is not None else {}) if vm.host is None else None
            chain.nics = [_inspect_nic(n, macs, fds, links if elsewhere is None else elsewhere, ports if elsewhere is None else {}, guest) for n in vm.all_nics]
            vms.append(chain)
    finally:
        connections.close()
    others = [row for feature in plan.features for row in feature.inspect(plan)]
    return LabInspection(lab, plan.scenario.name, plan.namespace, present, bridges, vms, others)
