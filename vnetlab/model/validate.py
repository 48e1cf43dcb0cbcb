"""Cross-field rules of a scenario, each problem reported with the line of the offending field.

Shape rules (types, unknown keys, patterns, ranges) are enforced while loading; the
rules here need the whole scenario: references, subnets, unique names and addresses,
checks that could prove nothing. The core checks bridges, VMs, pings and captures;
each feature's `ModelExtension.validate` and check validators then add theirs, sharing
one `Rules` object (the addresses already claimed, the bridges and their subnets).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vnetlab.backends.debian_tree import check_packages
from vnetlab.backends.image_kinds import DEBIAN, FILE, ImageRef
from vnetlab.backends.user_image import check_image_file
from vnetlab.errors import VnetlabError
from vnetlab.model import params
from vnetlab.model.addressing import (
    TOKENS, Address, Interface, bridge_entries, bridge_subnets, entry_family, known_interfaces, nic_addresses, nic_entries,
    parse_address, parse_interface, parse_network, read_nic, read_subnets, unusable_v6, uses_ipv6,
)
from vnetlab.model.scenario import RESERVED_IFACE_PREFIX, RESERVED_IFACES, Overlay, ScenarioModel, feature_nodes, split_link
from vnetlab.model.templates import render, scenario_variables
from vnetlab.model.typed_yaml import Located, Problem, ValidationError, load_typed, read_text

_SPECIAL_BLOCKS = (
    ("'this network'", ipaddress.IPv4Network("0.0.0.0/8")),
    ("loopback", ipaddress.IPv4Network("127.0.0.0/8")),
    ("multicast", ipaddress.IPv4Network("224.0.0.0/4")),
    ("reserved and broadcast", ipaddress.IPv4Network("240.0.0.0/4")),
)
CORE_FAMILIES = {"arp": 4, "icmp-echo": 4, "ndp": 6, "icmp6-echo": 6}  # the core's capture expectations, by the family they judge
ADDRESS_EXAMPLES = "an IPv4 or IPv6 address with prefix like 10.1.1.2/24 or fd00:1::2/64, dhcp or slaac"


def interface(text: str) -> ipaddress.IPv4Interface | None:
    """An IPv4 address with an explicit prefix, else None (the IPv4-only fields of features)."""
    iface = parse_interface(text)
    return iface if isinstance(iface, ipaddress.IPv4Interface) else None


def network(text: str) -> ipaddress.IPv4Network | None:
    net = parse_network(text)
    return net if isinstance(net, ipaddress.IPv4Network) else None


def unusable(net: ipaddress.IPv4Network) -> str | None:
    """Why a network cannot be a lab segment (the guests' kernel refuses or misroutes these ranges)."""
    for what, block in _SPECIAL_BLOCKS:
        if net.overlaps(block):
            return f"{net} overlaps {block} ({what} addresses): not usable on a lab segment"
    return None


# -- the lab's nodes and how they reach each other ----------------------------------


def node_names(scenario: Any) -> set[str]:
    """Every node a check may name: VMs and the features' nodes."""
    return {v.name for v in scenario.vms} | {n.name for n in feature_nodes(scenario)}


def node_interfaces(scenario: Any, name: str, family: int | None = 4) -> list[tuple[str, Any]]:
    """(segment, address) of every addressed interface of a VM or feature node, of one family
    (4: IPv4Interface, 6: IPv6Interface; None: both, IPv4 first on each NIC)."""
    prefixes = {b.name: bridge_subnets(b).ipv6 for b in scenario.bridges}
    pairs: list[tuple[str, Interface | None]] = [(n.bridge, i) for v in scenario.vms if v.name == name for n in v.nics for i in known_interfaces(nic_addresses(n), prefixes.get(n.bridge))]
    pairs += [(seg, parse_interface(text)) for node in feature_nodes(scenario) if node.name == name for seg, text in node.interfaces if text]
    return [(seg, iface) for seg, iface in pairs if iface is not None and (family is None or iface.version == family)]


def carried_addresses(scenario: Any, nic: Any) -> list[str]:
    """The addresses (with prefix) a VM's NIC carries besides its own: those of sub-interfaces a
    feature makes on it (a trunk's VLANs): what leaves the guest through that NIC may come from them too."""
    return [a for e in scenario.model.extensions if e.nic_addresses for a in e.nic_addresses(nic)]


def route_to(scenario: Any, source: str, target: str, family: int = 4) -> Any:
    """The address of target that source reaches: on a shared segment, or (IPv4) by a route a feature adds (NAT)."""
    theirs = node_interfaces(scenario, target, family)
    for seg, mine in node_interfaces(scenario, source, family):
        for tseg, iface in theirs:
            if seg == tseg and mine.network == iface.network:
                return iface
    for ext in scenario.model.extensions if family == 4 else ():
        if ext.route is not None and (found := ext.route(scenario, source, target)) is not None:
            return found
    return None


def shared_route(scenario: Any, source: str, target: str, family: int | None = None) -> Any:
    """The address of target that source reaches (route_to) of `family`, or by default IPv4 when
    they share an IPv4 subnet (or a route), else IPv6."""
    if family is not None:
        return route_to(scenario, source, target, family)
    return route_to(scenario, source, target, 4) or route_to(scenario, source, target, 6)


def rendered(scenario: Any, text: str) -> str:
    """A check field that takes an address may be a template (`to: "{{ web.ip }}"`): its text
    rendered with the scenario's variables (TemplateError when it cannot be)."""
    if "{{" not in text and "{%" not in text:
        return text
    return render(text, scenario_variables(scenario)).strip()


def addressed_nics(scenario: Any, node: str, family: int | None = None) -> list[tuple[str, Any]]:
    """(NIC name, address) of every addressed interface of a VM or feature node, of `family` (None:
    both, IPv4 first on each NIC)."""
    prefixes = {b.name: bridge_subnets(b).ipv6 for b in scenario.bridges}
    for vm in scenario.vms:
        if vm.name == node:
            pairs: list[tuple[str, Interface | None]] = [(vm.nic_name(j), i) for j, n in enumerate(vm.nics) for i in known_interfaces(nic_addresses(n), prefixes.get(n.bridge))]
            break
    else:
        found = next((n for n in feature_nodes(scenario) if n.name == node), None)
        pairs = [(name, parse_interface(cidr)) for name, cidr in found.nics if cidr] if found else []
    return [(name, iface) for name, iface in pairs if iface is not None and (family is None or iface.version == family)]


def named_interface(scenario: Any, target: str, family: int | None = None) -> Any:
    """NODE.NIC (web.eth0): that interface's address (of `family`, by default its IPv4 one if it has
    one); None when there is no such addressed interface."""
    node, _, nic = target.partition(".")
    return next((iface for name, iface in addressed_nics(scenario, node, family) if name == nic), None)


def is_named_interface(target: str) -> bool:
    """NODE.NIC rather than a node or an address literal (10.1.1.2 has dots too)."""
    return "." in target and parse_address(target) is None


def target_interface(scenario: Any, source: str, target: str, family: int | None = None) -> Any:
    """The address a check's `to` means: a node's on a segment the source shares (or by a feature's
    route), else the node's first address (a target behind a router); NODE.NIC's; None for an
    address literal. Of `family`, by default IPv4 where there is one (see shared_route). `target` is
    rendered already (see `rendered`)."""
    if is_named_interface(target):
        return named_interface(scenario, target, family)
    reached = shared_route(scenario, source, target, family)
    if reached is not None:
        return reached
    addresses = node_interfaces(scenario, target, family or 4) or (node_interfaces(scenario, target, 6) if family is None else [])
    return addresses[0][1] if addresses else None


def shown_target(scenario: Any, to: str) -> str:
    """A check's `to` as its name shows it: what a template named (as written if it does not render)."""
    if "{{" not in to:
        return to
    try:
        return rendered(scenario, to)
    except ValueError:
        return to


def target_address(scenario: Any, source: str, to: str, family: int | None = None) -> str:
    """The address a check's `to` pings from `source` (see target_interface; an address as written)."""
    to = rendered(scenario, to)
    iface = target_interface(scenario, source, to, family)  # None for an address literal
    return str(iface.ip) if iface is not None else to


def routable(scenario: Any, source: str, target: str, family: int | None = None) -> bool:
    """Whether some chain of nodes with addresses on two subnets (routers, as the lab's own commands
    may make them) joins a subnet of `source` to one of `target`: a ping by name across them can work."""
    subnets: dict[str, set[tuple[str, Any]]] = {}  # node → the (segment, subnet) it has an address on
    for name in node_names(scenario):
        subnets[name] = {(segment, iface.network) for segment, iface in node_interfaces(scenario, name, family)}
    reached, todo = set(subnets.get(source, ())), list(subnets.get(source, ()))
    while todo:
        net = todo.pop()
        for nets in subnets.values():
            if net in nets:
                fresh = nets - reached
                reached |= fresh
                todo += fresh
    return bool(reached & subnets.get(target, set()))


def lab_interfaces(scenario: Any) -> list[str]:
    """Interfaces of the lab namespace that features add besides the bridges (uplinks)."""
    return [i for e in scenario.model.extensions if e.lab_interfaces for i in e.lab_interfaces(scenario)]


def overlays(scenario: Any) -> list[Overlay]:
    return [o for e in scenario.model.extensions if e.overlays for o in e.overlays(scenario)]


def overlay_named(scenario: Any, name: str) -> Overlay | None:
    return next((o for o in overlays(scenario) if o.name == name), None)


def segment_networks(scenario: Any) -> list[ipaddress.IPv4Network]:
    """The management subnet and every bridge/NIC subnet (an overlay's subnet must overlap none)."""
    nets = [network(scenario.management.subnet)]
    nets += [bridge_subnets(b).ipv4 for b in scenario.bridges]
    nets += [i.network for v in scenario.vms for n in v.nics if (i := nic_addresses(n).ipv4) is not None]
    return [n for n in nets if n is not None]


# -- the shared rule book --------------------------------------------------------------


class Rules:
    """Problems found so far, plus what the rules share: bridges' subnets, claimed addresses, names."""

    def __init__(self, scenario: Any, file: str, lines: dict[str, int], *, allow_host_paths: bool = False):
        self.scenario = scenario
        self.file = file
        self.lines = lines
        self.allow_host_paths = allow_host_paths  # --allow-host-paths: files outside the scenario's folder (the trust model)
        self.problems: list[Problem] = []
        self.mgmt: ipaddress.IPv4Network | None = None
        self.bridges: dict[str, ipaddress.IPv4Network | None] = {}  # each bridge's IPv4 subnet
        self.bridges6: dict[str, ipaddress.IPv6Network | None] = {}  # and its IPv6 subnet
        self.addresses: dict[Address, str] = {}
        self.names: set[str] = set()  # nodes: VMs, then the features' nodes as they are validated
        self.lab_ifaces: set[str] = {"lo"}  # interfaces of the lab namespace: bridges, then the features' links

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        probe = path
        while line is None and probe:
            probe = probe.rpartition(".")[0] if "." in probe else ""
            line = self.lines.get(probe)
        self.problems.append(Problem(self.file, line, path, message))

    def address(self, path: str, text: str, net: ipaddress.IPv4Network | None, where: str) -> ipaddress.IPv4Interface | None:
        """An address that parses, fits `net` (when given) and is not its network or broadcast address."""
        iface = interface(text)
        if iface is None:
            self.add(path, f"expected an IPv4 address with prefix like 10.1.1.2/24, got {text!r}")
        elif net is not None and iface.network != net:
            self.add(path, f"{text} is not in subnet {net} of {where}")
        elif iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
            self.add(path, f"{iface.ip} is the network or broadcast address of {iface.network}")
        else:
            return iface
        return None

    def subnet(self, path: str, text: str) -> ipaddress.IPv4Network | None:
        """A segment's subnet (a bridge's, a VLAN's): it parses, is usable, and clears the management subnet.
        Returns the parsed network even when it clashes (its addresses are still checked against it)."""
        net = network(text)
        if net is None:
            self.add(path, f"expected an IPv4 network like 10.1.1.0/24 (host bits zero), got {text!r}")
        elif unusable(net):
            self.add(path, str(unusable(net)))
        elif self.mgmt is not None and net.overlaps(self.mgmt):
            self.add(path, f"{net} overlaps the management subnet {self.mgmt} (change management.subnet)")
        return net

    def claim(self, path: str, ip: Address, owner: str) -> None:
        if ip in self.addresses:
            self.add(path, f"{ip} is already used by {self.addresses[ip]}")
        else:
            self.addresses[ip] = owner

    def node_words(self) -> str:
        """'VM', or 'VM, container or host' once features bring other nodes."""
        kinds = self.scenario.model.node_kinds()
        return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]


def image_file_path(scenario: Any, file: str) -> Path:
    """A `file:` image path: relative paths are relative to the scenario file's folder."""
    base = Path(scenario.source).parent if scenario.source else Path.cwd()
    return (base / file).absolute()


def route_across(scenario: Any, source: str, target: str, same_segment: Callable[[str, str], bool]) -> ipaddress.IPv4Interface | None:  # IPv4: a feature's route
    """The target's address on a subnet the source shares across segments that `same_segment`
    says are one Ethernet segment (bridges joined by veths or a VXLAN), else None."""
    theirs = node_interfaces(scenario, target)
    for seg, mine in node_interfaces(scenario, source):
        for tseg, iface in theirs:
            if seg != tseg and same_segment(seg, tseg) and mine.network == iface.network:
                return iface
    return None


def vm_image(scenario: Any, vm: Any) -> ImageRef:
    """The image a (valid) scenario's VM boots: its own `image:`, else the scenario's."""
    image = vm.image if vm.image is not None else scenario.image
    if isinstance(image, str):
        return ImageRef(image)
    if image.file is not None:
        return ImageRef(FILE, file=str(image_file_path(scenario, image.file)))
    return ImageRef(image.kind, tuple(sorted(set(image.packages))))


def vm_memory(scenario: Any, vm: Any) -> int:
    return vm.memory if vm.memory is not None else vm_image(scenario, vm).info.default_memory


def canonical(scenario: Any) -> Any:
    """The scenario with its addresses canonicalised once: each bridge's subnets and each NIC's
    addresses by family (leniently: what does not parse stays out, and the rules say why), then
    each feature's canonical values (e.g. the DHCP reservations)."""
    bridges = [dataclasses.replace(b, nets=read_subnets(bridge_entries(b))) for b in scenario.bridges]
    vms = [dataclasses.replace(vm, nics=[dataclasses.replace(n, addrs=read_nic(nic_entries(n))) for n in vm.nics]) for vm in scenario.vms]
    scenario = dataclasses.replace(scenario, bridges=bridges, vms=vms)
    for ext in scenario.model.extensions:
        if ext.normalise is not None:
            scenario = ext.normalise(scenario)
    return scenario


def validate(scenario: Any, file: str, lines: dict[str, int], *, allow_host_paths: bool = False) -> None:
    """Every cross-field rule, core then features; raises ValidationError with every broken one."""
    r = Rules(scenario, file, lines, allow_host_paths=allow_host_paths)
    _management(r)
    _bridges(r)
    _vms(r)
    for ext in scenario.model.extensions:
        if ext.validate is not None:
            ext.validate(r)
    for path, checks in check_lists(scenario):
        validate_checks(r, checks, path)
    if r.problems:
        raise ValidationError(r.problems)


def check_lists(scenario: Any) -> list[tuple[str, list[Any]]]:
    """Every list of checks in the scenario with its path: its own `checks`, then those the features'
    sections hold (an exercise's tasks)."""
    return [("checks", scenario.checks), *(pair for e in scenario.model.extensions if e.check_lists for pair in e.check_lists(scenario))]


def validate_checks(r: Rules, checks: list[Any], path: str) -> None:
    """The rules of each kind of check, for a list of checks at `path` (the scenario's, an exercise task's)."""
    validators: dict[str, list[Any]] = {"ping": [_ping], "capture": [_capture]}
    for ext in r.scenario.model.extensions:
        for kind, validator in ext.check_validators.items():
            validators.setdefault(kind, []).append(validator)  # a feature's rules for a core kind (its ping fields) come after the core's
    for i, check in enumerate(checks):
        for validator in validators.get(check.kind, ()):
            validator(r, check.spec, f"{path}[{i}].{check.kind}")


def feature_guests(scenario: Any, *, maybe: bool = False) -> list[str]:
    """Guests the features add to every lab of the scenario (a switch guest a bridge asks for);
    `maybe`: also those they add only on a host that needs them (the plan decides)."""
    out = [g for e in scenario.model.extensions if e.guests for g in e.guests(scenario)]
    return out + [g for e in scenario.model.extensions if maybe and e.maybe_guests for g in e.maybe_guests(scenario) if g not in out]


def _management(r: Rules) -> None:
    scenario = r.scenario
    mgmt = network(scenario.management.subnet)
    if mgmt is None:
        r.add("management.subnet", f"expected an IPv4 network like 172.30.255.0/24, got {scenario.management.subnet!r}")
    elif unusable(mgmt):
        r.add("management.subnet", str(unusable(mgmt)))
    elif mgmt.num_addresses < 8:
        r.add("management.subnet", "too small: needs room for a gateway and every VM (use /24)")
    elif mgmt.num_addresses - 3 < len(scenario.vms):
        r.add("management.subnet", f"too small for {len(scenario.vms)} VMs")
    r.mgmt = mgmt


def _bridges(r: Rules) -> None:
    for i, br in enumerate(r.scenario.bridges):
        path = f"bridges[{i}]"
        if br.name in r.bridges:
            r.add(f"{path}.name", f"duplicate bridge name {br.name!r}")
        if br.name.startswith("vnl"):
            r.add(f"{path}.name", "names starting with 'vnl' are reserved for vnetlab's own devices")
        if br.name == "lo":
            r.add(f"{path}.name", "'lo' is the lab namespace's loopback interface")
        v4, v6 = _bridge_subnets(r, br, path)
        r.bridges.setdefault(br.name, v4)
        r.bridges6.setdefault(br.name, v6 or bridge_subnets(br).ipv6)  # a feature's (its router advertisements' prefix) when it names none
    r.lab_ifaces |= set(r.bridges)


def _bridge_subnets(r: Rules, br: Any, path: str) -> tuple[ipaddress.IPv4Network | None, ipaddress.IPv6Network | None]:
    """`subnet:` or `subnets:`, at most one per family."""
    if br.subnet is not None and br.subnets:
        r.add(f"{path}.subnets", "expected one of: subnet, subnets (subnets: [IPv4, IPv6] for a dual-stack segment)")
    paths = [f"{path}.subnets[{k}]" for k in range(len(br.subnets))] if br.subnets else [f"{path}.subnet"]
    found: dict[int, Any] = {}
    for spath, text in zip(paths, bridge_entries(br)):
        net = parse_network(text)
        if net is None:
            r.add(spath, f"expected an IPv4 or IPv6 network like 10.1.1.0/24 or fd00:1::/64 (host bits zero), got {text!r}")
            continue
        if net.version in found:
            r.add(spath, f"a second IPv{net.version} subnet: a bridge has at most one per family (subnets: [IPv4, IPv6])")
            continue
        if net.version == 4:
            net = r.subnet(spath, text)
        elif unusable_v6(net):
            r.add(spath, str(unusable_v6(net)))
        found[net.version] = net
    return found.get(4), found.get(6)


def _image(r: Rules, image: Any, path: str) -> ImageRef | None:
    """The image a `image:` value names, or None after saying what is wrong with it."""
    if isinstance(image, str):  # the loader allows only the kinds' names
        return ImageRef(image)
    if (image.kind is None) == (image.file is None):
        r.add(path, "expected exactly one of: kind, file")
        return None
    if image.packages and image.kind != DEBIAN:
        r.add(f"{path}.packages", "extra packages need kind: debian")
        return None
    bad = check_packages(image.packages)
    if bad:
        r.add(f"{path}.packages", f"not a Debian package name: {', '.join(bad)}")
        return None
    if image.file is None:
        return ImageRef(image.kind, tuple(sorted(set(image.packages))))
    file = image_file_path(r.scenario, image.file)
    try:
        check_image_file(file)
    except VnetlabError as exc:
        r.add(f"{path}.file", str(exc))
        return None
    return ImageRef(FILE, file=str(file))


def _vms(r: Rules) -> None:
    default = _image(r, r.scenario.image, "image")
    for i, vm in enumerate(r.scenario.vms):
        path = f"vms[{i}]"
        ref = default if vm.image is None else _image(r, vm.image, f"{path}.image")
        if ref is not None and vm.memory is not None and vm.memory < ref.info.min_memory:
            r.add(f"{path}.memory", f"{vm.memory} MiB is too little for a {ref.kind} guest: at least {ref.info.min_memory}")
        if vm.name in r.names:
            r.add(f"{path}.name", f"duplicate VM name {vm.name!r}")
        r.names.add(vm.name)
        nic_names: set[str] = set()
        for j, nic in enumerate(vm.nics):
            npath = f"{path}.nics[{j}]"
            name = vm.nic_name(j)
            if name in RESERVED_IFACES:
                r.add(f"{npath}.name", f"{name!r} is reserved inside the guest")
            elif name.startswith(RESERVED_IFACE_PREFIX):
                r.add(f"{npath}.name", f"{name!r} is reserved inside the guest: names starting with {RESERVED_IFACE_PREFIX!r} are the temporary names the guest's init gives every NIC while it renames them")
            if name in nic_names:
                r.add(f"{npath}.name", f"duplicate interface name {name!r} in VM {vm.name!r}")
            nic_names.add(name)
            if nic.bridge not in r.bridges:
                r.add(f"{npath}.bridge", f"no bridge named {nic.bridge!r} (bridges: {', '.join(r.bridges) or 'none'})")
            _nic_addresses(r, nic, npath, f"{vm.name} {name}")


def _nic_addresses(r: Rules, nic: Any, npath: str, owner: str) -> None:
    """`address:` or `addresses:`: at most one per family, each fitting its bridge's subnet of that family."""
    if nic.address is not None and nic.addresses:
        r.add(f"{npath}.addresses", "expected one of: address, addresses (addresses: [IPv4, IPv6] for a dual-stack NIC)")
        return
    paths = [f"{npath}.addresses[{k}]" for k in range(len(nic.addresses))] if nic.addresses else [f"{npath}.address"]
    families: set[int] = set()
    for path, text in zip(paths, nic_entries(nic)):
        iface = parse_interface(text)
        family = entry_family(text)
        if family is None:
            bare = parse_address(text)
            r.add(path, f"expected {ADDRESS_EXAMPLES}, got {text!r}" if bare is None else f"{text} needs its prefix length: expected an address with prefix like {bare}/{24 if bare.version == 4 else 64}")
            continue
        if family in families:
            r.add(path, f"a second IPv{family} address: a NIC has at most one per family (addresses: [IPv4, IPv6])")
            continue
        families.add(family)
        if text in TOKENS or iface is None:
            continue  # dhcp and slaac: the bridge must serve them (the DHCP feature's rules)
        _static_address(r, nic.bridge, iface, path, text)
        r.claim(path, iface.ip, owner)


def _static_address(r: Rules, bridge: str, iface: Interface, path: str, text: str) -> None:
    v4, v6 = r.bridges.get(bridge), r.bridges6.get(bridge)
    own, other = (v4, v6) if iface.version == 4 else (v6, v4)
    if own is not None and iface.network != own:
        r.add(path, f"{text} is not in subnet {own} of bridge {bridge!r}")
    elif own is None and other is not None:
        r.add(path, f"{text} is an IPv{iface.version} address, but bridge {bridge!r} has only the IPv{other.version} subnet {other}: "
                    f"give the bridge both (subnets: [{v4 or '10.1.1.0/24'}, {v6 or 'fd00:1::/64'}]) or use an IPv{other.version} address")
    elif iface.version == 4:
        if unusable(ipaddress.IPv4Network(iface.ip)):
            r.add(path, str(unusable(ipaddress.IPv4Network(iface.ip))))
        elif iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
            r.add(path, f"{iface.ip} is the network or broadcast address of {iface.network}")
        elif r.mgmt is not None and iface.network.overlaps(r.mgmt):
            r.add(path, f"{iface.network} overlaps the management subnet {r.mgmt}")
    elif unusable_v6(ipaddress.IPv6Network(iface.ip)):
        r.add(path, str(unusable_v6(ipaddress.IPv6Network(iface.ip))))
    elif iface.ip == iface.network.network_address and iface.network.prefixlen < 127:
        r.add(path, f"{iface.ip} is the network address of {iface.network} (the subnet-router anycast address): not a host's")


# -- the core's checks: ping and capture ------------------------------------------------


def _ping(r: Rules, ping: Any, path: str) -> None:
    scenario = r.scenario
    vm_names = {v.name for v in scenario.vms}
    via = getattr(ping, "via", None)
    others = node_names(scenario) - vm_names
    if via is None and ({ping.source, ping.to} & others):
        _node_ping(r, ping, path)
        return
    if ping.source not in vm_names:
        r.add(f"{path}.from", f"no VM named {ping.source!r}")
        return
    if via is not None:
        _overlay_ping(r, ping, via, path, vm_names)
        return
    check_target(r, ping, path, "VM", "the bridge", ipv6=True)


def check_target(r: Rules, ping: Any, path: str, words: str, what: str, *, ipv6: bool = False) -> None:
    """A check's `to` (a ping's, a pmtu probe's): a node (its address the source reaches, else its
    first: across a router), NODE.NIC, or an IPv4 address (`ipv6`: or an IPv6 one, and the check's
    `family:` chooses a node's); each may be a template ({{ web.ip }})."""
    try:
        to = rendered(r.scenario, ping.to)
    except ValueError as exc:  # TemplateError
        r.add(f"{path}.to", str(exc))
        return
    family = getattr(ping, "family", None)
    which = f"IPv{family} " if family else ""
    literals = "an IPv4 or IPv6 address" if ipv6 else "an IPv4 address"
    name = to.partition(".")[0] if is_named_interface(to) else to
    if name == ping.source:
        r.add(f"{path}.to", f"a {'VM' if words == 'VM' else 'node'} pinging itself proves nothing about {what}")
    elif to != name:  # NODE.NIC
        if name not in node_names(r.scenario):
            r.add(f"{path}.to", f"no {words} named {name!r} (to: is a node, NODE.NIC or {literals})")
        elif named_interface(r.scenario, to, family) is None:
            names = ", ".join(dict.fromkeys(nic for nic, _ in addressed_nics(r.scenario, name, family))) or "none"
            r.add(f"{path}.to", f"{name!r} has no {which}addressed interface named {to.partition('.')[2]!r} (expected NODE.NIC like {name}.eth0; its {which}addressed interfaces: {names})")
    elif to in node_names(r.scenario):
        if target_interface(r.scenario, ping.source, to, family) is None:
            r.add(f"{path}.to", f"{to!r} has no {which}address to ping")
        elif shared_route(r.scenario, ping.source, to, family) is not None:
            pass
        elif ping.source not in {v.name for v in r.scenario.vms}:
            if ping.expect == "success":  # a container's or host's routes are vnetlab's (its gateway, its uplink)
                r.add(f"{path}.to", f"{ping.source!r} has no route to {to!r} (no common subnet, and no NAT uplink of its bridge leading there)")
        elif not routable(r.scenario, ping.source, to, family):  # a VM routes by its own exec: a router must be there to route through
            r.add(f"{path}.to", f"{ping.source!r} and {to!r} have no {which}addressed NICs on a common subnet")
    else:
        _address_target(r, ping, to, path, f"a {words} name or {literals}", ipv6)


def _address_target(r: Rules, ping: Any, to: str, path: str, expected: str, ipv6: bool) -> None:
    """A target given as an address (rendered): of a family the check takes, and the family it says
    when `family:` is given too."""
    address = parse_address(to)
    family = getattr(ping, "family", None)
    if address is None or (address.version == 6 and not ipv6):
        r.add(f"{path}.to", f"expected {expected}, got {to!r}" + (f" (from {ping.to!r})" if to != ping.to else ""))
    elif family is not None and address.version != family:
        r.add(f"{path}.family", f"family {family} but {to} is an IPv{address.version} address (an address says its family: drop family)")
    elif address.version == 6 and not uses_ipv6(r.scenario):
        r.add(f"{path}.to", f"{to} is an IPv6 address, but no NIC or bridge of this lab has IPv6 (its guests run without it): give the NICs IPv6 addresses (addresses: [IPv4, IPv6]) or ping an IPv4 address")


def _overlay_ping(r: Rules, ping: Any, via: str, path: str, vm_names: set[str]) -> None:
    """`via`: ping the target's address on an overlay (a tunnel) both VMs are members of."""
    found = overlay_named(r.scenario, via)
    if found is None:
        known = overlays(r.scenario)
        kind = next((e.overlay_kind for e in r.scenario.model.extensions if e.overlay_kind), "tunnel")
        r.add(f"{path}.via", f"no {kind} named {via!r} (tunnels: {', '.join(o.name for o in known) or 'none'})")
    elif ping.to not in vm_names:
        r.add(f"{path}.to", f"with via, expected a VM name (a member of tunnel {via!r}), got {ping.to!r}")
    elif ping.to == ping.source:
        r.add(f"{path}.to", "a VM pinging itself proves nothing about the tunnel")
    else:
        for key, name in (("from", ping.source), ("to", ping.to)):
            if name not in found.members:
                r.add(f"{path}.{key}", f"VM {name!r} is not a member of tunnel {via!r}")


def _node_ping(r: Rules, ping: Any, path: str) -> None:
    everyone = node_names(r.scenario)
    if ping.source not in everyone:
        r.add(f"{path}.from", f"no {r.node_words()} named {ping.source!r}")
    else:
        check_target(r, ping, path, r.node_words(), "the network", ipv6=True)


# Judged by addresses alone, so also on a bridge a routed path crosses, where the frames carry the
# router's MACs: an endpoint need not be on the captured bridge (its first address is judged).
ROUTED_EXPECTATIONS = frozenset({"icmp-echo"})


def _expectations(scenario: Any) -> dict[str, Any]:
    return {x.name: x for e in scenario.model.extensions for x in e.expectations}


def _link_bridge(r: Rules, cap: Any, path: str) -> str | None:
    """The bridge of the VM NIC a link names; None (with the problem added) unless it is an existing
    NIC of one of the two nodes (only their own frames cross it)."""
    vm_name, nic_name = split_link(cap.link)
    vm = next((v for v in r.scenario.vms if v.name == vm_name), None)
    if vm is None:
        r.add(f"{path}.link", f"no VM named {vm_name!r} (link is VM.NIC, e.g. vm1.eth0)")
        return None
    names = [vm.nic_name(j) for j in range(len(vm.nics))]
    if nic_name not in names:
        r.add(f"{path}.link", f"VM {vm_name!r} has no NIC named {nic_name!r} (its NICs: {', '.join(names)})")
        return None
    if vm_name not in cap.between:
        r.add(f"{path}.link", f"the link of {vm_name!r} carries its own frames only: name it in between, e.g. between: [{vm_name}, …]")
        return None
    return vm.nics[names.index(nic_name)].bridge


def _capture(r: Rules, cap: Any, path: str) -> None:
    scenario = r.scenario
    known = _expectations(scenario)
    vm_names = {v.name for v in scenario.vms}
    if cap.link is not None:
        bridge = _link_bridge(r, cap, path)
        if bridge is None:
            return
        cap = dataclasses.replace(cap, bridge=bridge)  # judged as on its bridge, seen from one port
    if cap.expect and all(e in known and known[e].one_node for e in cap.expect):
        _one_node(r, cap, path, known)
        return
    if any(e in known and known[e].one_node for e in cap.expect):
        r.add(f"{path}.expect", f"{', '.join(e for e in cap.expect if e in known and known[e].one_node)} is judged for one node (between: [NODE]): give it a capture of its own")
        return
    if cap.expect and all(e in known and known[e].across_segments for e in cap.expect):
        _across_segments(r, cap, path, known)
        return
    node_path = cap.interface is not None or bool(set(cap.between) - vm_names) or any(known[e].node_scoped for e in cap.expect if e in known)
    if node_path:
        _node_capture(r, cap, path, known)
        return
    if cap.bridge not in {b.name for b in scenario.bridges}:
        r.add(f"{path}.bridge", f"no bridge named {cap.bridge!r}")
        return
    for k, name in enumerate(cap.between):  # every name is a VM here: any other goes to _node_capture
        entries = [text for n in scenario.vm(name).nics if n.bridge == cap.bridge for text in nic_entries(n)]
        if not entries:
            if not all(e in ROUTED_EXPECTATIONS or (e in known and known[e].across_segments) for e in cap.expect):
                r.add(f"{path}.between[{k}]", f"VM {name!r} has no addressed NIC on bridge {cap.bridge!r}")
            elif not node_interfaces(scenario, name):
                r.add(f"{path}.between[{k}]", f"VM {name!r} has no address: there is no exchange of it to capture")
            continue
        families = {entry_family(text) for text in entries}
        for e in cap.expect:
            family = CORE_FAMILIES.get(e)
            if family is not None and None not in families and family not in families:  # an address that does not parse is reported already
                r.add(f"{path}.between[{k}]", f"{e} needs an IPv{family} address on bridge {cap.bridge!r}: VM {name!r} has none there")
    if len(set(cap.between)) != len(cap.between):
        r.add(f"{path}.between", "expected two different VMs")
    for e in cap.expect:
        if e in known and known[e].validate is not None:
            known[e].validate(r, cap, path)


def _one_node(r: Rules, cap: Any, path: str, known: dict[str, Any]) -> None:
    """Expectations judged for one node (its DHCP exchange, the router advertisements it takes): a
    VM with a NIC on the captured bridge; the expectations judge the rest."""
    if cap.bridge is None or cap.bridge not in r.bridges:
        r.add(f"{path}.bridge" if cap.bridge is not None else f"{path}.interface", f"no bridge named {cap.bridge!r}" if cap.bridge is not None else f"{', '.join(cap.expect)} is judged on a bridge (bridge:) or a link (link:)")
        return
    name = cap.between[0]
    vm = next((v for v in r.scenario.vms if v.name == name), None)
    if vm is None or not any(n.bridge == cap.bridge for n in vm.nics):
        r.add(f"{path}.between[0]", f"expected a VM with a NIC on bridge {cap.bridge!r}, got {name!r}")
        return
    for e in cap.expect:
        if known[e].validate is not None:
            known[e].validate(r, cap, path)


def _across_segments(r: Rules, cap: Any, path: str, known: dict[str, Any]) -> None:
    """Expectations about a path between segments (a routed path): the nodes exist and differ; the expectations judge the rest."""
    if cap.bridge is not None and cap.bridge not in r.bridges:
        r.add(f"{path}.bridge", f"no bridge named {cap.bridge!r}")
        return
    everyone = node_names(r.scenario)
    for k, name in enumerate(cap.between):
        if name not in everyone:
            r.add(f"{path}.between[{k}]", f"no {r.node_words()} named {name!r}")
            return
    if cap.between[0] == cap.between[1]:
        r.add(f"{path}.between", "expected two different nodes")
        return
    for e in cap.expect:
        if known[e].validate is not None:
            known[e].validate(r, cap, path)


def _node_capture(r: Rules, cap: Any, path: str, known: dict[str, Any]) -> None:
    """Captures on an uplink, or involving the features' nodes; their expectations judge the node path."""
    scenario = r.scenario
    if cap.bridge is not None and cap.bridge not in {b.name for b in scenario.bridges}:
        r.add(f"{path}.bridge", f"no bridge named {cap.bridge!r}")
        return
    uplinks = lab_interfaces(scenario)
    if cap.interface is not None and cap.interface not in uplinks:
        r.add(f"{path}.interface", f"no uplink named {cap.interface!r} (uplinks: {', '.join(uplinks) or 'none'})")
        return
    everyone = node_names(scenario)
    for k, name in enumerate(cap.between):
        if name not in everyone:
            r.add(f"{path}.between[{k}]", f"no {r.node_words()} named {name!r}")
            return
    a, b = cap.between
    if a == b:
        r.add(f"{path}.between", "expected two different nodes")
        return
    if route_to(scenario, a, b) is None:
        r.add(f"{path}.between", f"{a!r} has no route to {b!r}: there is no exchange between them to capture")
    for e in cap.expect:
        if e in known:
            if known[e].node_scoped and known[e].validate is not None:
                known[e].validate(r, cap, path)
            elif not known[e].node_scoped:
                r.add(f"{path}.expect", f"{e} is judged between VMs on a bridge, not with containers or hosts")
        elif e == "arp" and cap.bridge is not None and not all(any(seg == cap.bridge for seg, _ in node_interfaces(scenario, n)) for n in (a, b)):
            r.add(f"{path}.expect", f"arp needs both nodes addressed on bridge {cap.bridge!r}")
        elif CORE_FAMILIES.get(e) == 6:
            r.add(f"{path}.expect", f"{e} is judged between VMs with IPv6 addresses on a bridge (containers and hosts have IPv4 only)")


# -- reading a scenario file -------------------------------------------------------------


def parse_scenario(text: str, file: str, model: ScenarioModel, student: str | None = None, *, allow_host_paths: bool = False) -> Any:
    """Params drawn for `student` (None: demo) and rendered in, shape (while loading), then every
    cross-field rule; ValidationError lists each problem with its line. `allow_host_paths`: the user
    lets this scenario read host files outside its folder (--allow-host-paths)."""
    resolved: list[params.Resolved] = []

    def prepare(node: Any, loader: Any) -> set[int]:
        resolved.append(params.resolve(node, loader, file, student))
        return resolved[0].rendered

    located: Located = load_typed(text, model.Scenario, file, prepare)
    scenario = canonical(dataclasses.replace(located.value, source=file, student=student, param_values=resolved[0].values))
    validate(scenario, file, located.lines, allow_host_paths=allow_host_paths)
    return scenario


def load_scenario(path: Path, model: ScenarioModel, student: str | None = None, *, allow_host_paths: bool = False) -> Any:
    return parse_scenario(read_text(path), str(path), model, student, allow_host_paths=allow_host_paths)
