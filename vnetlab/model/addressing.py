"""Addresses of the lab, parsed in one place: IPv4 and IPv6, static, from DHCP, or formed by SLAAC.

A scenario writes addresses as text (`address: 10.1.1.2/24`, `addresses: [10.1.1.2/24,
fd00:1::2/64]`, `address: dhcp`, `address: slaac`; `subnet:` or `subnets:` on a bridge). The loader
canonicalises them once (vnetlab.model.validate.canonical): every NIC carries a `NicAddresses` and
every bridge a `Subnets`, by family, and the rest of vnetlab reads those instead of parsing text.
`uses_ipv6` is the one answer to "does this lab use IPv6": a lab that does not keeps IPv6 switched
off in its guests and namespace, so its captures carry no ICMPv6 at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union

Interface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

DHCP = "dhcp"  # `address: dhcp`: the guest asks the bridge's DHCP server (which holds a reservation for it)
SLAAC = "slaac"  # `address: slaac`: the guest forms its IPv6 address from the prefix a router advertises
TOKENS = (DHCP, SLAAC)
LINK_LOCAL = ipaddress.IPv6Network("fe80::/64")

_SPECIAL_V6 = (
    ("unspecified", ipaddress.IPv6Network("::/128")),
    ("loopback", ipaddress.IPv6Network("::1/128")),
    ("IPv4-mapped", ipaddress.IPv6Network("::ffff:0:0/96")),
    ("link-local (every NIC forms its own)", ipaddress.IPv6Network("fe80::/10")),
    ("multicast", ipaddress.IPv6Network("ff00::/8")),
)


def parse_interface(text: object) -> Interface | None:
    """An IPv4 or IPv6 address with an explicit prefix (`10.1.1.2/24`, `fd00:1::2/64`), else None."""
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        return None


def parse_network(text: object) -> Network | None:
    """A network with its host bits zero (`10.1.1.0/24`, `fd00:1::/64`), else None."""
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def parse_address(text: object) -> Address | None:
    """A bare address of either family (a ping's target), else None."""
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def entry_family(text: object) -> int | None:
    """The family a NIC's address entry is of (dhcp: 4, slaac: 6), None when it is not one."""
    if text == DHCP:
        return 4
    if text == SLAAC:
        return 6
    iface = parse_interface(text)
    return iface.version if iface is not None else None


def unusable_v6(net: ipaddress.IPv6Network) -> str | None:
    """Why an IPv6 network cannot be (or hold an address of) a lab segment."""
    for what, block in _SPECIAL_V6:
        if net.overlaps(block):
            return f"{net} overlaps {block} ({what} addresses): not usable on a lab segment"
    return None


@dataclass(frozen=True)
class NicAddresses:
    """A NIC's addresses by family, as the loader canonicalised them.

    ipv4 is a static address or, with `dhcp`, the reservation the bridge's DHCP server holds for
    this NIC (the guest still asks for it). ipv6 is a static address; with `slaac` it is None in the
    model (the guest forms it from its MAC, which the plan chooses) and the plan computes it."""

    ipv4: ipaddress.IPv4Interface | None = None
    ipv6: ipaddress.IPv6Interface | None = None
    dhcp: bool = False
    slaac: bool = False

    def __bool__(self) -> bool:
        return self.ipv4 is not None or self.ipv6 is not None or self.dhcp or self.slaac

    def interfaces(self) -> list[Interface]:
        """Known addresses, IPv4 first."""
        return [i for i in (self.ipv4, self.ipv6) if i is not None]

    def of(self, family: int) -> Interface | None:
        return self.ipv4 if family == 4 else self.ipv6


NO_ADDRESSES = NicAddresses()


@dataclass(frozen=True)
class Subnets:
    """A bridge's subnets by family (`subnet:` or `subnets:`)."""

    ipv4: ipaddress.IPv4Network | None = None
    ipv6: ipaddress.IPv6Network | None = None

    def of(self, family: int) -> Network | None:
        return self.ipv4 if family == 4 else self.ipv6

    def networks(self) -> list[Network]:
        return [n for n in (self.ipv4, self.ipv6) if n is not None]


NO_SUBNETS = Subnets()


def nic_entries(nic: Any) -> list[str]:
    """What a NIC's `address:` or `addresses:` says, as written."""
    if getattr(nic, "addresses", None):
        return list(nic.addresses)
    return [nic.address] if getattr(nic, "address", None) is not None else []


def bridge_entries(bridge: Any) -> list[str]:
    if getattr(bridge, "subnets", None):
        return list(bridge.subnets)
    return [bridge.subnet] if getattr(bridge, "subnet", None) is not None else []


def read_nic(entries: Iterable[str]) -> NicAddresses:
    """Leniently: the first entry of each family that parses (validation reports the rest)."""
    v4: ipaddress.IPv4Interface | None = None
    v6: ipaddress.IPv6Interface | None = None
    dhcp = slaac = False
    for text in entries:
        if text == DHCP:
            dhcp = dhcp or v4 is None
        elif text == SLAAC:
            slaac = slaac or v6 is None
        elif (iface := parse_interface(text)) is not None:
            if isinstance(iface, ipaddress.IPv4Interface) and v4 is None and not dhcp:
                v4 = iface
            elif isinstance(iface, ipaddress.IPv6Interface) and v6 is None and not slaac:
                v6 = iface
    return NicAddresses(v4, v6, dhcp, slaac)


def read_subnets(entries: Iterable[str]) -> Subnets:
    v4 = v6 = None
    for text in entries:
        net = parse_network(text)
        if isinstance(net, ipaddress.IPv4Network) and v4 is None:
            v4 = net
        elif isinstance(net, ipaddress.IPv6Network) and v6 is None:
            v6 = net
    return Subnets(v4, v6)


# -- IPv6 addresses the guest forms itself -----------------------------------------------------


def eui64_interface_id(mac: str) -> int:
    """The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A): the universal/local
    bit flipped, ff:fe in the middle. What Linux forms by default (addr_gen_mode 0)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    return int.from_bytes(bytes(octets[:3] + [0xFF, 0xFE] + octets[3:]), "big")


def eui64_address(prefix: ipaddress.IPv6Network, mac: str) -> ipaddress.IPv6Interface:
    """The address SLAAC forms on a /64 from a NIC's MAC."""
    return ipaddress.IPv6Interface((int(prefix.network_address) | eui64_interface_id(mac), prefix.prefixlen))


def formed_ipv6(addrs: NicAddresses, prefix: ipaddress.IPv6Network | None, mac: str) -> ipaddress.IPv6Interface | None:
    """A NIC's IPv6 address: its static one, or the one SLAAC forms on its bridge's prefix from its MAC."""
    if addrs.ipv6 is not None:
        return addrs.ipv6
    return eui64_address(prefix, mac) if addrs.slaac and prefix is not None else None


UNKNOWN_MAC = "00:00:00:00:00:00"  # before planning: a SLAAC address stands in as the EUI-64 one of this


def known_interfaces(addrs: NicAddresses, prefix: ipaddress.IPv6Network | None) -> list[Interface]:
    """A NIC's addresses as the model knows them: a SLAAC one stands in with UNKNOWN_MAC's
    interface id (its network is right; the plan knows the address)."""
    v6 = formed_ipv6(addrs, prefix, UNKNOWN_MAC)
    return [i for i in (addrs.ipv4, v6) if i is not None]


def link_local(mac: str) -> ipaddress.IPv6Interface:
    """The link-local address every NIC forms from its MAC when IPv6 is on."""
    return eui64_address(LINK_LOCAL, mac)


# -- the lab as a whole ------------------------------------------------------------------------


def nic_addresses(nic: Any) -> NicAddresses:
    """A (canonicalised) NIC's addresses; nothing for a NIC of a class without them."""
    return getattr(nic, "addrs", None) or NO_ADDRESSES


def bridge_subnets(bridge: Any) -> Subnets:
    return getattr(bridge, "nets", None) or NO_SUBNETS


def _nics(scenario: Any) -> Iterator[Any]:
    for vm in scenario.vms:
        yield from vm.nics


def uses_ipv6(scenario: Any) -> bool:
    """Whether the lab puts IPv6 on its segments: an IPv6 (or SLAAC) address on a NIC, an IPv6
    subnet on a bridge, or a bridge's router advertisements (`ra:`). A lab that does not keeps
    IPv6 off in its guests' kernels and its namespace: captures stay quiet."""
    if any(nic_addresses(n).ipv6 is not None or nic_addresses(n).slaac for n in _nics(scenario)):
        return True
    return any(bridge_subnets(b).ipv6 is not None or getattr(b, "ra", None) is not None for b in scenario.bridges)
