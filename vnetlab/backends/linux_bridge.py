"""Linux bridges, taps and veths inside lab namespaces, through pyroute2 (netlink).

Every netlink socket for a lab namespace is opened by a helper thread that has
entered that namespace (vnetlab.backends.netns.run_in_namespace), so no call here can
touch a link of the root namespace by mistake; `ns=None` means the root
namespace explicitly and is only accepted where the contract needs it (taps
are created there, link checks and deletes). A missing namespace raises
vnetlab.backends.netns.NamespaceError; netlink failures raise LinkError.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vnetlab.errors import VnetlabError
from vnetlab.backends import netns

T = TypeVar("T")

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")  # IFNAMSIZ - 1, no '/', ':' or blanks
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFF_UP = 0x1


class LinkError(VnetlabError):
    """A link operation failed (names the link, the namespace and the kernel's reason)."""


def _where(ns: str | None) -> str:
    return "the root namespace" if ns is None else f"namespace {ns!r}"


def _check_ifname(name: str) -> None:
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise LinkError(f"invalid interface name {name!r} (1-15 characters of [A-Za-z0-9_.-])")


def with_netlink(ns: str | None, what: str, fn: Callable[[IPRoute], T], error: type[Exception] = LinkError) -> T:
    """Run fn with a netlink socket of `ns` (None: the root namespace), closed afterwards; kernel
    errors become `error` ("WHAT in namespace 'NS': …"), so features report them in their own terms."""

    def call() -> T:
        try:
            with IPRoute() as ipr:
                return fn(ipr)
        except (NetlinkError, OSError) as exc:
            raise error(f"{what} in {_where(ns)}: {exc}") from exc

    return call() if ns is None else netns.run_in_namespace(ns, call)


def port_states(ns: str) -> list[tuple[str, str | None, int | None, str | None]]:
    """(link, its bridge, IFLA_BRPORT_STATE, operstate) of every link in namespace ns, sorted;
    bridge and state are None for a link that is no bridge's port."""

    def op(ipr: IPRoute) -> list[tuple[str, str | None, int | None, str | None]]:
        links = list(ipr.link("dump"))
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        out = []
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            slave = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
            state = slave.get_attr("IFLA_BRPORT_STATE") if slave is not None else None
            master = names.get(link.get_attr("IFLA_MASTER")) if state is not None else None
            out.append((names[link["index"]], master, None if state is None else int(state), link.get_attr("IFLA_OPERSTATE")))
        return sorted(out, key=lambda row: row[0])

    return with_netlink(ns, "reading bridge port states", op)


LISTENING, LEARNING = 1, 2  # IFLA_BRPORT_STATE of a port the spanning tree is still moving to forwarding
SETTLE_POLL = 0.2


def bridge_ports(ns: str) -> list[tuple[str, str, int]]:
    """(bridge, port, IFLA_BRPORT_STATE) of every bridge port in namespace ns, sorted."""
    return sorted((bridge, port, state) for port, bridge, state, _ in port_states(ns) if bridge is not None and state is not None)


def flush_fdb(ns: str, bridges: list[str]) -> None:
    """Forget the MAC addresses the bridges learned (`ip link set BR type bridge fdb_flush`); the
    permanent entries (the bridge's and its ports' own) stay."""

    def op(ipr: IPRoute) -> None:
        for name in bridges:
            ipr.link("set", index=_index(ipr, name, ns), kind="bridge", br_fdb_flush=None)

    if bridges:
        with_netlink(ns, f"flushing the learned addresses of {', '.join(bridges)}", op)


def wait_settled(read: Callable[[], list[tuple[str, str, int]]], timeout: float, sleep: Callable[[float], None] = time.sleep) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """Poll `read` ((bridge, port, state) rows) until no port is listening or learning, at most
    `timeout` seconds. Returns the last rows and those still moving (empty once settled)."""
    deadline = time.monotonic() + timeout
    while True:
        ports = read()
        moving = [p for p in ports if p[2] in (LISTENING, LEARNING)]
        if not moving or time.monotonic() >= deadline:
            return ports, moving
        sleep(SETTLE_POLL)


def _index(ipr: IPRoute, name: str, ns: str | None) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise LinkError(f"no link {name!r} in {_where(ns)}")
    return found[0]


link_index = _index  # for the other netlink backends (e.g. host_netem)


@contextmanager
def _ns_fd(ns: str) -> Iterator[int]:
    """An fd of namespace ns for IFLA_NET_NS_FD, owned and closed here rather than inside pyroute2."""
    try:
        fd = os.open(netns.namespace_path(ns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise netns.NamespaceError(f"namespace {ns!r} does not exist") from None
    try:
        yield fd
    finally:
        os.close(fd)


def create_bridge(ns: str, name: str, mac: str) -> None:
    """Create an up bridge with a fixed MAC and no address.

    A fixed MAC keeps the bridge from taking over a port's MAC (or 00:00:..).
    IPv6 is already off namespace-wide, so the bridge gets no link-local address.
    """
    _check_ifname(name)
    mac = mac.lower()
    if not _MAC_RE.match(mac):
        raise LinkError(f"invalid MAC address {mac!r} for bridge {name!r}")

    def op(ipr: IPRoute) -> None:
        ipr.link("add", ifname=name, kind="bridge", address=mac)
        ipr.link("set", index=_index(ipr, name, ns), state="up")

    with_netlink(ns, f"create bridge {name!r}", op)


def create_tap(name: str) -> None:
    """Create a persistent tap in the root namespace, down and without address.

    libvirt attaches to it as an unmanaged <interface type='ethernet'>, then it
    is moved into the lab namespace. TUNSETIFF on an existing tap would attach
    to it instead of failing, hence the explicit existence check.
    """
    _check_ifname(name)

    def op(ipr: IPRoute) -> None:
        if ipr.link_lookup(ifname=name):
            raise LinkError(f"create tap {name!r}: a link with that name already exists in the root namespace")
        ipr.link(
            "add",
            ifname=name,
            kind="tuntap",
            mode="tap",
            ifr={"no_pi": True, "one_queue": False, "vnet_hdr": False, "multi_queue": False},
        )

    with_netlink(None, f"create tap {name!r}", op)


def move_link(name: str, ns: str) -> None:
    """Move a link from the root namespace into ns (works while qemu holds the tap fd)."""
    with _ns_fd(ns) as fd:
        with_netlink(
            None,
            f"move {name!r} to namespace {ns!r}",
            lambda ipr: ipr.link("set", index=_index(ipr, name, None), net_ns_fd=fd),
        )


def attach_to_bridge(ns: str, ifname: str, bridge: str) -> None:
    """Enslave ifname to bridge and set it up."""

    def op(ipr: IPRoute) -> None:
        master = _index(ipr, bridge, ns)
        ipr.link("set", index=_index(ipr, ifname, ns), master=master, state="up")

    with_netlink(ns, f"attach {ifname!r} to bridge {bridge!r}", op)


BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4  # linux/if_bridge.h


def set_vlan_filtering(ns: str, bridge: str) -> None:
    """Turn on the bridge's VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING): ports then carry only their VLANs."""
    with_netlink(ns, f"turn on VLAN filtering of bridge {bridge!r}", lambda ipr: ipr.link("set", index=_index(ipr, bridge, ns), kind="bridge", br_vlan_filtering=1))


def set_port_vlans(ns: str, port: str, access: int | None, trunks: tuple[int, ...]) -> None:
    """An access port (its VLAN untagged and the port's PVID) or a trunk (its VLANs tagged); the default VLAN 1 goes."""

    def op(ipr: IPRoute) -> None:
        index = _index(ipr, port, ns)
        ipr.vlan_filter("del", index=index, vlan_info={"vid": 1})
        if access is not None:
            ipr.vlan_filter("add", index=index, vlan_info={"vid": access, "flags": BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED})
        for vid in trunks:
            ipr.vlan_filter("add", index=index, vlan_info={"vid": vid})

    with_netlink(ns, f"set the VLANs of bridge port {port!r}", op)


def port_vlans(ns: str, port: str) -> list[tuple[int, int]]:
    """(VLAN id, flags) of a bridge port as the kernel has them (the flags' PVID and UNTAGGED bits)."""

    def op(ipr: IPRoute) -> list[tuple[int, int]]:
        index = _index(ipr, port, ns)
        out = []
        for msg in ipr.get_vlans():
            if msg["index"] != index:
                continue
            spec = msg.get_attr("IFLA_AF_SPEC")
            for name, value in spec["attrs"] if spec is not None else ():
                if name == "IFLA_BRIDGE_VLAN_INFO":
                    out.append((int(value["vid"]), int(value["flags"])))
        return out

    return with_netlink(ns, f"read the VLANs of bridge port {port!r}", op)


def detach_from_bridge(ns: str, ifname: str) -> None:
    """Release ifname from its bridge; its up/down state is left as it is."""
    with_netlink(
        ns,
        f"detach {ifname!r} from its bridge",
        lambda ipr: ipr.link("set", index=_index(ipr, ifname, ns), master=0),
    )


def create_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """Create a veth pair with name_a in ns_a and name_b in ns_b, both down.

    The peer is created directly in ns_b (IFLA_NET_NS_FD on the peer), so
    neither end ever appears in the root namespace.
    """
    _check_ifname(name_a)
    _check_ifname(name_b)
    with _ns_fd(ns_b) as fd_b:
        with_netlink(
            ns_a,
            f"create veth {name_a!r} <-> {name_b!r} (namespace {ns_b!r})",
            lambda ipr: ipr.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": fd_b}),
        )


def create_vxlan(ns: str | None, name: str, vni: int, local: str, port: int, underlay: str, mtu: int, *, remote: str | None = None, mac: str | None = None, learning: bool = True) -> None:
    """`ip link add NAME type vxlan id VNI local L [remote R] dstport PORT dev UNDERLAY [nolearning]`:
    its UDP socket stays in `ns` (the underlay's namespace) wherever the device is moved to."""
    _check_ifname(name)

    def op(ipr: IPRoute) -> None:
        extra: dict[str, Any] = {"vxlan_group": remote} if remote else {}
        if mac:
            extra["address"] = mac
        ipr.link(
            "add", ifname=name, kind="vxlan", mtu=mtu, vxlan_id=vni, vxlan_local=local, vxlan_port=port,
            vxlan_link=_index(ipr, underlay, ns), vxlan_learning=1 if learning else 0, **extra,
        )

    with_netlink(ns, f"create VXLAN device {name!r} (VNI {vni})", op)


def add_fdb(ns: str, device: str, mac: str, dst: str) -> None:
    """A VXLAN forwarding entry: frames to `mac` go to the VTEP at `dst`; the all-zero MAC (appended
    once per peer) is where broadcasts and unknown destinations are flooded."""
    flood = mac == "00:00:00:00:00:00"

    def op(ipr: IPRoute) -> None:
        ipr.fdb("append" if flood else "add", ifindex=_index(ipr, device, ns), lladdr=mac, dst=dst, state=0x80)  # NUD_PERMANENT

    with_netlink(ns, f"forwarding entry {mac} → {dst} on {device!r}", op)


def set_mtu(ns: str, ifname: str, mtu: int) -> None:
    with_netlink(ns, f"set MTU {mtu} on {ifname!r}", lambda ipr: ipr.link("set", index=_index(ipr, ifname, ns), mtu=mtu))


def add_address(ns: str, ifname: str, cidr: str) -> None:
    """Add an address such as "10.1.1.1/24" to ifname (only ever inside a lab namespace)."""
    _change_address("add", ns, ifname, cidr)


def delete_address(ns: str, ifname: str, cidr: str) -> None:
    """Remove an address such as "10.1.1.1/24" from ifname (inside a lab namespace)."""
    _change_address("del", ns, ifname, cidr)


def _change_address(op: str, ns: str, ifname: str, cidr: str) -> None:
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError as exc:
        raise LinkError(f"invalid address {cidr!r} for {ifname!r}: {exc}") from None
    what = f"add address {cidr} to {ifname!r}" if op == "add" else f"delete address {cidr} from {ifname!r}"
    with_netlink(
        ns,
        what,
        lambda ipr: ipr.addr(op, index=_index(ipr, ifname, ns), address=str(iface.ip), prefixlen=iface.network.prefixlen),
    )


def set_link_up(ns: str, ifname: str) -> None:
    with_netlink(ns, f"set {ifname!r} up", lambda ipr: ipr.link("set", index=_index(ipr, ifname, ns), state="up"))


def set_link_down(ns: str, ifname: str) -> None:
    with_netlink(ns, f"set {ifname!r} down", lambda ipr: ipr.link("set", index=_index(ipr, ifname, ns), state="down"))


def link_state(ns: str, ifname: str) -> str:
    """'up' or 'down': the link's administrative state (`ip link set … up|down`)."""
    return with_netlink(ns, f"read the state of {ifname!r}", lambda ipr: "up" if ipr.get_links(_index(ipr, ifname, ns))[0]["flags"] & _IFF_UP else "down")


def delete_link(ns: str | None, name: str) -> None:
    """Delete a link (a veth takes its peer along); absent link or namespace is fine."""
    if ns is not None and not netns.namespace_exists(ns):
        return

    def op(ipr: IPRoute) -> None:
        for index in ipr.link_lookup(ifname=name):
            try:
                ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:  # gone meanwhile (e.g. its veth peer was deleted)
                    raise

    with_netlink(ns, f"delete {name!r}", op)


def link_exists(ns: str | None, name: str) -> bool:
    """Whether `name` exists in ns (False if the namespace itself is absent)."""
    if ns is not None and not netns.namespace_exists(ns):
        return False
    return with_netlink(ns, f"look up {name!r}", lambda ipr: bool(ipr.link_lookup(ifname=name)))


def _kind(link: ifinfmsg) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind == "tun":  # the kernel calls both tun and tap "tun"; tell them apart
        data = info.get_attr("IFLA_INFO_DATA")
        if data is not None and data.get_attr("IFLA_TUN_TYPE") == 2:
            return "tap"
    return kind


def list_links(ns: str | None) -> list[dict]:
    """Describe every link: name, kind, mac, state ("up"/"down", administrative), master, addresses."""

    def op(ipr: IPRoute) -> list[dict]:
        links = list(ipr.link("dump"))
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        addresses: dict[int, list[str]] = {}
        for addr in ipr.addr("dump"):
            ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")  # IFA_ADDRESS is the peer on p2p links
            addresses.setdefault(addr["index"], []).append(f"{ip}/{addr['prefixlen']}")
        return [
            {
                "name": names[link["index"]],
                "kind": _kind(link),
                "mac": link.get_attr("IFLA_ADDRESS"),
                "state": "up" if link["flags"] & _IFF_UP else "down",
                "master": names.get(link.get_attr("IFLA_MASTER")),
                "addresses": addresses.get(link["index"], []),
            }
            for link in links
        ]

    return with_netlink(ns, "list links", op)
