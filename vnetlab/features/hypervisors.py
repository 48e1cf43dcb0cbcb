"""Labs over several hypervisors (`hypervisors:`, a VM's `on:`), stitched together with VXLAN.

- One hypervisor is this machine (no `uri`, or qemu:///system): the lab namespace here keeps every
  bridge, the management gateway and the captures. Every other one is reached through libvirt's
  own remote transport (`qemu+ssh://…`) for its domains and an SSH shell for its network (the
  commands `vnetlab explain` prints) and files (SFTP: kernel, initramfs, keys; nothing assumes a shared
  file system). There, a lab namespace holds only the bridges its guests use, the management
  bridge included.
- Every bridge with members on another hypervisor gets one VXLAN device per hypervisor (VNI =
  vni-base + the bridge's index, 0 for management), made against that host's underlay and moved
  into its lab namespace as a port of the bridge: no learning, a flood entry per peer, a static
  entry per known guest MAC. This machine is a member of every such bridge, so the guests there
  and the management network reach everyone. MTU: `guest-1450` (VXLAN 1450, guests' data NICs on
  those bridges set to 1450; any underlay works) or `underlay-jumbo` (VXLAN 1500: the underlay
  must carry 1550).
- `simulate: true` makes the hypervisor on this machine, as part of the lab: a namespace on a lab
  underlay (bridge vnl-ul in the lab namespace, 192.0.2.0/24, this machine .1) running its own
  sshd; vnetlab then reaches it through the very transport a real host takes. Only libvirtd is
  shared, so taps are made in libvirtd's namespace (backends/sim_host.LIBVIRT_NETNS).
- State: every resource is recorded per host before it exists (kinds host-*, sim-*), and how to
  reach each host is kept in the lab folder (hosts.json): teardown and `down` after a kill work
  from the record alone; a host that cannot be reached keeps its records for a later `down`. A
  name another lab or program holds there is refused before anything is made, and a creation a
  host refuses is un-recorded, so teardown never removes what is not this lab's. The lab's folder
  on a host, /var/lib/vnetlab/hosted/<lab>.<host>.<instance>, is named with the lab instance's id
  (in its state), so no two instances of one lab name ever share it; the VXLAN devices made in a
  root namespace are named from a hash of the lab name, as its taps are.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlparse

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import libvirt_uri, linux_bridge, netns, remote_host, sim_host
from vnetlab.backends.keys import generate_client_key, generate_host_key, write_secret
from vnetlab.backends.remote_host import HostAccess, HostCommandFailed, HostShell, Shells, q
from vnetlab.checks.base import CaptureSubject, Judgement, expected_echo_pairs
from vnetlab.checks.capture import count_arp_icmp, vxlan_payloads
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules
from vnetlab.plan.planner import METADATA_NS, MGMT_BRIDGE, HostedVM, domain_name, Plan, PlanContext, PlannedVM, PlanPart, Resource, tap_prefix
from vnetlab.run.apply import create_recorded
from vnetlab.run.state import LabState, RecordedResource
from vnetlab.run.teardown import KeepsLabNamespace
from vnetlab.tools.explain import Section, comment, sh
from vnetlab.tools.inspect import InspectRow

LOCAL_URI = hv.DEFAULT_URI
UNDERLAY_BRIDGE = "vnl-ul"
SIM_UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")  # TEST-NET-1: only ever inside the lab's namespaces
HOSTED_ROOT = PurePosixPath("/var/lib/vnetlab/hosted")  # on each other hypervisor
OVERHEAD = 50  # VXLAN over IPv4: outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


class HypervisorError(VnetlabError):
    """A hypervisor of a multi-host lab could not be set up, reached or cleaned."""


# -- the scenario keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnderlaySpec:
    address: str = spec("this hypervisor's underlay IPv4 address: its VXLAN endpoint")
    device: str = spec("the interface that address is on, e.g. eth1", pattern=NAME, max_length=IFACE_MAX)


@dataclass(frozen=True)
class HypervisorSpec:
    uri: str | None = spec("libvirt URI, e.g. qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1; absent: this machine", default=None)
    underlay: UnderlaySpec | None = spec("where this hypervisor's VXLAN traffic leaves (required for real hosts; made by vnetlab when simulated)", default=None)
    simulate: bool = spec("vnetlab makes this hypervisor on this machine for the lab: a namespace on a lab underlay with its own sshd, reached through qemu+ssh", default=False)
    host_key: str | None = spec("its SSH host key (`ssh-ed25519 AAAA…`); default: its line in /root/.ssh/known_hosts", default=None, key="host-key")


@dataclass(frozen=True)
class OverlaySettings:
    """The defaults of `vxlan:` written as a mapping (that key is the vxlan feature's: read by name)."""

    dstport: int = 4789
    vni_base: int = 100000
    mtu: str = "guest-1450"


def overlay_settings(scenario: Any) -> Any:
    """`vxlan:` as a mapping (dstport, vni_base, mtu), else the defaults."""
    given = getattr(scenario, "vxlan", None)
    return given if given is not None and not isinstance(given, list) else OverlaySettings()


def _is_local(h: HypervisorSpec) -> bool:
    return not h.simulate and h.uri in (None, LOCAL_URI)


def _validate(r: Rules) -> None:
    s = r.scenario
    hosts = s.hypervisors or {}
    settings = getattr(s, "vxlan", None)
    if not hosts:
        for i, vm in enumerate(s.vms):
            if vm.on is not None:
                r.add(f"vms[{i}].on", f"on: {vm.on!r} names a hypervisor, but there is no hypervisors: section")
        if settings is not None and not isinstance(settings, list):
            r.add("vxlan", "a mapping of vxlan: settings is for labs over several hypervisors (add hypervisors:); the VXLAN overlay lesson takes a list")
        return
    if isinstance(settings, list) and settings:
        r.add("vxlan", "a lab over several hypervisors stretches its bridges with VXLAN itself: vxlan: here is a mapping of settings (dstport, vni-base, mtu), not a list of overlays")
    local = [name for name, h in hosts.items() if _is_local(h)]
    if len(local) != 1:
        r.add("hypervisors", f"exactly one hypervisor must be this machine (no uri, or {LOCAL_URI}); found {len(local)}" + (f": {', '.join(local)}" if local else ""))
    simulated = [name for name, h in hosts.items() if h.simulate]
    real = [name for name, h in hosts.items() if not h.simulate and not _is_local(h)]
    if simulated and real:
        r.add("hypervisors", f"simulated ({', '.join(simulated)}) and real ({', '.join(real)}) hypervisors cannot share a lab: the simulated underlay exists only on this machine")
    for name, h in hosts.items():
        if h.simulate and (h.uri is not None or h.underlay is not None or h.host_key is not None):
            r.add(f"hypervisors.{name}", "simulate: true makes its URI, underlay and host key itself: drop uri, underlay and host-key")
        if name in real:
            if not (h.uri or "").startswith("qemu+ssh://"):
                r.add(f"hypervisors.{name}.uri", f"expected a qemu+ssh:// URI (vnetlab also runs its host commands over that SSH), got {h.uri!r}")
            else:
                for problem in libvirt_uri.uri_problems(h.uri or ""):  # the trust model: nothing that runs or trusts more here
                    r.add(f"hypervisors.{name}.uri", problem)
            if h.underlay is None:
                r.add(f"hypervisors.{name}.underlay", "a real hypervisor needs underlay: {address, device}: where its VXLAN traffic leaves")
        if h.underlay is not None:
            try:
                ipaddress.IPv4Address(h.underlay.address)
            except ValueError:
                r.add(f"hypervisors.{name}.underlay.address", f"expected an IPv4 address, got {h.underlay.address!r}")
    if real and local and hosts[local[0]].underlay is None:
        r.add(f"hypervisors.{local[0]}.underlay", "with real hypervisors, this machine needs underlay: {address, device} too")
    if len(simulated) > SIM_UNDERLAY.num_addresses - 3:
        r.add("hypervisors", f"at most {SIM_UNDERLAY.num_addresses - 3} simulated hypervisors")
    for i, vm in enumerate(s.vms):
        if vm.on is not None and vm.on not in hosts:
            r.add(f"vms[{i}].on", f"no hypervisor named {vm.on!r} (hypervisors: {', '.join(hosts)})")
        elif vm.on is not None and not _is_local(hosts[vm.on]) and getattr(vm, "shares", None):
            r.add(f"vms[{i}].shares", f"shares: are folders of this machine, exported by its hypervisor: {vm.name} runs on {vm.on} (copy them in with files: instead)")
    elsewhere = {n.bridge for vm in s.vms if vm.on is not None and vm.on in hosts and not _is_local(hosts[vm.on]) for n in vm.nics}
    for i, b in enumerate(s.bridges):
        if b.name in elsewhere and b.type != "linux":
            r.add(f"bridges[{i}].type", f"bridge {b.name!r} has guests on another hypervisor: only Linux bridges are stretched there (got {b.type})")
        elif b.name in elsewhere and getattr(b, "placement", None) == "guest":  # the switch guest feature's `in:`
            r.add(f"bridges[{i}].in", f"bridge {b.name!r} has guests on another hypervisor: a stretched bridge runs on each hypervisor's host, not in a switch guest")
    for i, vm in enumerate(s.vms):
        for j, n in enumerate(vm.nics):
            if n.bridge in elsewhere and (getattr(n, "vlan", None) is not None or getattr(n, "trunk", None)):  # the vlan feature's NIC fields
                r.add(f"vms[{i}].nics[{j}]", f"VLANs on a bridge stretched over hypervisors ({n.bridge!r}) are not supported yet")


def _underlay_interfaces(scenario: Any) -> list[str]:
    return [UNDERLAY_BRIDGE] if any(h.simulate for h in (scenario.hypervisors or {}).values()) else []


def _validate_overlay_capture(r: Rules, cap: Any, path: str) -> None:
    if cap.interface != UNDERLAY_BRIDGE:
        r.add(f"{path}.interface", f"the overlay expectation judges the simulated underlay: capture on interface {UNDERLAY_BRIDGE}")


MODEL = ModelExtension(
    sections=(
        decl("hypervisors", dict[str, HypervisorSpec] | None, spec("hypervisors the lab spans, by name (absent: this machine only); `vxlan:` as a mapping sets the VXLAN between them", default=None, pattern=NAME, max_length=16)),
    ),
    vm_fields=(decl("on", str | None, spec("the hypervisor it runs on (default: this machine)", default=None, pattern=NAME, max_length=16)),),
    expectations=(Expectation("overlay", _validate_overlay_capture, node_scoped=True),),
    validate=_validate,
    lab_interfaces=_underlay_interfaces,
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedHost:
    name: str
    local: bool
    simulated: bool
    uri: str
    address: str  # SSH address (remote)
    underlay_ip: str
    underlay_device: str  # its VXLAN devices are made against it
    lab_namespace: str  # its bridges, taps and VXLAN devices
    stack_namespace: str | None  # simulated: its own namespace (sshd, underlay end), where its shell runs
    folder: PurePosixPath | None  # the lab's files on it (remote)
    bridges: tuple[tuple[str, str], ...]  # (bridge, MAC) made in its lab namespace (remote)
    vms: tuple[str, ...]
    underlay_veth: str | None = None  # simulated: the lab namespace's end of its underlay veth
    host_key: str | None = None  # real: from the scenario (else known_hosts)
    key: str | None = None  # real: the URI's keyfile
    user: str = "root"
    port: int = 22  # real: the URI's SSH port

    @property
    def ssh_target(self) -> str:
        """user@address, with :port when it is not 22 (as `ssh -p` would need it)."""
        return f"{self.user}@{self.address}" + (f":{self.port}" if self.port != 22 else "")


@dataclass(frozen=True)
class PlannedTunnel:
    host: str
    bridge: str
    device: str
    vni: int
    local_ip: str
    peers: tuple[str, ...]
    macs: tuple[tuple[str, str], ...]  # (guest MAC, underlay address of its hypervisor)
    mtu: int


@dataclass(frozen=True)
class HostsPlan:
    hosts: tuple[PlannedHost, ...]
    tunnels: tuple[PlannedTunnel, ...]
    port: int
    policy: str
    underlay_mtu: int | None  # simulated underlay: its MTU; None: no simulated underlay
    underlay_mac: str  # of the simulated underlay bridge
    guest_mtu: dict[str, tuple[str, ...]]  # VM → its NICs (guest names) set to the VXLAN MTU

    def host(self, name: str) -> PlannedHost:
        return next(h for h in self.hosts if h.name == name)

    @property
    def local(self) -> PlannedHost:
        """This machine (validation: exactly one)."""
        return next(h for h in self.hosts if h.local)

    @property
    def remote(self) -> tuple[PlannedHost, ...]:
        return tuple(h for h in self.hosts if not h.local)

    def tunnels_on(self, host: str) -> list[PlannedTunnel]:
        return [t for t in self.tunnels if t.host == host]


def sim_stack_namespace(lab_namespace: str, host: str) -> str:
    """A simulated hypervisor's own namespace (its shell, sshd and underlay end). Lab names have no '.'."""
    return f"{lab_namespace}.{host}"


def sim_lab_namespace(lab_namespace: str, host: str) -> str:
    """A simulated hypervisor's lab namespace (on a real host it is named like this machine's)."""
    return f"{sim_stack_namespace(lab_namespace, host)}-lab"


def hosted_folder(lab: str, host: str, instance: str = "") -> str:
    """The lab's folder on a hypervisor (in HOSTED_ROOT): its instance id keeps two labs of one
    name (two controllers, or one after a `down` that left its folder) apart."""
    return f"{lab}.{host}" + (f".{instance}" if instance else "")


def device_name(lab: str, index: int) -> str:
    """A VXLAN device of the lab: made in a root namespace (this machine's, a real host's) before it
    moves into the lab's, so its name is unique per lab like a tap's (≤ 15 characters)."""
    return f"{tap_prefix(lab)}x{index}"


def _real_access(uri: str) -> tuple[str, str, str | None, int]:
    """(user, address, keyfile, SSH port) of a qemu+ssh:// URI."""
    parsed = urlparse(uri)
    key = parse_qs(parsed.query).get("keyfile", [None])[0]
    try:
        port = parsed.port or 22
    except ValueError:  # not a number: the URI's validation says so
        port = 22
    return parsed.username or "root", parsed.hostname or "", key, port


def plan_hosts(ctx: PlanContext) -> HostsPlan | None:
    s = ctx.scenario
    specs: dict[str, HypervisorSpec] = s.hypervisors or {}
    if not specs:
        return None
    overlay = overlay_settings(s)
    local_name = next(n for n, h in specs.items() if _is_local(h))
    on = {vm.name: vm.on or local_name for vm in s.vms}
    mtu = 1450 if overlay.mtu == "guest-1450" else 1500
    simulated = [n for n, h in specs.items() if h.simulate]
    sim_ips = {n: str(SIM_UNDERLAY.network_address + 2 + k) for k, n in enumerate(simulated)}
    controller_ip = str(SIM_UNDERLAY.network_address + 1)
    by_vm = {v.name: v for v in ctx.vms}
    hosts: list[PlannedHost] = []
    for name, h in specs.items():
        vms = tuple(v for v, host in on.items() if host == name)
        if name == local_name:
            ip = controller_ip if simulated else h.underlay.address if h.underlay else ""
            device = UNDERLAY_BRIDGE if simulated else h.underlay.device if h.underlay else ""
            hosts.append(PlannedHost(name, True, False, LOCAL_URI, "", ip, device, ctx.namespace, None, None, (), vms))
            continue
        used = [MGMT_BRIDGE] + [b.name for b in s.bridges if any(n.bridge == b.name for v in vms for n in by_vm[v].nics)]
        bridges = tuple((b, ctx.take_mac("02:00:00", "bridge", name, b)) for b in used)
        folder = HOSTED_ROOT / hosted_folder(ctx.lab, name, ctx.instance)
        if h.simulate:
            ip = sim_ips[name]
            hosts.append(PlannedHost(
                name, False, True, sim_host.uri(ctx.lab_dir, name, ip), ip, ip, "ul0", sim_lab_namespace(ctx.namespace, name), sim_stack_namespace(ctx.namespace, name), folder, bridges, vms,
                underlay_veth=f"vnl-ul{simulated.index(name)}",
            ))
        else:
            user, address, key, port = _real_access(h.uri or "")
            hosts.append(PlannedHost(
                name, False, False, h.uri or "", address, h.underlay.address if h.underlay else "", h.underlay.device if h.underlay else "",
                ctx.namespace, None, folder, bridges, vms, host_key=h.host_key, key=key, user=user, port=port,
            ))
    host_of_ip = {h.name: h.underlay_ip for h in hosts}
    local = next(h for h in hosts if h.local)
    tunnels: list[PlannedTunnel] = []
    guest_mtu: dict[str, list[str]] = {}
    for index, bridge in enumerate([MGMT_BRIDGE] + [b.name for b in s.bridges]):
        remote = [h for h in hosts if not h.local and any(b == bridge for b, _ in h.bridges)]
        if not remote:
            continue
        members = [local, *remote]
        nics = [(v.name, n) for v in ctx.vms for n in v.all_nics if n.bridge == bridge]
        if bridge != MGMT_BRIDGE and overlay.mtu == "guest-1450":
            for vm_name, n in nics:
                guest_mtu.setdefault(vm_name, []).append(n.guest_name)
        for h in members:
            macs = tuple((n.mac, host_of_ip[on[vm_name]]) for vm_name, n in nics if on[vm_name] != h.name)
            tunnels.append(PlannedTunnel(
                h.name, bridge, device_name(ctx.lab, index), overlay.vni_base + index, h.underlay_ip,
                tuple(m.underlay_ip for m in members if m.name != h.name), macs, mtu,
            ))
    underlay_mtu = (1500 if overlay.mtu == "guest-1450" else 1500 + OVERHEAD) if simulated else None
    return HostsPlan(
        tuple(hosts), tuple(tunnels), overlay.dstport, overlay.mtu, underlay_mtu, ctx.take_mac("02:00:00", "bridge", UNDERLAY_BRIDGE),
        {k: tuple(v) for k, v in guest_mtu.items()},
    )


def hosted(part: HostsPlan) -> dict[str, HostedVM]:
    return {vm: HostedVM(h.name, h.uri, Path(str(h.folder / vm))) for h in part.remote for vm in h.vms if h.folder is not None}


def resources(plan_part: HostsPlan, lab: str, vms: tuple[PlannedVM, ...], placed: dict[str, HostedVM]) -> tuple[Resource, ...]:
    out: list[Resource] = []
    if plan_part.underlay_mtu is not None:
        out.append(Resource("bridge", UNDERLAY_BRIDGE))
    for h in plan_part.remote:
        if h.simulated:
            out += [Resource("sim-host", h.stack_namespace or ""), Resource("veth", h.underlay_veth or ""), Resource("sim-sshd", f"{h.name}:<pid>")]
    out += [Resource(_local_vxlan_kind(plan_part), t.device) for t in plan_part.tunnels_on(plan_part.local.name)]
    for h in plan_part.remote:
        out += [Resource("host-files", f"{h.name}:{h.folder}"), Resource("host-namespace", f"{h.name}:{h.lab_namespace}")]
        out += [Resource("host-vxlan", f"{h.name}:{t.device}") for t in plan_part.tunnels_on(h.name)]
    for v in vms:
        if v.name in placed:
            host = placed[v.name].host
            out += [Resource("host-tap", f"{host}:{n.tap}", v.name) for n in v.all_nics] + [Resource("domain", domain_name(lab, v.name), v.name)]
    return tuple(out)


def _part(plan: Plan) -> HostsPlan | None:
    return plan.part("hypervisors", None)


def _local_vxlan_kind(part: HostsPlan) -> str:
    """This machine's VXLAN devices: made on the simulated underlay in the lab namespace (sim-vxlan),
    or in the root namespace against a real underlay and then moved (overlay-vxlan)."""
    return "sim-vxlan" if part.underlay_mtu is not None else "overlay-vxlan"


# -- apply ---------------------------------------------------------------------------------------


KNOWN_HOSTS = Path("/root/.ssh/known_hosts")


def _known_host_key(address: str, port: int = 22, path: Path = KNOWN_HOSTS) -> str:
    found = remote_host.known_host_key(path, address, port)
    if found is None:
        where = address if port == 22 else f"[{address}]:{port}"
        raise HypervisorError(f"no host key for {where}: give the hypervisor `host-key:` or add it to {path} (ssh-keyscan{'' if port == 22 else f' -p {port}'}, checked by hand)")
    return found


def _setup_simulation(plan: Plan, ctx: Any, part: HostsPlan) -> dict[str, HostAccess]:
    """The lab underlay in the lab namespace, each simulated host's namespace on it with its sshd."""
    lab_dir = plan.lab_dir
    ns = plan.namespace
    controller = part.local
    ctx.record("bridge", UNDERLAY_BRIDGE)
    linux_bridge.create_bridge(ns, UNDERLAY_BRIDGE, part.underlay_mac)
    linux_bridge.set_mtu(ns, UNDERLAY_BRIDGE, part.underlay_mtu)
    linux_bridge.add_address(ns, UNDERLAY_BRIDGE, f"{controller.underlay_ip}/{SIM_UNDERLAY.prefixlen}")
    client = generate_client_key(f"vnetlab-{plan.lab}-hypervisors")
    (lab_dir / "hosts").mkdir(mode=0o700, exist_ok=True)
    write_secret(sim_host.client_key(lab_dir), client.private_openssh)
    access: dict[str, HostAccess] = {}
    for h in part.remote:
        stack = h.stack_namespace or ""
        if netns.namespace_exists(stack):
            raise HypervisorError(f"namespace {stack!r} already exists but no lab state records it: left alone")
        create_recorded(plan, ctx.state, "sim-host", stack, None, lambda: netns.create_namespace(stack), lambda: netns.namespace_exists(stack), "/run/netns")
        ctx.record("veth", h.underlay_veth)
        linux_bridge.create_veth(ns, h.underlay_veth, stack, h.underlay_device)
        for where, link in ((ns, h.underlay_veth), (stack, h.underlay_device)):
            linux_bridge.set_mtu(where, link, part.underlay_mtu)
        linux_bridge.attach_to_bridge(ns, h.underlay_veth, UNDERLAY_BRIDGE)
        linux_bridge.add_address(stack, h.underlay_device, f"{h.underlay_ip}/{SIM_UNDERLAY.prefixlen}")
        linux_bridge.set_link_up(stack, h.underlay_device)
        key = generate_host_key()
        sim_host.write_files(lab_dir, h.name, h.address, ns, key.openssh_private, key.public_line, client.public_line)
        intent = f"{h.name}:"  # recorded before it starts: a kill -9 before its PID is known leaves it findable in its namespace
        ctx.record("sim-sshd", intent)
        pid = sim_host.start_sshd(lab_dir, h.name, stack)
        ctx.state.replace(lab_dir, "sim-sshd", intent, f"{h.name}:{pid}")
        access[h.name] = HostAccess(h.name, h.address, ns, str(sim_host.client_key(lab_dir)), key.public_line, h.uri, sim_host.LIBVIRT_NETNS)
    return access


def _local_tunnels(plan: Plan, ctx: Any, part: HostsPlan) -> None:
    """This machine's VXLAN devices: made against its underlay (the lab underlay here when simulated,
    else its own device), moved into the lab namespace when made elsewhere."""
    local = part.local
    made_in = plan.namespace if part.underlay_mtu is not None else None
    where = "the lab namespace" if made_in else "the root namespace"
    for t in part.tunnels_on(local.name):
        if linux_bridge.link_exists(made_in, t.device):  # someone else's: never record (= remove) it
            raise HypervisorError(f"a link named {t.device!r} already exists in {where} and no lab state records it: left alone; pick another lab name")
        create_recorded(
            plan, ctx.state, _local_vxlan_kind(part), t.device, None,
            lambda t=t: linux_bridge.create_vxlan(made_in, t.device, t.vni, t.local_ip, part.port, local.underlay_device, t.mtu, learning=False),
            lambda t=t: linux_bridge.link_exists(made_in, t.device), where,
        )
        if made_in is None:
            linux_bridge.move_link(t.device, plan.namespace)
        ctx.attach(t.device, t.bridge)
        for peer in t.peers:
            linux_bridge.add_fdb(plan.namespace, t.device, "00:00:00:00:00:00", peer)
        for mac, dst in t.macs:
            linux_bridge.add_fdb(plan.namespace, t.device, mac, dst)


def tunnel_commands(part: HostsPlan, h: PlannedHost, t: PlannedTunnel) -> list[str]:
    return remote_host.vxlan_commands(h.lab_namespace, t.device, t.vni, t.local_ip, h.underlay_device, part.port, t.mtu, t.bridge, list(t.peers), list(t.macs))


def host_commands(part: HostsPlan, h: PlannedHost) -> list[str]:
    """What is run on a remote hypervisor before its guests boot (also `vnetlab explain`)."""
    out = remote_host.files_commands(h.folder) if h.folder else []
    out += remote_host.namespace_commands(h.lab_namespace)
    for bridge, mac in h.bridges:
        out += remote_host.bridge_commands(h.lab_namespace, bridge, mac)
    for t in part.tunnels_on(h.name):
        out += tunnel_commands(part, h, t)
    return out


def create_on_host(plan: Plan, state: LabState, sh: HostShell, kind: str, name: str, vm: str | None, command: str, what: str) -> None:
    """Record, then run the one command that makes it. Each such command refuses a name that is
    taken (ip netns add, ip link add, mkdir, the tap command) or fails without making anything: if
    it exits non-zero, nothing of this lab's is there, so the record goes and teardown never
    removes what another lab or program has under that name. A connection that broke keeps the
    record (it may have been made)."""
    state.record(plan.lab_dir, kind, name, vm)
    try:
        sh.run(command)
    except HostCommandFailed as exc:
        state.forget(plan.lab_dir, kind, name)
        raise HypervisorError(f"{what}: {exc}; not recorded, so it is left alone (it may be another lab's: pick another lab name)") from None


def _prepare_host(plan: Plan, ctx: Any, part: HostsPlan, h: PlannedHost, access: HostAccess) -> None:
    assert h.folder is not None
    with remote_host.shell(access) as sh:
        # Checked before anything is made there: a lab of this name from elsewhere (another
        # controller sharing the host) must not lose its files to this one's failed set-up.
        if sh.run(f"[ -e /run/netns/{q(h.lab_namespace)} ] && echo taken || true").strip() == "taken":
            raise HypervisorError(f"hypervisor {h.name}: namespace {h.lab_namespace!r} already exists there and no lab state records it: left alone; pick another lab name")
        parent, folder = remote_host.files_commands(h.folder)
        sh.run(parent)
        create_on_host(plan, ctx.state, sh, "host-files", f"{h.name}:{h.folder}", None, folder, f"hypervisor {h.name}: the lab's folder {h.folder}")
        for local, there in staged_images(plan, h).items():  # each once per hypervisor, before its guests boot
            sh.put(local, there, 0o644)
        first, *rest = remote_host.namespace_commands(h.lab_namespace)
        create_on_host(plan, ctx.state, sh, "host-namespace", f"{h.name}:{h.lab_namespace}", None, first, f"hypervisor {h.name}: namespace {h.lab_namespace}")
        for command in rest:
            sh.run(command)
        for bridge, mac in h.bridges:
            for command in remote_host.bridge_commands(h.lab_namespace, bridge, mac):
                sh.run(command)
        for t in part.tunnels_on(h.name):
            first, *rest = tunnel_commands(part, h, t)
            create_on_host(plan, ctx.state, sh, "host-vxlan", f"{h.name}:{t.device}", None, first, f"hypervisor {h.name}: VXLAN device {t.device}")
            for command in rest:
                sh.run(command)


def apply_hosts(plan: Plan, ctx: Any) -> None:
    part = _part(plan)
    if part is None or not part.remote:
        return
    access = _setup_simulation(plan, ctx, part) if part.underlay_mtu is not None else {}
    for h in part.remote:
        if h.name not in access:
            access[h.name] = HostAccess(h.name, h.address, None, h.key or "/root/.ssh/id_ed25519", h.host_key or _known_host_key(h.address, h.port), h.uri, "", h.user, h.port)
    remote_host.save_hosts(plan.lab_dir, list(access.values()))
    _local_tunnels(plan, ctx, part)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(part.remote)) as pool:  # each waits on its own SSH and SFTP
        for done in [pool.submit(_prepare_host, plan, ctx, part, h, access[h.name]) for h in part.remote]:
            done.result()


def _access(lab_dir: Path, host: str) -> HostAccess:
    found = remote_host.load_hosts(lab_dir).get(host)
    if found is None:
        raise HypervisorError(f"how to reach hypervisor {host!r} is not recorded ({lab_dir / remote_host.HOSTS_FILE})")
    return found


def staged_images(plan: Plan, h: PlannedHost) -> dict[Path, PurePosixPath]:
    """What the guests on a hypervisor share there: their kernels and initramfs, their disk images' bases (read-only)."""
    out: dict[Path, PurePosixPath] = {}
    for vm in (v for v in plan.vms if v.host == h.name and v.boot is not None):
        if vm.image.info.boots_kernel:
            for file, there in ((vm.boot.kernel, vm.kernel_path), (vm.boot.initrd, vm.initrd_path)):
                if file is not None and there is not None:
                    out[file] = PurePosixPath(str(there))
        if vm.boot.disk is not None and vm.base_disk_path is not None:
            out[vm.boot.disk] = PurePosixPath(str(vm.base_disk_path))
    return out


def guest_files(vm: PlannedVM) -> dict[Path, PurePosixPath]:
    """A guest's own files, made here (they carry its keys) and copied to its folder there: its
    keys' archive (fw_cfg), its cloud-init seed."""
    out = {}
    if vm.image.info.boots_kernel:
        out[vm.secrets] = PurePosixPath(str(vm.secrets_path))
    if vm.seed is not None and vm.seed_path is not None:
        out[vm.seed] = PurePosixPath(str(vm.seed_path))
    return out


def guest_file_commands(vm: PlannedVM) -> list[str]:
    """Its disk: an overlay made there over the staged base (never written)."""
    if vm.disk_path is None or vm.base_disk_path is None:
        return []
    disk = q(str(vm.disk_path))
    return [f"qemu-img create -q -f qcow2 -F qcow2 -b {q(str(vm.base_disk_path))} {disk}", f"chmod 0600 {disk}"]


def boot_hosted(plan: Plan, state: LabState, conn: Any, vm: PlannedVM) -> None:
    """On its hypervisor: its keys staged, its taps made where libvirtd opens them, its domain
    defined and started paused, the taps moved into the host's lab namespace, then resumed."""
    part = _part(plan)
    assert part is not None and vm.host is not None and vm.staged is not None
    h = part.host(vm.host)
    access = _access(plan.lab_dir, h.name)
    folder = PurePosixPath(str(vm.staged))
    with remote_host.shell(access) as sh:
        for command in [remote_host.folder_command(folder, exclusive=False)] + guest_file_commands(vm):  # inside the lab's own folder
            sh.run(command)
        for local, there in guest_files(vm).items():
            sh.put(local, there)
        for n in vm.all_nics:  # each refused if a link of its name exists where libvirtd opens it
            create_on_host(plan, state, sh, "host-tap", f"{h.name}:{n.tap}", vm.name, remote_host.tap_command(access, n.tap), f"{vm.name}: tap {n.tap} on hypervisor {h.name}")
        if hv.lookup(conn, vm.domain) is not None:
            raise hv.HypervisorError(f"a libvirt domain named {vm.domain!r} already exists on hypervisor {h.name} and no lab state records it: left alone; pick another lab name")
        state.record(plan.lab_dir, "domain", vm.domain, vm.name, uri=vm.uri)  # removed by the core, through its URI
        dom = hv.define(conn, vm.xml)
        hv.start_paused(dom)
        for nic in vm.all_nics:
            for command in remote_host.tap_into_lab_commands(access, nic.tap, h.lab_namespace, nic.port_of):
                sh.run(command)
        hv.resume(dom)


@contextlib.contextmanager
def console_over_sftp(plan: Plan, vm: PlannedVM) -> Iterator[Any]:
    """Its serial log, read on its hypervisor over SFTP (one connection for the whole wait)."""
    access = _access(plan.lab_dir, vm.host or "")
    with remote_host.shell(access) as sh:
        yield lambda: sh.open(str(vm.console_path))


# -- teardown: from the state and hosts.json alone -----------------------------------------------


def _split(resource: RecordedResource) -> tuple[str, str]:
    host, _, name = resource.name.partition(":")
    return host, name


REMOVAL_CONNECT = 3.0  # s: a hypervisor that does not answer at teardown is reported at once, not waited for


def _unreachable(state: LabState, access: HostAccess, exc: Exception) -> Exception:
    later = f"its resources stay recorded: run `vnetlab down {state.lab}` again once it answers"
    if access.client_namespace == state.namespace:  # reached over the lab's own underlay: keep that too
        return KeepsLabNamespace(f"{exc}; {later}")
    return HypervisorError(f"{exc}; {later}")


def _shell_for_removal(shells: Shells, lab_dir: Path, host: str, state: LabState) -> HostShell:
    access = _access(lab_dir, host)
    try:
        return shells.get(access, REMOVAL_CONNECT)
    except VnetlabError as exc:  # no answer, or the namespace it is reached from is gone
        raise _unreachable(state, access, exc) from None


def _run_on(shells: Shells, lab_dir: Path, host: str, state: LabState, command: str) -> None:
    _shell_for_removal(shells, lab_dir, host, state).run(command)


def remove_host_namespace(shells: Shells, resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    host, ns = _split(resource)
    _run_on(shells, lab_dir, host, state, f"[ ! -e /run/netns/{q(ns)} ] || ip netns del {q(ns)}")


def remove_host_taps(shells: Shells, resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """A host-tap record (one tap), or a host-taps one of a lab made before (a VM's taps, joined by ',')."""
    host, taps = _split(resource)
    sh = _shell_for_removal(shells, lab_dir, host, state)
    sh.run(remote_host.tap_removal_command(sh.access, taps.split(",")))


def remove_host_vxlan(shells: Shells, resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """Only while it is still where it was made (moved into the lab namespace, it goes with it)."""
    host, device = _split(resource)
    _run_on(shells, lab_dir, host, state, f"ip link del dev {q(device)} 2>/dev/null; true")


def remove_host_files(shells: Shells, resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """The first record made on a host, so the last removed: its connection is closed after."""
    host, folder = _split(resource)
    path = PurePosixPath(folder)
    if path.parent != HOSTED_ROOT:  # never anything but the lab's own folder there
        raise HypervisorError(f"refusing to remove {folder!r} on {host}: not a folder of {HOSTED_ROOT}")
    _run_on(shells, lab_dir, host, state, f"rm -rf {q(str(path))}")
    shells.drop(_access(lab_dir, host))


def remove_overlay_vxlan(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """Made in the root namespace, then moved: wherever it is. In the root namespace only under a
    name of this lab's (a lab made before the names were per lab recorded vnl-vx<N>, which another
    lab's device may have there now)."""
    if resource.name.startswith(tap_prefix(state.lab)):
        linux_bridge.delete_link(None, resource.name)  # made outside the lab namespace and not yet moved
    remove_sim_vxlan(resource, state, lab_dir)


def remove_sim_vxlan(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    """Made in the lab namespace (on the simulated underlay): only there, or it went with it."""
    if netns.namespace_exists(state.namespace):
        linux_bridge.delete_link(state.namespace, resource.name)


def _domains_still_there(state: LabState, lab_dir: Path, host: str) -> list[str]:
    """The lab's domains recorded on a simulated hypervisor that libvirt still has. Its libvirtd is
    this machine's, so they are looked up here; "could not tell" counts as still there."""
    access = remote_host.load_hosts(lab_dir).get(host)
    names = [r.name for r in state.resources if r.kind == "domain" and access is not None and r.uri == access.uri]
    if not names:
        return []
    try:
        conn = hv.connect()
    except hv.HypervisorError:
        return names
    try:
        left = []
        for name in names:
            try:
                if hv.lookup_of_lab(conn, name, state.lab, METADATA_NS) is not None:
                    left.append(name)
            except hv.ForeignDomain:
                continue  # someone else's now: not ours to wait for
            except hv.HypervisorError:
                left.append(name)
        return left
    finally:
        conn.close()


def _keep_while_it_holds_the_lab(state: LabState, lab_dir: Path, host: str) -> None:
    """A simulated hypervisor stays (its namespace, its sshd) while its lab namespace, the lab's
    files or a guest on it are left: they were not removed because it did not answer, and a later
    `down` must reach it the same way. It is on this machine, so that is seen here."""
    def recorded(kind: str) -> list[str]:  # only what the lab made there: a same-named thing of someone else's holds nothing
        return [_split(r)[1] for r in state.resources if r.kind == kind and _split(r)[0] == host]

    left = [f"namespace {ns}" for ns in recorded("host-namespace") if netns.namespace_exists(ns)]
    left += [f"folder {folder}" for folder in recorded("host-files") if Path(folder).exists()]
    left += [f"domain {name}" for name in _domains_still_there(state, lab_dir, host)]
    if left:
        raise KeepsLabNamespace(f"simulated hypervisor {host} still holds {' and '.join(left)}: kept so that a later `vnetlab down {state.lab}` can reach it")


def remove_sim_host(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    _keep_while_it_holds_the_lab(state, lab_dir, resource.name.rpartition(".")[2])
    netns.end_processes(resource.name)  # its sshd's sessions, or the sshd itself if its stop failed
    netns.delete_namespace(resource.name)


def stop_sim_sshd(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    host = resource.name.rpartition(":")[0]
    _keep_while_it_holds_the_lab(state, lab_dir, host)
    sim_host.stop_sshd(lab_dir, resource.name, sim_stack_namespace(state.namespace, host))


# -- checks: the underlay carries only VXLAN between the hypervisors -----------------------------


def judge_overlay(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    part = _part(plan)
    assert part is not None
    a, b = s.nic_a, s.nic_b
    assert a is not None and b is not None and a.ip and b.ip
    underlay = {h.underlay_ip for h in part.hosts}
    vnis = {t.vni for t in part.tunnels}
    seen = vxlan_payloads(s.packets, part.port, vnis, underlay)
    payloads, datagrams, strays = seen.inner, seen.datagrams, seen.strays
    c = count_arp_icmp(payloads, a.mac, a.ip, b.mac, b.ip)
    plain = count_arp_icmp(seen.plain, a.mac, a.ip, b.mac, b.ip)
    want = max(1, expected_echo_pairs(plan, s.name_a, s.name_b))
    return Judgement(
        c.icmp_echo_pairs >= want and strays == 0 and plain.icmp_echo_request + plain.icmp_echo_reply == 0,
        f"UDP {part.port} datagrams only between the hypervisors' underlay addresses ({', '.join(sorted(underlay))}), carrying ≥{want} ICMP echo pairs between {a.ip} and {b.ip}; none of it unencapsulated",
        f"{datagrams} VXLAN datagram(s) between the hypervisors ({len(payloads)} with the lab's VNIs), {strays} from or to other addresses; inside: {c.icmp_echo_pairs} echo pair(s); "
        f"unencapsulated on the underlay: {plain.icmp_echo_request + plain.icmp_echo_reply} echo packet(s)",
        {"vxlan_datagrams": datagrams, "stray_datagrams": strays, "inner_icmp_echo_pairs": c.icmp_echo_pairs, "plain_icmp_echo": plain.icmp_echo_request + plain.icmp_echo_reply},
    )


# -- views ---------------------------------------------------------------------------------------


def explain_sections(plan: Plan) -> list[Section]:
    part = _part(plan)
    if part is None:
        return []
    out: list[Section] = []
    local = part.local
    if part.underlay_mtu is not None:
        lines = [f"ip -n {plan.namespace} link add {UNDERLAY_BRIDGE} type bridge && ip -n {plan.namespace} link set {UNDERLAY_BRIDGE} mtu {part.underlay_mtu} up",
                 f"ip -n {plan.namespace} addr add {local.underlay_ip}/{SIM_UNDERLAY.prefixlen} dev {UNDERLAY_BRIDGE}"]
        for h in part.remote:
            lines += [
                f"ip netns add {h.stack_namespace}",
                f"ip -n {plan.namespace} link add {h.underlay_veth} mtu {part.underlay_mtu} type veth peer name {h.underlay_device} netns {h.stack_namespace}",
                f"ip -n {h.stack_namespace} addr add {h.underlay_ip}/{SIM_UNDERLAY.prefixlen} dev {h.underlay_device} && ip -n {h.stack_namespace} link set {h.underlay_device} mtu {part.underlay_mtu} up",
                f"{sh('ip', 'netns', 'exec', h.stack_namespace, '/usr/sbin/sshd', '-D', '-e', '-f', sim_host.config(plan.lab_dir, h.name))}   # its own host key; the lab's key only",
            ]
        out.append(Section("Simulated hypervisors: namespaces on a lab underlay, each with its own sshd", tuple(lines)))
    lines = []
    for t in part.tunnels_on(local.name):
        lines += [f"ip link add {t.device} type vxlan id {t.vni} local {t.local_ip} dev {local.underlay_device} dstport {part.port} nolearning   # in {plan.namespace if part.underlay_mtu else 'the root namespace, then moved into ' + plan.namespace}",
                  f"ip -n {plan.namespace} link set {t.device} mtu {t.mtu} master {t.bridge} up"]
        lines += [f"bridge -n {plan.namespace} fdb append 00:00:00:00:00:00 dev {t.device} dst {p}" for p in t.peers]
        lines += [f"bridge -n {plan.namespace} fdb add {m} dev {t.device} dst {d} self permanent" for m, d in t.macs]
    if lines:
        out.append(Section(f"Hypervisor {local.name} (this machine): VXLAN ports of the stretched bridges", tuple(lines)))
    for h in part.remote:
        access = HostAccess(h.name, h.address, None, "", "", h.uri, sim_host.LIBVIRT_NETNS if h.simulated else "")
        lines = [comment(f"over SSH to {h.ssh_target}; libvirt: {h.uri}"), *host_commands(part, h)]
        lines += [comment(f"over SFTP: {local} to {there}") for local, there in staged_images(plan, h).items()]
        for vm in (plan.vm(v) for v in h.vms):
            lines.append(comment(f"{vm.name}: " + ", ".join(f"{local.name} to {there}" for local, there in guest_files(vm).items()) + ", then"))
            lines += guest_file_commands(vm)
            lines += [remote_host.tap_command(access, n.tap) for n in vm.all_nics]
            lines.append(f"{sh('virsh', '-c', h.uri, 'define', 'domain.xml')} && {sh('virsh', '-c', h.uri, 'start', '--paused', vm.domain)}")
            for n in vm.all_nics:
                lines += remote_host.tap_into_lab_commands(access, n.tap, h.lab_namespace, n.port_of)
            lines.append(sh("virsh", "-c", h.uri, "resume", vm.domain))
        out.append(Section(f"Hypervisor {h.name}{' (simulated)' if h.simulated else ''}", tuple(lines)))
    return out


def read_links(plan: Plan, h: PlannedHost) -> dict[str, dict]:
    with remote_host.shell(_access(plan.lab_dir, h.name)) as sh:
        return remote_host.parse_links(sh.run(remote_host.links_command(h.lab_namespace)))


def inspect_rows(plan: Plan) -> list[InspectRow]:
    """Per hypervisor: its lab namespace's bridges and VXLAN ports, read there (this machine's from netlink)."""
    part = _part(plan)
    if part is None:
        return []
    rows: list[InspectRow] = []
    for h in part.hosts:
        tunnels = part.tunnels_on(h.name)
        bridges = [b for b, _ in h.bridges] if not h.local else []
        planned = ", ".join([f"bridge {b}" for b in bridges] + [f"{t.device} VNI {t.vni} on {t.bridge}" for t in tunnels]) or "nothing stretched"
        try:
            links = {link["name"]: link for link in linux_bridge.list_links(h.lab_namespace)} if h.local else read_links(plan, h)
        except VnetlabError as exc:
            rows.append(InspectRow(f"hypervisor {h.name}", planned, "unreachable", [str(exc)]))
            continue
        problems = [f"bridge {b} is {'missing' if b not in links else links[b]['state']}" for b in bridges if links.get(b, {}).get("state") != "up"]
        problems += [f"VXLAN {t.device} is missing or not a port of {t.bridge}" for t in tunnels if links.get(t.device, {}).get("master") != t.bridge]
        state = ", ".join([f"bridge {b} {links[b]['state']}" for b in bridges if b in links] + [f"{t.device} → {links[t.device]['master']} {links[t.device]['state']}" for t in tunnels if t.device in links]) or "—"
        rows.append(InspectRow(f"hypervisor {h.name}" + (" (this machine)" if h.local else f" namespace {h.lab_namespace}"), planned, state, problems))
    return rows


def graph_hosts(plan: Plan, drawing: Any) -> None:
    part = _part(plan)
    if part is None:
        return
    for h in part.hosts:
        label = f"hypervisor {h.name}" + (" (this machine)" if h.local else " (simulated)" if h.simulated else f" ({h.address})")
        drawing.cluster(f"hv_{h.name}", label, [drawing.node_ids[v] for v in h.vms if v in drawing.node_ids])


# -- the feature ---------------------------------------------------------------------------------


class Hypervisors(Feature):
    name = "hypervisors"
    model = MODEL
    judges = {"overlay": judge_overlay}

    def __init__(self) -> None:
        shells = Shells()  # this feature object's: one connection per hypervisor across a teardown's removals
        self.removers = {
            "sim-sshd": stop_sim_sshd, "sim-host": remove_sim_host, "overlay-vxlan": remove_overlay_vxlan, "sim-vxlan": remove_sim_vxlan,
            **{kind: functools.partial(remover, shells) for kind, remover in (
                ("host-files", remove_host_files), ("host-namespace", remove_host_namespace), ("host-vxlan", remove_host_vxlan),
                ("host-tap", remove_host_taps), ("host-taps", remove_host_taps),
            )},
        }

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = plan_hosts(ctx)
        if part is None:
            return None
        placed = hosted(part)
        notes = tuple(f"hypervisor {h.name}: {', '.join(h.vms) or 'no guests'}" + (" (simulated)" if h.simulated else " (this machine)" if h.local else "") for h in part.hosts)
        return PlanPart(data=part, resources=resources(part, ctx.lab, ctx.vms, placed), hosted=placed, notes=notes)

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if part is None:
            return {}
        return {"hypervisors": [
            {
                "name": h.name, "this_machine": h.local, "simulated": h.simulated, "uri": h.uri, "underlay": h.underlay_ip,
                "lab_namespace": h.lab_namespace, "guests": list(h.vms), "bridges": [b for b, _ in h.bridges],
                "files": str(h.folder) if h.folder else None,
            }
            for h in part.hosts
        ], "overlay": {"dstport": part.port, "mtu": part.policy, "tunnels": [
            {"hypervisor": t.host, "bridge": t.bridge, "device": t.device, "vni": t.vni, "local": t.local_ip, "peers": list(t.peers), "mtu": t.mtu}
            for t in part.tunnels
        ]}}

    def apply(self, plan: Plan, ctx: Any) -> None:
        apply_hosts(plan, ctx)

    def boot(self, plan: Plan, state: LabState, conn: Any, vm: PlannedVM) -> bool:
        part = _part(plan)
        if part is None or vm.host is None:
            return False
        boot_hosted(plan, state, conn, vm)
        return True

    def console(self, plan: Plan, vm: PlannedVM) -> Any:
        part = _part(plan)
        if part is None or vm.host is None:
            return None
        return console_over_sftp(plan, vm)

    def links_of(self, plan: Plan, vm: PlannedVM) -> dict[str, dict] | None:
        part = _part(plan)
        if part is None or vm.host is None:
            return None
        return read_links(plan, part.host(vm.host))

    def inspect(self, plan: Plan) -> list[InspectRow]:
        return inspect_rows(plan)

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        return f"Guest NICs on stretched bridges: MTU 1450 ({len(part.guest_mtu)} guest(s))" if part and part.guest_mtu else None

    def configure(self, plan: Plan, sessions: dict[str, Any], run_dir: Path) -> None:
        part = _part(plan)
        assert part is not None
        for vm, nics in part.guest_mtu.items():
            sessions[vm].run("; ".join(f"ip link set dev {q(n)} mtu 1450" for n in nics))

    def explain(self, plan: Plan) -> list[Section]:
        return explain_sections(plan)

    def graph(self, plan: Plan, drawing: Any) -> None:
        graph_hosts(plan, drawing)
