"""The scenario model: what a lab file may say, and the rules it must obey.

Shape rules (types, unknown keys, patterns, ranges) live in the field specs and
are enforced while loading; cross-field rules (references, subnets, unique
addresses) are checked in `validate` with the line of the offending field.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vnetlab.model.typed_yaml import Located, Problem, ValidationError, load_typed, read_text, spec

NAME = r"[a-z][a-z0-9-]*"
IFACE_MAX = 15  # IFNAMSIZ - 1: the kernel's limit for interface names
VM_NAME_MAX = 20
RESERVED_IFACES = {"lo", "mgmt0"}
DEFAULT_MANAGEMENT_SUBNET = "172.30.255.0/24"


@dataclass(frozen=True)
class Bridge:
    name: str = spec("bridge name inside the lab namespace", pattern=NAME, max_length=IFACE_MAX)
    type: Literal["linux", "ovs"] = spec("switch backend", default="linux")
    subnet: str | None = spec("IPv4 subnet of the bridge's segment, e.g. 10.1.1.0/24; addresses on it must fit", default=None)
    gateway: str | None = spec("IPv4 address the lab namespace (playing the host) takes on this bridge, e.g. 10.2.0.1; containers route through it", default=None)
    nat: str | None = spec("name of a routed uplink to masquerade this bridge's subnet out of (enables ip_forward)", default=None, pattern=NAME, max_length=IFACE_MAX)


@dataclass(frozen=True)
class Nic:
    bridge: str = spec("name of the bridge this vNIC is a port of", pattern=NAME, max_length=IFACE_MAX)
    address: str | None = spec("IPv4 address with prefix, e.g. 10.1.1.2/24", default=None)
    name: str | None = spec("interface name inside the guest (default eth0, eth1, …)", default=None, pattern=NAME, max_length=IFACE_MAX)


@dataclass(frozen=True)
class VM:
    name: str = spec("VM name (also its hostname)", pattern=NAME, max_length=VM_NAME_MAX)
    nics: list[Nic] = spec("data NICs, each a tap on a bridge", min_items=1)
    memory: int = spec("guest RAM in MiB", default=128, minimum=64, maximum=4096)
    vcpus: int = spec("virtual CPUs", default=1, minimum=1, maximum=8)

    def nic_name(self, index: int) -> str:
        return self.nics[index].name or f"eth{index}"


NODE_NAME_MAX = IFACE_MAX - 3  # the lab end of a container's veth is named ve-<name>


@dataclass(frozen=True)
class ContainerNic:
    bridge: str = spec("bridge the container's veth is a port of", pattern=NAME, max_length=IFACE_MAX)
    address: str = spec("IPv4 address with prefix, e.g. 10.2.0.2/24")


@dataclass(frozen=True)
class Container:
    """A container as the tutorial draws it: a network namespace joined to a bridge by a veth pair."""

    name: str = spec("container name (its namespace is vnl-<lab>.<name>)", pattern=NAME, max_length=NODE_NAME_MAX)
    nic: ContainerNic = spec("its eth0: a veth whose other end is a port of a bridge")


@dataclass(frozen=True)
class Uplink:
    """The host's eth0: a veth from the lab namespace into the namespace of an outside host."""

    name: str = spec("name of the lab end (plays the host's eth0)", pattern=NAME, max_length=IFACE_MAX)
    bridge: str | None = spec("bridged uplink: the lab end is an unaddressed port of this bridge", default=None, pattern=NAME, max_length=IFACE_MAX)
    address: str | None = spec("routed uplink: the lab end's IPv4 address with prefix (the host's outside address)", default=None)

    def check_shape(self) -> list[str]:
        return [] if (self.bridge is None) != (self.address is None) else ["expected exactly one of: bridge (bridged uplink), address (routed uplink)"]


@dataclass(frozen=True)
class Host:
    """A machine outside the lab host ("physical LAN", "internet"): its own namespace behind an uplink."""

    name: str = spec("host name (its namespace is vnl-<lab>.<name>)", pattern=NAME, max_length=NODE_NAME_MAX)
    address: str = spec("IPv4 address with prefix of its eth0, on the uplink's segment")
    uplink: Uplink = spec("the veth that connects it to the lab host")


@dataclass(frozen=True)
class PingCheck:
    source: str = spec("VM, container or host that sends the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)
    to: str = spec("target VM, container or host name, or an IPv4 address")
    count: int = spec("echo requests to send", default=3, minimum=1, maximum=100)
    expect: Literal["success", "failure"] = spec("whether the ping must succeed or must fail", default="success")
    via: str | None = spec("WireGuard tunnel whose address of the target VM to ping (e.g. wg0)", default=None, pattern=NAME, max_length=IFACE_MAX)


@dataclass(frozen=True)
class CaptureCheck:
    between: list[str] = spec("the two nodes (VMs, containers, hosts) whose exchange must be seen", min_items=2)
    expect: list[Literal["arp", "icmp-echo", "bridged", "masqueraded", "wireguard-udp", "no-plaintext-tunnel"]] = spec("what must be seen between them", min_items=1)
    bridge: str | None = spec("bridge to capture on for the whole check phase", default=None, pattern=NAME, max_length=IFACE_MAX)
    interface: str | None = spec("an uplink of the lab namespace to capture on instead of a bridge", default=None, pattern=NAME, max_length=IFACE_MAX)

    def check_shape(self) -> list[str]:
        problems = [] if len(self.between) == 2 else [f"between: expected exactly two node names, got {len(self.between)}"]
        return problems + ([] if (self.bridge is None) != (self.interface is None) else ["expected exactly one of: bridge, interface"])

    @property
    def on(self) -> str:
        """The lab-namespace interface captured on (a bridge or an uplink)."""
        return self.bridge or self.interface or ""


@dataclass(frozen=True)
class UnaddressedCheck:
    interface: str = spec("bridge or uplink of the lab namespace that must carry no IPv4 address (bridged: the host's IP stack stays out)", pattern=NAME, max_length=IFACE_MAX)


@dataclass(frozen=True)
class PerfCheck:
    source: str = spec("node running the iperf3 client and the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)
    to: str = spec("node running the iperf3 server", pattern=NAME, max_length=VM_NAME_MAX)
    seconds: int = spec("iperf3 test length", default=2, minimum=1, maximum=10)
    pings: int = spec("pings for the latency figure", default=5, minimum=1, maximum=50)


@dataclass(frozen=True)
class WireGuardCheck:
    tunnel: str = spec("WireGuard interface name of a tunnel in the scenario's wireguard section", pattern=NAME, max_length=IFACE_MAX)
    between: list[str] = spec("the two member VMs that must have completed a handshake", min_items=2)

    def check_shape(self) -> list[str]:
        return [] if len(self.between) == 2 else [f"between: expected exactly two VM names, got {len(self.between)}"]


@dataclass(frozen=True)
class OpCheck:
    action: Literal["list", "detach", "attach", "link-down", "link-up", "add-address", "delete-address", "delete-tap", "delete-bridge"] = spec("device operation run on the lab's host side")
    bridge: str = spec("linux bridge the operation is about", pattern=NAME, max_length=IFACE_MAX)
    vm: str | None = spec("VM whose tap on the bridge is detached/attached/deleted", default=None, pattern=NAME, max_length=VM_NAME_MAX)
    address: str | None = spec("address with prefix for add-address/delete-address, e.g. 10.1.1.1/24", default=None)
    expect: Literal["success", "error"] = spec("whether the kernel must carry the operation out or refuse it", default="success")


@dataclass(frozen=True)
class Check:
    ping: PingCheck | None = spec("ping from one VM to another", default=None)
    capture: CaptureCheck | None = spec("assert what crossed a bridge", default=None)
    unaddressed: UnaddressedCheck | None = spec("assert the lab namespace holds no address on an interface", default=None)
    perf: PerfCheck | None = spec("measure throughput (iperf3) and latency (ping) between two nodes", default=None)
    wireguard: WireGuardCheck | None = spec("assert a WireGuard handshake happened between two members", default=None)
    op: OpCheck | None = spec("perform a device operation on the running lab and verify its effect", default=None)

    def check_shape(self) -> list[str]:
        kinds = [f.name for f in dataclasses.fields(self)]
        given = [k for k in kinds if getattr(self, k) is not None]
        return [] if len(given) == 1 else [f"expected exactly one of: {', '.join(kinds)}"]

    @property
    def kind(self) -> str:
        """The one field that is set (each field of Check is one kind of check)."""
        return next(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    @property
    def spec(self):
        return getattr(self, self.kind)


@dataclass(frozen=True)
class WireGuardMember:
    vm: str = spec("member VM", pattern=NAME, max_length=VM_NAME_MAX)
    address: str = spec("tunnel address with prefix inside the VM, e.g. 192.168.2.1/24")


@dataclass(frozen=True)
class WireGuardTunnel:
    name: str = spec("WireGuard interface name inside the member VMs", pattern=NAME, max_length=IFACE_MAX)
    underlay: str = spec("bridge whose addresses carry the encrypted UDP (peer endpoints)", pattern=NAME, max_length=IFACE_MAX)
    members: list[WireGuardMember] = spec("VMs joined by the tunnel (each peers with every other)", min_items=2)
    listen_port: int = spec("UDP port every member listens on", key="listen-port", default=51820, minimum=1, maximum=65535)


@dataclass(frozen=True)
class Management:
    subnet: str = spec("management subnet inside the lab namespace (SSH to guests)", default=DEFAULT_MANAGEMENT_SUBNET)


@dataclass(frozen=True)
class Scenario:
    name: str = spec("scenario name", pattern=NAME, max_length=40)
    description: str = spec("one line shown by `vnetlab list`", max_length=200)
    bridges: list[Bridge] = spec("bridges (switches) of the lab", min_items=1)
    vms: list[VM] = spec("virtual machines", min_items=1)
    checks: list[Check] = spec("what must hold once the lab is up", default_factory=list)
    wireguard: list[WireGuardTunnel] = spec("WireGuard tunnels between VMs, configured over SSH after addressing", default_factory=list)
    management: Management = spec("management network settings", default_factory=Management)
    containers: list[Container] = spec("containers: namespaces joined to a bridge by a veth pair", default_factory=list)
    hosts: list[Host] = spec("outside hosts (physical LAN, internet), each in a namespace behind an uplink", default_factory=list)

    def vm(self, name: str) -> VM:
        return next(v for v in self.vms if v.name == name)


def _interface(text: str) -> ipaddress.IPv4Interface | None:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    return iface if isinstance(iface, ipaddress.IPv4Interface) and "/" in text else None


def _network(text: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


_SPECIAL_BLOCKS = (
    ("'this network'", ipaddress.IPv4Network("0.0.0.0/8")),
    ("loopback", ipaddress.IPv4Network("127.0.0.0/8")),
    ("multicast", ipaddress.IPv4Network("224.0.0.0/4")),
    ("reserved and broadcast", ipaddress.IPv4Network("240.0.0.0/4")),
)


def _unusable(net: ipaddress.IPv4Network) -> str | None:
    """Why a network cannot be a lab segment (the guests' kernel refuses or misroutes these ranges)."""
    for what, block in _SPECIAL_BLOCKS:
        if net.overlaps(block):
            return f"{net} overlaps {block} ({what} addresses): not usable on a lab segment"
    return None


class _Rules:
    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        probe = path
        while line is None and probe:
            probe = probe.rpartition(".")[0] if "." in probe else ""
            line = self.lines.get(probe)
        self.problems.append(Problem(self.file, line, path, message))


def validate(scenario: Scenario, file: str, lines: dict[str, int]) -> None:
    """Cross-field rules; raises ValidationError with every broken one."""
    r = _Rules(file, lines)
    mgmt = _network(scenario.management.subnet)
    if mgmt is None:
        r.add("management.subnet", f"expected an IPv4 network like 172.30.255.0/24, got {scenario.management.subnet!r}")
    elif _unusable(mgmt):
        r.add("management.subnet", str(_unusable(mgmt)))
    elif mgmt.num_addresses < 8:
        r.add("management.subnet", "too small: needs room for a gateway and every VM (use /24)")
    elif mgmt.num_addresses - 3 < len(scenario.vms):
        r.add("management.subnet", f"too small for {len(scenario.vms)} VMs")

    bridges: dict[str, ipaddress.IPv4Network | None] = {}
    for i, br in enumerate(scenario.bridges):
        path = f"bridges[{i}]"
        if br.name in bridges:
            r.add(f"{path}.name", f"duplicate bridge name {br.name!r}")
        if br.name.startswith("vnl"):
            r.add(f"{path}.name", "names starting with 'vnl' are reserved for vnetlab's own devices")
        if br.name == "lo":
            r.add(f"{path}.name", "'lo' is the lab namespace's loopback interface")
        net = None
        if br.subnet is not None:
            net = _network(br.subnet)
            if net is None:
                r.add(f"{path}.subnet", f"expected an IPv4 network like 10.1.1.0/24 (host bits zero), got {br.subnet!r}")
            elif _unusable(net):
                r.add(f"{path}.subnet", str(_unusable(net)))
            elif mgmt is not None and net.overlaps(mgmt):
                r.add(f"{path}.subnet", f"{net} overlaps the management subnet {mgmt} (change management.subnet)")
        bridges.setdefault(br.name, net)

    vm_names: set[str] = set()
    addresses: dict[ipaddress.IPv4Address, str] = {}
    for i, vm in enumerate(scenario.vms):
        path = f"vms[{i}]"
        if vm.name in vm_names:
            r.add(f"{path}.name", f"duplicate VM name {vm.name!r}")
        vm_names.add(vm.name)
        nic_names: set[str] = set()
        for j, nic in enumerate(vm.nics):
            npath = f"{path}.nics[{j}]"
            name = vm.nic_name(j)
            if name in RESERVED_IFACES:
                r.add(f"{npath}.name", f"{name!r} is reserved inside the guest")
            if name in nic_names:
                r.add(f"{npath}.name", f"duplicate interface name {name!r} in VM {vm.name!r}")
            nic_names.add(name)
            if nic.bridge not in bridges:
                r.add(f"{npath}.bridge", f"no bridge named {nic.bridge!r} (bridges: {', '.join(bridges) or 'none'})")
            if nic.address is None:
                continue
            iface = _interface(nic.address)
            if iface is None:
                r.add(f"{npath}.address", f"expected an IPv4 address with prefix like 10.1.1.2/24, got {nic.address!r}")
                continue
            net = bridges.get(nic.bridge)
            if net is not None and iface.network != net:
                r.add(f"{npath}.address", f"{nic.address} is not in subnet {net} of bridge {nic.bridge!r}")
            elif _unusable(ipaddress.IPv4Network(iface.ip)):
                r.add(f"{npath}.address", str(_unusable(ipaddress.IPv4Network(iface.ip))))
            elif iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
                r.add(f"{npath}.address", f"{iface.ip} is the network or broadcast address of {iface.network}")
            elif mgmt is not None and iface.network.overlaps(mgmt):
                r.add(f"{npath}.address", f"{iface.network} overlaps the management subnet {mgmt}")
            if iface.ip in addresses:
                r.add(f"{npath}.address", f"{iface.ip} is already used by {addresses[iface.ip]}")
            else:
                addresses[iface.ip] = f"{vm.name} {name}"

    _validate_nodes(r, scenario, bridges, addresses, mgmt)
    for i, tunnel in enumerate(scenario.wireguard):
        _validate_tunnel(r, scenario, i, addresses)
    for i, check in enumerate(scenario.checks):
        path = f"checks[{i}]"
        if check.ping is not None:
            _validate_ping(r, scenario, check.ping, f"{path}.ping", vm_names)
        if check.capture is not None:
            _validate_capture(r, scenario, check.capture, f"{path}.capture", vm_names)
        if check.wireguard is not None:
            _validate_wireguard_check(r, scenario, check.wireguard, f"{path}.wireguard")
        if check.op is not None:
            _validate_op(r, scenario, check.op, f"{path}.op")
        if check.unaddressed is not None:
            _validate_unaddressed(r, scenario, check.unaddressed, f"{path}.unaddressed")
        if check.perf is not None:
            _validate_perf(r, scenario, check.perf, f"{path}.perf")
    if r.problems:
        raise ValidationError(r.problems)


def _validate_ping(r: _Rules, scenario: Scenario, ping: PingCheck, path: str, vm_names: set[str]) -> None:
    if ping.via is None and ({ping.source, ping.to} & node_names(scenario)):
        _validate_node_ping(r, scenario, ping, path)
        return
    if ping.source not in vm_names:
        r.add(f"{path}.from", f"no VM named {ping.source!r}")
        return
    if ping.via is not None:
        tunnel = tunnel_named(scenario, ping.via)
        if tunnel is None:
            r.add(f"{path}.via", f"no WireGuard tunnel named {ping.via!r} (tunnels: {', '.join(t.name for t in scenario.wireguard) or 'none'})")
        elif ping.to not in vm_names:
            r.add(f"{path}.to", f"with via, expected a VM name (a member of tunnel {ping.via!r}), got {ping.to!r}")
        elif ping.to == ping.source:
            r.add(f"{path}.to", "a VM pinging itself proves nothing about the tunnel")
        else:
            members = {m.vm for m in tunnel.members}
            for key, name in (("from", ping.source), ("to", ping.to)):
                if name not in members:
                    r.add(f"{path}.{key}", f"VM {name!r} is not a member of tunnel {ping.via!r}")
        return
    if ping.to in vm_names:
        if ping.to == ping.source:
            r.add(f"{path}.to", "a VM pinging itself proves nothing about the bridge")
        elif route_to(scenario, ping.source, ping.to) is None:
            r.add(f"{path}.to", f"{ping.source!r} and {ping.to!r} have no addressed NICs on a common subnet")
        return
    try:
        ipaddress.IPv4Address(ping.to)
    except ValueError:
        r.add(f"{path}.to", f"expected a VM name or an IPv4 address, got {ping.to!r}")


def _validate_capture(r: _Rules, scenario: Scenario, cap: CaptureCheck, path: str, vm_names: set[str]) -> None:
    if cap.interface is not None or set(cap.between) & node_names(scenario) or {"bridged", "masqueraded"} & set(cap.expect):
        _validate_node_capture(r, scenario, cap, path)
        return
    if cap.bridge not in {b.name for b in scenario.bridges}:
        r.add(f"{path}.bridge", f"no bridge named {cap.bridge!r}")
        return
    for k, name in enumerate(cap.between):
        if name not in vm_names:
            r.add(f"{path}.between[{k}]", f"no VM named {name!r}")
        elif not any(n.bridge == cap.bridge and n.address for n in scenario.vm(name).nics):
            r.add(f"{path}.between[{k}]", f"VM {name!r} has no addressed NIC on bridge {cap.bridge!r}")
    if len(set(cap.between)) != len(cap.between):
        r.add(f"{path}.between", "expected two different VMs")
    tunnel_expectations = [e for e in cap.expect if e in ("wireguard-udp", "no-plaintext-tunnel")]
    if tunnel_expectations and capture_tunnel(scenario, cap) is None:
        r.add(f"{path}.expect", f"{', '.join(tunnel_expectations)} needs a WireGuard tunnel with underlay {cap.bridge!r} joining {' and '.join(cap.between)}")


def capture_tunnel(scenario: Scenario, cap: CaptureCheck) -> WireGuardTunnel | None:
    """The tunnel a capture's WireGuard expectations are about: on the captured bridge, joining both VMs."""
    return next((t for t in scenario.wireguard if t.underlay == cap.bridge and set(cap.between) <= {m.vm for m in t.members}), None)


def tunnel_named(scenario: Scenario, name: str) -> WireGuardTunnel | None:
    return next((t for t in scenario.wireguard if t.name == name), None)


def _validate_tunnel(r: _Rules, scenario: Scenario, index: int, addresses: dict[ipaddress.IPv4Address, str]) -> None:
    """Members exist and sit on the underlay; tunnel addresses share one subnet clear of every other."""
    tunnel, path = scenario.wireguard[index], f"wireguard[{index}]"
    if sum(t.name == tunnel.name for t in scenario.wireguard) > 1:
        r.add(f"{path}.name", f"duplicate tunnel name {tunnel.name!r}")
    if tunnel.name in RESERVED_IFACES:
        r.add(f"{path}.name", f"{tunnel.name!r} is reserved inside the guest")
    members = {m.vm for m in tunnel.members}
    for other in scenario.wireguard[:index]:
        shared = sorted(members & {m.vm for m in other.members})
        if other.listen_port == tunnel.listen_port and shared:
            r.add(f"{path}.listen-port", f"{tunnel.listen_port} is already the port of tunnel {other.name!r} in VM {shared[0]!r}")
    bridge = next((b for b in scenario.bridges if b.name == tunnel.underlay), None)
    if bridge is None:
        r.add(f"{path}.underlay", f"no bridge named {tunnel.underlay!r} (bridges: {', '.join(b.name for b in scenario.bridges)})")
    vm_names = {v.name for v in scenario.vms}
    seen: set[str] = set()
    network: ipaddress.IPv4Network | None = None
    for k, member in enumerate(tunnel.members):
        mpath = f"{path}.members[{k}]"
        if member.vm in seen:
            r.add(f"{mpath}.vm", f"duplicate member {member.vm!r}")
        seen.add(member.vm)
        if member.vm not in vm_names:
            r.add(f"{mpath}.vm", f"no VM named {member.vm!r}")
        else:
            vm = scenario.vm(member.vm)
            if bridge is not None and not any(n.bridge == bridge.name and n.address for n in vm.nics):
                r.add(f"{mpath}.vm", f"VM {member.vm!r} has no addressed NIC on bridge {bridge.name!r} (the tunnel's underlay)")
            if tunnel.name in {vm.nic_name(j) for j in range(len(vm.nics))}:
                r.add(f"{path}.name", f"{tunnel.name!r} is already an interface name in VM {member.vm!r}")
        iface = _interface(member.address)
        if iface is None:
            r.add(f"{mpath}.address", f"expected an IPv4 address with prefix like 192.168.2.1/24, got {member.address!r}")
            continue
        if network is None:
            network = iface.network
        elif iface.network != network:
            r.add(f"{mpath}.address", f"{member.address} is not in the tunnel's subnet {network} (from members[0])")
            continue
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
            r.add(f"{mpath}.address", f"{iface.ip} is the network or broadcast address of {iface.network}")
        clash = next((n for n in _segment_networks(scenario) if n.overlaps(iface.network)), None)
        if clash is not None:
            r.add(f"{mpath}.address", f"{iface.network} overlaps {clash}, a subnet already in the lab (a tunnel needs its own)")
        if iface.ip in addresses:
            r.add(f"{mpath}.address", f"{iface.ip} is already used by {addresses[iface.ip]}")
        else:
            addresses[iface.ip] = f"{member.vm} {tunnel.name}"


def _segment_networks(scenario: Scenario) -> list[ipaddress.IPv4Network]:
    """The management subnet and every bridge/NIC subnet (a tunnel subnet must overlap none)."""
    nets = [_network(scenario.management.subnet)]
    nets += [_network(b.subnet) for b in scenario.bridges if b.subnet]
    nets += [i.network for v in scenario.vms for n in v.nics if n.address and (i := _interface(n.address)) is not None]
    return [n for n in nets if n is not None]


def _validate_wireguard_check(r: _Rules, scenario: Scenario, check: WireGuardCheck, path: str) -> None:
    tunnel = tunnel_named(scenario, check.tunnel)
    if tunnel is None:
        r.add(f"{path}.tunnel", f"no WireGuard tunnel named {check.tunnel!r} (tunnels: {', '.join(t.name for t in scenario.wireguard) or 'none'})")
        return
    members = {m.vm for m in tunnel.members}
    for k, name in enumerate(check.between):
        if name not in members:
            r.add(f"{path}.between[{k}]", f"VM {name!r} is not a member of tunnel {check.tunnel!r}")
    if len(set(check.between)) != len(check.between):
        r.add(f"{path}.between", "expected two different VMs")


_OP_NEEDS_VM = {"detach", "attach", "delete-tap"}
_OP_NEEDS_ADDRESS = {"add-address", "delete-address"}


def _validate_op(r: _Rules, scenario: Scenario, op: OpCheck, path: str) -> None:
    bridge = next((b for b in scenario.bridges if b.name == op.bridge), None)
    if bridge is None:
        r.add(f"{path}.bridge", f"no bridge named {op.bridge!r}")
    elif bridge.type != "linux":
        r.add(f"{path}.bridge", f"device operations work on linux bridges; {op.bridge!r} is type {bridge.type}")
    if op.action in _OP_NEEDS_VM:
        if op.vm is None:
            r.add(f"{path}.vm", f"action {op.action} needs the VM whose tap it is about")
        elif op.vm not in {v.name for v in scenario.vms}:
            r.add(f"{path}.vm", f"no VM named {op.vm!r}")
        elif bridge is not None and not any(n.bridge == op.bridge for n in scenario.vm(op.vm).nics):
            r.add(f"{path}.vm", f"VM {op.vm!r} has no NIC on bridge {op.bridge!r}")
    elif op.vm is not None:
        r.add(f"{path}.vm", f"action {op.action} takes no vm")
    if op.action in _OP_NEEDS_ADDRESS:
        if op.address is None:
            r.add(f"{path}.address", f"action {op.action} needs an address with prefix, e.g. 10.1.1.1/24")
        elif _interface(op.address) is None:
            r.add(f"{path}.address", f"expected an IPv4 address with prefix like 10.1.1.1/24, got {op.address!r}")
    elif op.address is not None:
        r.add(f"{path}.address", f"action {op.action} takes no address")


# -- containers, outside hosts, uplinks, gateway and NAT ------------------------


def node_names(scenario: Scenario) -> set[str]:
    """Containers and hosts: lab nodes that are namespaces rather than guests."""
    return {c.name for c in scenario.containers} | {h.name for h in scenario.hosts}


def container_veth(name: str) -> str:
    """Lab-namespace end of a container's veth pair."""
    return f"ve-{name}"


def uplink_segment(uplink: Uplink) -> str:
    """The segment a host sits on: its bridge, or the point-to-point segment of a routed uplink."""
    return uplink.bridge or f"uplink {uplink.name}"


def node_interfaces(scenario: Scenario, name: str) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(segment, address) of every addressed interface of a VM, container or host."""
    pairs: list[tuple[str, str | None]] = []
    pairs += [(n.bridge, n.address) for v in scenario.vms if v.name == name for n in v.nics]
    pairs += [(c.nic.bridge, c.nic.address) for c in scenario.containers if c.name == name]
    pairs += [(uplink_segment(h.uplink), h.address) for h in scenario.hosts if h.name == name]
    return [(seg, iface) for seg, text in pairs if text and (iface := _interface(text)) is not None]


def route_to(scenario: Scenario, source: str, target: str) -> ipaddress.IPv4Interface | None:
    """The address of target that source reaches: on a shared segment, or through its bridge's NAT uplink."""
    theirs = node_interfaces(scenario, target)
    for seg, mine in node_interfaces(scenario, source):
        for tseg, iface in theirs:
            if seg == tseg and mine.network == iface.network:
                return iface
    container = next((c for c in scenario.containers if c.name == source), None)
    bridge = next((b for b in scenario.bridges if container and b.name == container.nic.bridge), None)
    host = next((h for h in scenario.hosts if h.name == target), None)
    if bridge is not None and bridge.nat and host is not None and host.uplink.name == bridge.nat and theirs:
        return theirs[0][1]
    return None


def _validate_address(r: _Rules, path: str, text: str, net: ipaddress.IPv4Network | None, where: str) -> ipaddress.IPv4Interface | None:
    iface = _interface(text)
    if iface is None:
        r.add(path, f"expected an IPv4 address with prefix like 10.1.1.2/24, got {text!r}")
    elif net is not None and iface.network != net:
        r.add(path, f"{text} is not in subnet {net} of {where}")
    elif iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
        r.add(path, f"{iface.ip} is the network or broadcast address of {iface.network}")
    else:
        return iface
    return None


def _claim(r: _Rules, path: str, ip: ipaddress.IPv4Address, owner: str, addresses: dict[ipaddress.IPv4Address, str]) -> None:
    if ip in addresses:
        r.add(path, f"{ip} is already used by {addresses[ip]}")
    else:
        addresses[ip] = owner


def _validate_nodes(
    r: _Rules,
    scenario: Scenario,
    bridges: dict[str, ipaddress.IPv4Network | None],
    addresses: dict[ipaddress.IPv4Address, str],
    mgmt: ipaddress.IPv4Network | None,
) -> None:
    """Containers, hosts and their uplinks, bridge gateways and NAT: names unique per lab
    (one namespace each, one lab-namespace interface each), addresses fitting their segment."""
    names = {v.name for v in scenario.vms}
    lab_ifaces = set(bridges) | {"lo"}
    for i, br in enumerate(scenario.bridges):
        if br.gateway is None:
            continue
        net = bridges.get(br.name)
        if br.subnet is None:
            r.add(f"bridges[{i}].gateway", "a gateway needs the bridge's subnet")
        elif net is not None:
            gw = _validate_address(r, f"bridges[{i}].gateway", f"{br.gateway}/{net.prefixlen}", net, f"bridge {br.name!r}")
            if gw is not None:
                _claim(r, f"bridges[{i}].gateway", gw.ip, f"the gateway of {br.name}", addresses)
    for i, c in enumerate(scenario.containers):
        path = f"containers[{i}]"
        if c.name in names:
            r.add(f"{path}.name", f"{c.name!r} is already the name of a VM, container or host (each node has its own namespace)")
        names.add(c.name)
        if container_veth(c.name) in lab_ifaces:
            r.add(f"{path}.name", f"its veth {container_veth(c.name)!r} clashes with another interface of the lab namespace")
        lab_ifaces.add(container_veth(c.name))
        if c.nic.bridge not in bridges:
            r.add(f"{path}.nic.bridge", f"no bridge named {c.nic.bridge!r} (bridges: {', '.join(bridges) or 'none'})")
            continue
        iface = _validate_address(r, f"{path}.nic.address", c.nic.address, bridges[c.nic.bridge], f"bridge {c.nic.bridge!r}")
        if iface is not None:
            _claim(r, f"{path}.nic.address", iface.ip, f"{c.name} eth0", addresses)
    routed: set[str] = set()
    outside_nets: list[ipaddress.IPv4Network] = []  # each routed uplink is its own segment of the lab namespace
    for i, h in enumerate(scenario.hosts):
        path = f"hosts[{i}]"
        up = h.uplink
        if h.name in names:
            r.add(f"{path}.name", f"{h.name!r} is already the name of a VM, container or host (each node has its own namespace)")
        names.add(h.name)
        if up.name.startswith("vnl") or up.name in lab_ifaces:
            r.add(f"{path}.uplink.name", f"{up.name!r} is already an interface of the lab namespace (or reserved)")
        lab_ifaces.add(up.name)
        if up.bridge is not None:
            if up.bridge not in bridges:
                r.add(f"{path}.uplink.bridge", f"no bridge named {up.bridge!r} (bridges: {', '.join(bridges) or 'none'})")
                continue
            iface = _validate_address(r, f"{path}.address", h.address, bridges[up.bridge], f"bridge {up.bridge!r} (the uplink bridges it)")
            if iface is not None:
                _claim(r, f"{path}.address", iface.ip, f"{h.name} eth0", addresses)
            continue
        routed.add(up.name)
        outside = _validate_address(r, f"{path}.uplink.address", up.address or "", None, "")
        if outside is None:
            continue
        clash = next((n for n in [mgmt, *bridges.values(), *outside_nets] if n is not None and n.overlaps(outside.network)), None)
        if clash is not None:
            r.add(f"{path}.uplink.address", f"{outside.network} overlaps {clash}, a subnet already in the lab (the outside needs its own)")
        outside_nets.append(outside.network)
        _claim(r, f"{path}.uplink.address", outside.ip, f"uplink {up.name}", addresses)
        iface = _validate_address(r, f"{path}.address", h.address, outside.network, f"uplink {up.name!r}")
        if iface is not None:
            _claim(r, f"{path}.address", iface.ip, f"{h.name} eth0", addresses)
    for i, br in enumerate(scenario.bridges):
        if br.nat is None:
            continue
        if br.gateway is None:
            r.add(f"bridges[{i}].nat", "NAT needs a gateway on the bridge (the containers' next hop)")
        if br.nat not in routed:
            r.add(f"bridges[{i}].nat", f"no routed uplink named {br.nat!r} (routed uplinks: {', '.join(sorted(routed)) or 'none'})")


def _validate_node_ping(r: _Rules, scenario: Scenario, ping: PingCheck, path: str) -> None:
    everyone = node_names(scenario) | {v.name for v in scenario.vms}
    if ping.source not in everyone:
        r.add(f"{path}.from", f"no VM, container or host named {ping.source!r}")
    elif ping.to == ping.source:
        r.add(f"{path}.to", "a node pinging itself proves nothing about the network")
    elif ping.to in everyone:
        if route_to(scenario, ping.source, ping.to) is None:
            r.add(f"{path}.to", f"{ping.source!r} has no route to {ping.to!r} (no common subnet, and no NAT uplink of its bridge leading there)")
    else:
        try:
            ipaddress.IPv4Address(ping.to)
        except ValueError:
            r.add(f"{path}.to", f"expected a VM, container or host name or an IPv4 address, got {ping.to!r}")


def _uplink_host(scenario: Scenario, name: str) -> Host | None:
    return next((h for h in scenario.hosts if h.uplink.name == name), None)


def _validate_node_capture(r: _Rules, scenario: Scenario, cap: CaptureCheck, path: str) -> None:
    """Captures involving containers/hosts or an uplink; 'bridged' and 'masqueraded' are about an uplink."""
    if cap.bridge is not None and cap.bridge not in {b.name for b in scenario.bridges}:
        r.add(f"{path}.bridge", f"no bridge named {cap.bridge!r}")
        return
    host = _uplink_host(scenario, cap.interface) if cap.interface else None
    if cap.interface is not None and host is None:
        r.add(f"{path}.interface", f"no uplink named {cap.interface!r} (uplinks: {', '.join(h.uplink.name for h in scenario.hosts) or 'none'})")
        return
    everyone = node_names(scenario) | {v.name for v in scenario.vms}
    for k, name in enumerate(cap.between):
        if name not in everyone:
            r.add(f"{path}.between[{k}]", f"no VM, container or host named {name!r}")
            return
    a, b = cap.between
    if a == b:
        r.add(f"{path}.between", "expected two different nodes")
        return
    if route_to(scenario, a, b) is None:
        r.add(f"{path}.between", f"{a!r} has no route to {b!r}: there is no exchange between them to capture")
    for e in cap.expect:
        if e in ("bridged", "masqueraded"):
            want = "bridged" if e == "bridged" else "routed"
            if host is None or (host.uplink.bridge is None) != (e == "masqueraded") or host.name != b:
                r.add(f"{path}.expect", f"{e} is judged on a {want} uplink (interface:) leading to between[1]")
            elif e == "masqueraded" and not any(c.name == a and any(br.name == c.nic.bridge and br.nat == cap.interface for br in scenario.bridges) for c in scenario.containers):
                r.add(f"{path}.between[0]", f"{e} needs a container whose bridge masquerades out of {cap.interface!r}")
        elif e not in ("arp", "icmp-echo"):
            r.add(f"{path}.expect", f"{e} is judged between VMs on a bridge, not with containers or hosts")
        elif e == "arp" and cap.bridge is not None and not all(any(seg == cap.bridge for seg, _ in node_interfaces(scenario, n)) for n in (a, b)):
            r.add(f"{path}.expect", f"arp needs both nodes addressed on bridge {cap.bridge!r}")


def _lab_interfaces(scenario: Scenario) -> set[str]:
    return {b.name for b in scenario.bridges} | {h.uplink.name for h in scenario.hosts}


def _validate_unaddressed(r: _Rules, scenario: Scenario, check: UnaddressedCheck, path: str) -> None:
    if check.interface not in _lab_interfaces(scenario):
        r.add(f"{path}.interface", f"no bridge or uplink named {check.interface!r}")


def _validate_perf(r: _Rules, scenario: Scenario, perf: PerfCheck, path: str) -> None:
    everyone = node_names(scenario) | {v.name for v in scenario.vms}
    for key, name in (("from", perf.source), ("to", perf.to)):
        if name not in everyone:
            r.add(f"{path}.{key}", f"no VM, container or host named {name!r}")
            return
    if perf.source == perf.to:
        r.add(f"{path}.to", "measuring a node against itself says nothing about the network")
    elif route_to(scenario, perf.source, perf.to) is None:
        r.add(f"{path}.to", f"{perf.source!r} has no route to {perf.to!r}")


def parse_scenario(text: str, file: str) -> Scenario:
    located: Located = load_typed(text, Scenario, file)
    validate(located.value, file, located.lines)
    return located.value


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(read_text(path), str(path))
