"""Plan a lab: a pure function of (scenario, lab name, options).

Everything that can be decided without touching the system is decided here —
names, MACs, management addresses, rendered domain XML and the ordered list of
resources — so it can be pinned by golden files and reviewed before `apply`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2

from vnetlab.backends.image import SECRETS_FW_CFG, kernel_cmdline
from vnetlab.backends.image_kinds import DEBIAN, ImageRef, ResolvedImage, placeholder
from vnetlab.model.addressing import NO_ADDRESSES, NicAddresses, bridge_subnets, formed_ipv6, link_local, nic_addresses, uses_ipv6
from vnetlab.model.validate import vm_image, vm_memory
from vnetlab.paths import TEMPLATES_DIR, Layout

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
    images: Mapping[ImageRef, ResolvedImage] = field(default_factory=dict)  # built images; else placeholders beside `kernel`
    host_kernel: frozenset[str] = frozenset()  # what the host kernel can do (kernel_probe keys); empty: nothing beyond what every lab uses
    instance: str = ""  # this lab instance's id (made by `up`, kept in its state): for names two instances of one lab name must not share; empty: a preview

    def image(self, ref: ImageRef) -> ResolvedImage:
        return self.images.get(ref) or placeholder(ref, self.kernel)


@dataclass(frozen=True)
class PlannedNic:
    vm: str
    guest_name: str  # interface name inside the guest
    bridge: str  # bridge inside the lab namespace
    tap: str  # host-side tap name (created in the root namespace, moved into the lab's)
    mac: str
    cidr: str | None  # IPv4 address with prefix, None for a NIC without one
    attach: str | None = None  # the host bridge its tap joins when `bridge` runs elsewhere (a switch guest's link)
    cidr6: str | None = None  # IPv6 address with prefix: static, or the one SLAAC forms from `mac`
    link_local: str | None = None  # fe80::/64 from `mac`, in a lab that uses IPv6
    dhcp: bool = False  # cidr is the DHCP server's reservation for `mac`: the guest asks for it
    slaac: bool = False  # cidr6 is formed by the guest from its bridge's router advertisements

    @property
    def ip(self) -> str | None:
        return self.cidr.split("/")[0] if self.cidr else None

    @property
    def ip6(self) -> str | None:
        return self.cidr6.split("/")[0] if self.cidr6 else None

    @property
    def static(self) -> tuple[str, ...]:
        """The addresses vnetlab sets on the NIC itself (not DHCP's, not SLAAC's)."""
        return tuple(c for c, given in ((self.cidr, not self.dhcp), (self.cidr6, not self.slaac)) if c and given)

    def ips(self) -> tuple[str, ...]:
        return tuple(ip for ip in (self.ip, self.ip6) if ip)

    @property
    def port_of(self) -> str:
        """The lab-namespace bridge its tap is a port of."""
        return self.attach or self.bridge


@dataclass(frozen=True)
class PlannedShare:
    """A host folder the hypervisor exports to the guest (virtio-9p), found there by its tag."""

    source: Path
    tag: str
    readonly: bool


@dataclass(frozen=True)
class PlannedVM:
    name: str
    domain: str
    memory: int
    vcpus: int
    mgmt: PlannedNic
    nics: tuple[PlannedNic, ...]
    secrets: Path  # this guest's keys, a cpio its init unpacks from fw_cfg; unused when the image boots by its own bootloader
    console_log: Path
    cmdline: str
    xml: str = ""
    shares: tuple[PlannedShare, ...] = ()
    image: ImageRef = ImageRef("tiny")
    boot: ResolvedImage | None = None  # the image's files: kernel, base initramfs, base disk
    disk: Path | None = None  # this guest's qcow2 overlay of boot.disk
    seed: Path | None = None  # this guest's cloud-init NoCloud seed (file kind)
    role: str = "vm"  # "vm": the scenario's; else a guest a feature adds to run part of the network (e.g. "switch")
    host: str | None = None  # the hypervisor it runs on when the lab spans several (None: this machine)
    uri: str | None = None  # that hypervisor's libvirt URI (None: qemu:///system here)
    staged: Path | None = None  # its folder on that hypervisor: its keys and console log there (no shared file system)

    @property
    def kernel_path(self) -> Path | None:
        """The kernel as the hypervisor sees it (domain XML)."""
        if self.boot is None or self.boot.kernel is None:
            return None
        return self.staged.parent / self.boot.kernel.name if self.staged is not None else self.boot.kernel

    def there(self, own: Path) -> Path:
        """One of this guest's own files as its hypervisor sees it: in its folder there, when elsewhere."""
        return self.staged / own.name if self.staged is not None else own

    def image_there(self, image_file: Path | None, suffix: str) -> Path | None:
        """A file of its image, shared by the guests, as its hypervisor sees it: the cached file here;
        there, one copy per image beside the guests' folders, named by the image's cache entry."""
        if image_file is None:
            return None
        return self.staged.parent / f"{image_file.parent.name}.{suffix}" if self.staged is not None else image_file

    @property
    def initrd_path(self) -> Path | None:
        """The image's initramfs, one for every guest."""
        return None if self.boot is None else self.image_there(self.boot.initrd, "initrd")

    @property
    def secrets_path(self) -> Path:
        return self.there(self.secrets)

    @property
    def console_path(self) -> Path:
        return self.there(self.console_log)

    @property
    def disk_path(self) -> Path | None:
        return None if self.disk is None else self.there(self.disk)

    @property
    def base_disk_path(self) -> Path | None:
        """Its overlay's backing image."""
        return None if self.boot is None else self.image_there(self.boot.disk, "qcow2")

    @property
    def seed_path(self) -> Path | None:
        return None if self.seed is None else self.there(self.seed)

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
    guest: str | None = None  # the switch guest that runs this bridge: then nothing of it is on the host

    @property
    def capture_iface(self) -> str:
        return self.capture_port or self.name


@dataclass(frozen=True)
class Resource:
    """One thing apply creates and teardown removes, in creation order."""

    kind: str  # namespace | bridge | tap | domain | veth, and what switch backends add (process, ovs-bridge)
    name: str
    vm: str | None = None


NODE_IFACE = "eth0"  # a namespace node's end of its veth, inside its own namespace


@dataclass(frozen=True)
class PlannedNode:
    """A lab node that is a network namespace joined to the lab by a veth (a container, an outside host)."""

    name: str
    kind: str  # container | host | …
    namespace: str
    mac: str  # of its eth0
    cidr: str  # address with prefix of its eth0
    veth: str  # the lab-namespace end of its veth pair
    veth_mac: str
    bridge: str | None  # the lab end is a port of this bridge (containers, bridged uplinks)
    veth_cidr: str | None  # routed uplink: the lab end's address (the host's outside address)
    gateway: str | None  # default route inside the node (containers behind a gateway bridge)
    iface: str = NODE_IFACE

    @property
    def ip(self) -> str:
        return self.cidr.split("/")[0]


@dataclass(frozen=True)
class Plan:
    scenario: Any  # the composed model's Scenario
    lab: str
    namespace: str
    domain_type: str
    lab_dir: Path
    kernel: Path
    mgmt_gateway: str
    bridges: tuple[PlannedBridge, ...]
    vms: tuple[PlannedVM, ...]
    resources: tuple[Resource, ...]
    nodes: tuple[PlannedNode, ...] = ()  # namespace nodes the features add (containers, outside hosts)
    parts: Mapping[str, Any] = field(default_factory=dict)  # each feature's own records, by feature name
    features: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # they made this plan; later steps call them
    host_kernel: frozenset[str] = frozenset()  # PlanOptions.host_kernel (recorded in the lab's state)
    notes: tuple[str, ...] = ()  # what the features decided from the host kernel (e.g. a bridge moved into a switch guest): said by run/up

    def vm(self, name: str) -> PlannedVM:
        return next(v for v in self.vms if v.name == name)

    def bridge(self, name: str) -> PlannedBridge:
        return next(b for b in self.bridges if b.name == name)

    def part(self, feature: str, default: Any = ()) -> Any:
        """A feature's records (what its `plan` hook returned as data)."""
        return self.parts.get(feature, default)

    def switch(self, bridge_type: str) -> Any:
        """The switch backend of a bridge type other than linux (None for linux)."""
        return next((s for f in self.features for s in f.switches if s.kind == bridge_type), None)


@dataclass(frozen=True)
class PlanContext:
    """What a feature's `plan` hook gets: the scenario and the lab's names, and the plan's MAC allocator."""

    scenario: Any
    lab: str
    namespace: str
    lab_dir: Path
    take_mac: Callable[..., str]
    vms: tuple[PlannedVM, ...] = ()  # the guests as planned so far (names, NICs, MACs; no XML yet)
    host_kernel: frozenset[str] = frozenset()  # PlanOptions.host_kernel
    instance: str = ""  # PlanOptions.instance


@dataclass(frozen=True)
class PlanPart:
    """A feature's contribution to the plan."""

    data: Any = None  # its own records, found again with plan.part(name)
    nodes: tuple[PlannedNode, ...] = ()  # namespace nodes it adds
    resources: tuple[Resource, ...] = ()  # what its apply hook creates, recorded after the bridges
    bridge_addresses: Mapping[str, str] = field(default_factory=dict)  # bridge → the lab namespace's address on it
    vm_shares: Mapping[str, tuple[PlannedShare, ...]] = field(default_factory=dict)  # VM → host folders in its domain XML
    guests: tuple[GuestRequest, ...] = ()  # guests it adds (tiny image), planned and booted like the scenario's
    placed: Mapping[str, str] = field(default_factory=dict)  # scenario bridge → the guest that runs it (not made on the host)
    links: tuple[str, ...] = ()  # host bridges it adds in the lab namespace (e.g. point-to-point links to a switch guest)
    attach: Mapping[str, str] = field(default_factory=dict)  # tap of a scenario NIC → the host bridge it joins instead of its own
    notes: tuple[str, ...] = ()  # lines for the user: where it put what, and why
    hosted: Mapping[str, HostedVM] = field(default_factory=dict)  # VM → the other hypervisor it runs on


@dataclass(frozen=True)
class HostedVM:
    """Where a guest runs when not on this machine: the hypervisor's name, its libvirt URI, the guest's folder there."""

    host: str
    uri: str
    folder: Path


@dataclass(frozen=True)
class GuestRequest:
    """A guest a feature needs (a switch guest): tiny image, unaddressed NICs each joined to a host bridge."""

    name: str
    memory: int
    nics: tuple[tuple[str, str], ...]  # (interface name in the guest, host bridge its tap joins)
    role: str


class SwitchPlanning(Protocol):
    """What planning asks of a switch backend (a bridge `type` other than linux)."""

    kind: str
    bridge_resource: str  # resource kind its bridges are recorded as

    def capture_port(self, index: int) -> str | None: ...

    def setup_resources(self) -> Sequence[str]: ...  # names of `process` resources started before its bridges


class Planning(Protocol):
    """What planning asks of a feature."""

    name: str
    switches: Sequence[SwitchPlanning]

    def plan(self, ctx: PlanContext) -> PlanPart | None: ...


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


def domain_name(lab: str, vm: str) -> str:
    """The libvirt domain of a lab's VM. Kept as vnl-<lab>-<vm> (tools and tests find guests by it),
    which is ambiguous: lab `a` VM `b-c` and lab `a-b` VM `c` both give vnl-a-b-c. So a name is never
    trusted alone: `up` refuses a lab whose domain name another lab records or libvirt already has,
    and every lookup checks the lab named in the domain's metadata."""
    return f"vnl-{lab}-{vm}"


def tap_prefix(lab: str) -> str:
    """Taps exist briefly in the root namespace, so their names must be unique host-wide: hash the lab."""
    return "vnl" + _digest(lab).hex()[:6]


def make_plan(scenario: Any, lab: str, options: PlanOptions | None = None) -> Plan:
    """Everything about the lab that needs no system: the core's part, then each feature's."""
    options = options or PlanOptions()
    features = tuple(scenario.model.features)
    lab_dir = options.layout.lab_dir(lab)
    macs = _MacAllocator(lab)
    mgmt_net = ipaddress.IPv4Network(scenario.management.subnet)
    gateway = f"{mgmt_net.network_address + 1}/{mgmt_net.prefixlen}"
    switches = {s.kind: s for f in features for s in f.switches}

    bridge_macs = {MGMT_BRIDGE: macs.take("02:00:00", "bridge", MGMT_BRIDGE)} | {b.name: macs.take("02:00:00", "bridge", b.name) for b in scenario.bridges}

    taps = iter(f"{tap_prefix(lab)}-{i}" for i in range(10_000))

    ipv6 = uses_ipv6(scenario)
    prefixes = {b.name: bridge_subnets(b).ipv6 for b in scenario.bridges}

    def data_nic(vm: str, guest: str, bridge: str, addrs: NicAddresses, ipv6: bool) -> PlannedNic:
        mac = macs.take("52:54:00", vm, guest)
        v6 = formed_ipv6(addrs, prefixes.get(bridge), mac)
        return PlannedNic(
            vm, guest, bridge, next(taps), mac, addrs.ipv4.with_prefixlen if addrs.ipv4 else None,
            cidr6=v6.with_prefixlen if v6 else None, link_local=str(link_local(mac)) if ipv6 else None, dhcp=addrs.dhcp, slaac=addrs.slaac,
        )

    def plan_vm(index: int, name: str, nics: list[tuple[str, str, NicAddresses]], ref: ImageRef, memory: int, vcpus: int, role: str = "vm") -> PlannedVM:
        """nics: (name in the guest, bridge, addresses) in order. A guest a feature adds runs without IPv6 (it only forwards frames)."""
        mgmt_ip = mgmt_net.network_address + 2 + index
        mgmt = PlannedNic(name, "mgmt0", MGMT_BRIDGE, next(taps), macs.take("52:54:00", name, "mgmt0"), f"{mgmt_ip}/{mgmt_net.prefixlen}")
        planned = tuple(data_nic(name, guest, bridge, addrs, ipv6 and role == "vm") for guest, bridge, addrs in nics)
        guest_dir = lab_dir / "guests" / name
        boots_kernel, has_disk = ref.info.boots_kernel, ref.info.has_disk
        return PlannedVM(
            name=name,
            domain=domain_name(lab, name),
            memory=memory,
            vcpus=vcpus,
            mgmt=mgmt,
            nics=planned,
            secrets=guest_dir / "secrets.cpio",
            console_log=guest_dir / "console.log",
            cmdline=" ".join((
                kernel_cmdline(name, mgmt.mac, mgmt.cidr or "", [(n.mac, n.guest_name) for n in planned], disk_root=ref.kind == DEBIAN, ipv6=ipv6 and role == "vm"),
                *(ref.info.tcg_boot_args if options.domain_type == "qemu" else ()),
            )) if boots_kernel else "",
            image=ref,
            boot=options.image(ref),
            disk=guest_dir / "disk.qcow2" if has_disk else None,
            seed=None if boots_kernel else guest_dir / "seed.iso",
            role=role,
        )

    vms: list[PlannedVM] = [
        plan_vm(index, vm.name, [(vm.nic_name(j), nic.bridge, nic_addresses(nic)) for j, nic in enumerate(vm.nics)], vm_image(scenario, vm), vm_memory(scenario, vm), vm.vcpus)
        for index, vm in enumerate(scenario.vms)
    ]

    namespace = f"vnl-{lab}"
    ctx = PlanContext(scenario, lab, namespace, lab_dir, macs.take, tuple(vms), options.host_kernel, options.instance)
    parts: dict[str, Any] = {}
    nodes: list[PlannedNode] = []
    feature_resources: list[Resource] = []
    addresses: dict[str, str] = {}
    shares: dict[str, tuple[PlannedShare, ...]] = {}
    guests: list[GuestRequest] = []
    placed: dict[str, str] = {}
    links: list[str] = []
    attach: dict[str, str] = {}
    notes: list[str] = []
    hosted: dict[str, HostedVM] = {}
    for feature in features:
        part = feature.plan(ctx)
        if part is None:
            continue
        if part.data is not None:
            parts[feature.name] = part.data
        nodes += part.nodes
        feature_resources += part.resources
        addresses.update(part.bridge_addresses)
        for vm_name, more in part.vm_shares.items():
            shares[vm_name] = (*shares.get(vm_name, ()), *more)
        guests += part.guests
        placed.update(part.placed)
        links += part.links
        attach.update(part.attach)
        notes += part.notes
        hosted.update(part.hosted)
    vms = [dataclasses.replace(v, nics=tuple(dataclasses.replace(n, attach=attach.get(n.tap)) for n in v.nics)) for v in vms]
    vms = [dataclasses.replace(v, host=h.host, uri=h.uri, staged=h.folder) if (h := hosted.get(v.name)) else v for v in vms]
    vms += [plan_vm(len(vms), g.name, [(nic, bridge, NO_ADDRESSES) for nic, bridge in g.nics], ImageRef("tiny"), g.memory, 1, g.role) for g in guests]
    env = _template_env()
    rendered = tuple(
        _with_xml(v, env.get_template("domain.xml.j2").render(
            vm=v, lab=lab, scenario=scenario.name, namespace=namespace, domain_type=options.domain_type,
            metadata_ns=METADATA_NS, secrets_fw_cfg=SECRETS_FW_CFG,
        ))
        for v in (dataclasses.replace(vm, shares=shares.get(vm.name, ())) for vm in vms)
    )
    bridges = [PlannedBridge(MGMT_BRIDGE, "linux", bridge_macs[MGMT_BRIDGE], gateway)]
    bridges += [
        PlannedBridge(b.name, b.type, bridge_macs[b.name], addresses.get(b.name), capture_port=switches[b.type].capture_port(i) if b.type in switches else None, guest=placed.get(b.name))
        for i, b in enumerate(scenario.bridges)
    ]
    bridges += [PlannedBridge(name, "linux", macs.take("02:00:00", "bridge", name)) for name in links]

    resources = [Resource("namespace", namespace)]
    for kind in dict.fromkeys(b.type for b in bridges):
        if kind in switches:
            resources += [Resource("process", daemon) for daemon in switches[kind].setup_resources()]
    resources += [Resource(switches[b.type].bridge_resource if b.type in switches else "bridge", b.name) for b in bridges if b.guest is None]
    resources += feature_resources
    for v in rendered:
        if v.host is not None:
            continue  # its taps and domain are on another hypervisor: the feature that put it there plans them
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
        nodes=tuple(nodes),
        parts=parts,
        features=features,
        host_kernel=options.host_kernel,
        notes=tuple(notes),
    )


def _with_xml(vm: PlannedVM, xml: str) -> PlannedVM:
    return PlannedVM(**{**vm.__dict__, "xml": xml})


def _template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
