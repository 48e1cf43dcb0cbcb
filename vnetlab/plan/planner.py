"""Plan a lab: a pure function of (scenario, lab name, options).

Everything that can be decided without touching the system is decided here —
names, MACs, management addresses, rendered domain XML and the ordered list of
resources — so it can be pinned by golden files and reviewed before `apply`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from vnetlab.backends.image import kernel_cmdline
from vnetlab.model.scenario import Bridge, Scenario
from vnetlab.features.nat import PlannedNat, plan_nat
from vnetlab.features.containers import PlannedNode, plan_nodes
from vnetlab.paths import TEMPLATES_DIR, Layout
from vnetlab.features.wireguard import WgInterface, plan_wireguard

METADATA_NS = "https://vnetlab.dev/xmlns/lab/1"
MGMT_BRIDGE = "vnl-mgmt"
LAB_NAME_MAX = 24
LAB_NAME = rf"[a-z][a-z0-9-]{{0,{LAB_NAME_MAX - 1}}}"


@dataclass(frozen=True)
class PlanOptions:
    """Inputs that are not in the scenario but shape the plan."""

    domain_type: str = "qemu"  # libvirt domain type: "kvm" or "qemu" (TCG)
    kernel: Path = Path("/var/lib/vnetlab/images/current/vmlinux")
    layout: Layout = field(default_factory=Layout)


@dataclass(frozen=True)
class PlannedNic:
    vm: str
    guest_name: str  # interface name inside the guest
    bridge: str  # bridge inside the lab namespace
    tap: str  # host-side tap name (created in the root namespace, moved into the lab's)
    mac: str
    cidr: str | None  # address with prefix, None for an unaddressed NIC

    @property
    def ip(self) -> str | None:
        return self.cidr.split("/")[0] if self.cidr else None


@dataclass(frozen=True)
class PlannedVM:
    name: str
    domain: str
    memory: int
    vcpus: int
    mgmt: PlannedNic
    nics: tuple[PlannedNic, ...]
    initrd: Path
    console_log: Path
    cmdline: str
    xml: str = ""

    @property
    def all_nics(self) -> tuple[PlannedNic, ...]:
        return (self.mgmt, *self.nics)

    def nic_on(self, bridge: str) -> PlannedNic | None:
        return next((n for n in self.nics if n.bridge == bridge), None)


@dataclass(frozen=True)
class PlannedBridge:
    name: str
    type: str
    mac: str
    cidr: str | None = None  # the management bridge, and bridges with a gateway, carry an address (inside the namespace)
    capture_port: str | None = None  # OVS: internal port that mirrors every frame of the bridge (captures listen there)

    @property
    def capture_iface(self) -> str:
        return self.capture_port or self.name


@dataclass(frozen=True)
class Resource:
    """One thing apply creates and teardown removes, in creation order."""

    kind: str  # namespace | bridge | process | ovs-bridge | veth | tap | domain
    name: str
    vm: str | None = None


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    lab: str
    namespace: str
    domain_type: str
    lab_dir: Path
    kernel: Path
    mgmt_gateway: str
    bridges: tuple[PlannedBridge, ...]
    vms: tuple[PlannedVM, ...]
    resources: tuple[Resource, ...]
    wireguard: tuple[WgInterface, ...] = ()
    nodes: tuple[PlannedNode, ...] = ()  # containers and outside hosts: namespaces joined by veths
    nat: tuple[PlannedNat, ...] = ()

    def vm(self, name: str) -> PlannedVM:
        return next(v for v in self.vms if v.name == name)

    def bridge(self, name: str) -> PlannedBridge:
        return next(b for b in self.bridges if b.name == name)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def _mac(prefix: str, digest: bytes) -> str:
    return prefix + ":" + ":".join(f"{b:02x}" for b in digest[:3])


class _MacAllocator:
    """Deterministic MACs, unique within the lab even if two hashes collide."""

    def __init__(self, lab: str):
        self.lab = lab
        self.used: set[str] = set()

    def take(self, prefix: str, *parts: str) -> str:
        salt = 0
        while True:
            mac = _mac(prefix, _digest(self.lab, *parts, str(salt)))
            if mac not in self.used:
                self.used.add(mac)
                return mac
            salt += 1


def tap_prefix(lab: str) -> str:
    """Taps exist briefly in the root namespace, so their names must be unique host-wide: hash the lab."""
    return "vnl" + _digest(lab).hex()[:6]


def make_plan(scenario: Scenario, lab: str, options: PlanOptions | None = None) -> Plan:
    options = options or PlanOptions()
    lab_dir = options.layout.lab_dir(lab)
    macs = _MacAllocator(lab)
    mgmt_net = ipaddress.IPv4Network(scenario.management.subnet)
    gateway = f"{mgmt_net.network_address + 1}/{mgmt_net.prefixlen}"

    bridges = [PlannedBridge(MGMT_BRIDGE, "linux", macs.take("02:00:00", "bridge", MGMT_BRIDGE), gateway)]
    bridges += [
        PlannedBridge(b.name, b.type, macs.take("02:00:00", "bridge", b.name), _gateway_cidr(b), capture_port=f"vnlmir{i}" if b.type == "ovs" else None)
        for i, b in enumerate(scenario.bridges)
    ]

    taps = iter(f"{tap_prefix(lab)}-{i}" for i in range(10_000))
    vms: list[PlannedVM] = []
    for index, vm in enumerate(scenario.vms):
        mgmt_ip = mgmt_net.network_address + 2 + index
        mgmt = PlannedNic(vm.name, "mgmt0", MGMT_BRIDGE, next(taps), macs.take("52:54:00", vm.name, "mgmt0"), f"{mgmt_ip}/{mgmt_net.prefixlen}")
        nics = tuple(
            PlannedNic(vm.name, vm.nic_name(j), nic.bridge, next(taps), macs.take("52:54:00", vm.name, vm.nic_name(j)), nic.address)
            for j, nic in enumerate(vm.nics)
        )
        guest_dir = lab_dir / "guests" / vm.name
        vms.append(
            PlannedVM(
                name=vm.name,
                domain=f"vnl-{lab}-{vm.name}",
                memory=vm.memory,
                vcpus=vm.vcpus,
                mgmt=mgmt,
                nics=nics,
                initrd=guest_dir / "initrd.img",
                console_log=guest_dir / "console.log",
                cmdline=kernel_cmdline(vm.name, mgmt.mac, mgmt.cidr or "", [(n.mac, n.guest_name) for n in nics]),
            )
        )

    namespace = f"vnl-{lab}"
    env = _template_env()
    rendered = tuple(
        _with_xml(v, env.get_template("domain.xml.j2").render(
            vm=v, lab=lab, scenario=scenario.name, namespace=namespace, domain_type=options.domain_type,
            kernel=options.kernel, metadata_ns=METADATA_NS,
        ))
        for v in vms
    )
    resources = [Resource("namespace", namespace)]
    if any(b.type == "ovs" for b in bridges):
        resources += [Resource("process", daemon) for daemon in ("ovsdb-server", "ovs-vswitchd")]
    resources += [Resource("ovs-bridge" if b.type == "ovs" else "bridge", b.name) for b in bridges]
    nodes = plan_nodes(scenario, lab, macs.take)
    for node in nodes:
        resources += [Resource("namespace", node.namespace, node.name), Resource("veth", node.veth, node.name)]
    for v in rendered:
        resources += [Resource("tap", n.tap, v.name) for n in v.all_nics]
        resources.append(Resource("domain", v.domain, v.name))
    return Plan(
        scenario=scenario,
        lab=lab,
        namespace=namespace,
        domain_type=options.domain_type,
        lab_dir=lab_dir,
        kernel=options.kernel,
        mgmt_gateway=gateway,
        bridges=tuple(bridges),
        vms=rendered,
        resources=tuple(resources),
        wireguard=plan_wireguard(scenario, lab_dir / "secrets"),
        nodes=nodes,
        nat=plan_nat(scenario),
    )


def _gateway_cidr(bridge: Bridge) -> str | None:
    """The lab namespace's address on a bridge that is the containers' gateway."""
    if bridge.gateway is None or bridge.subnet is None:
        return None
    return f"{bridge.gateway}/{ipaddress.IPv4Network(bridge.subnet).prefixlen}"


def _with_xml(vm: PlannedVM, xml: str) -> PlannedVM:
    return PlannedVM(**{**vm.__dict__, "xml": xml})


def _template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
