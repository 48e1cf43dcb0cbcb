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

from vnetlab.typed_yaml import Located, Problem, ValidationError, load_typed, read_text, spec

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


@dataclass(frozen=True)
class PingCheck:
    source: str = spec("VM that sends the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)
    to: str = spec("target VM name or IPv4 address")
    count: int = spec("echo requests to send", default=3, minimum=1, maximum=100)
    expect: Literal["success", "failure"] = spec("whether the ping must succeed or must fail", default="success")


@dataclass(frozen=True)
class CaptureCheck:
    bridge: str = spec("bridge to capture on for the whole check phase", pattern=NAME, max_length=IFACE_MAX)
    between: list[str] = spec("the two VMs whose exchange must be seen", min_items=2)
    expect: list[Literal["arp", "icmp-echo"]] = spec("what must be seen between them", min_items=1)

    def check_shape(self) -> list[str]:
        return [] if len(self.between) == 2 else [f"between: expected exactly two VM names, got {len(self.between)}"]


@dataclass(frozen=True)
class Check:
    ping: PingCheck | None = spec("ping from one VM to another", default=None)
    capture: CaptureCheck | None = spec("assert what crossed a bridge", default=None)

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
class Management:
    subnet: str = spec("management subnet inside the lab namespace (SSH to guests)", default=DEFAULT_MANAGEMENT_SUBNET)


@dataclass(frozen=True)
class Scenario:
    name: str = spec("scenario name", pattern=NAME, max_length=40)
    description: str = spec("one line shown by `vnetlab list`", max_length=200)
    bridges: list[Bridge] = spec("bridges (switches) of the lab", min_items=1)
    vms: list[VM] = spec("virtual machines", min_items=1)
    checks: list[Check] = spec("what must hold once the lab is up", default_factory=list)
    management: Management = spec("management network settings", default_factory=Management)

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
        net = None
        if br.subnet is not None:
            net = _network(br.subnet)
            if net is None:
                r.add(f"{path}.subnet", f"expected an IPv4 network like 10.1.1.0/24 (host bits zero), got {br.subnet!r}")
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
            elif iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
                r.add(f"{npath}.address", f"{iface.ip} is the network or broadcast address of {iface.network}")
            elif mgmt is not None and iface.network.overlaps(mgmt):
                r.add(f"{npath}.address", f"{iface.network} overlaps the management subnet {mgmt}")
            if iface.ip in addresses:
                r.add(f"{npath}.address", f"{iface.ip} is already used by {addresses[iface.ip]}")
            else:
                addresses[iface.ip] = f"{vm.name} {name}"

    for i, check in enumerate(scenario.checks):
        path = f"checks[{i}]"
        if check.ping is not None:
            _validate_ping(r, scenario, check.ping, f"{path}.ping", vm_names)
        if check.capture is not None:
            _validate_capture(r, scenario, check.capture, f"{path}.capture", vm_names)
    if r.problems:
        raise ValidationError(r.problems)


def _validate_ping(r: _Rules, scenario: Scenario, ping: PingCheck, path: str, vm_names: set[str]) -> None:
    if ping.source not in vm_names:
        r.add(f"{path}.from", f"no VM named {ping.source!r}")
        return
    if ping.to in vm_names:
        if ping.to == ping.source:
            r.add(f"{path}.to", "a VM pinging itself proves nothing about the bridge")
        elif not shared_segment(scenario, ping.source, ping.to):
            r.add(f"{path}.to", f"{ping.source!r} and {ping.to!r} have no addressed NICs on a common subnet")
        return
    try:
        ipaddress.IPv4Address(ping.to)
    except ValueError:
        r.add(f"{path}.to", f"expected a VM name or an IPv4 address, got {ping.to!r}")


def _validate_capture(r: _Rules, scenario: Scenario, cap: CaptureCheck, path: str, vm_names: set[str]) -> None:
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


def shared_segment(scenario: Scenario, a: str, b: str) -> tuple[int, int] | None:
    """Indexes of the NICs of VMs a and b that sit on one subnet, if any."""
    for i, na in enumerate(scenario.vm(a).nics):
        ia = _interface(na.address) if na.address else None
        for j, nb in enumerate(scenario.vm(b).nics):
            ib = _interface(nb.address) if nb.address else None
            if ia is not None and ib is not None and ia.network == ib.network and na.bridge == nb.bridge:
                return i, j
    return None


def parse_scenario(text: str, file: str) -> Scenario:
    located: Located = load_typed(text, Scenario, file)
    validate(located.value, file, located.lines)
    return located.value


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(read_text(path), str(path))
