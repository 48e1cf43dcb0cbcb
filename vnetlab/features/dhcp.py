"""DHCP and router advertisements on lab bridges, and the guests that take their addresses from them.

    bridges:
      - name: lan
        subnets: [10.1.1.0/24, fd00:1::/64]
        dhcp: {range: 10.1.1.100-10.1.1.200, lease: 1h, router: 10.1.1.1, dns: [10.1.1.1]}
        ra: {prefix: fd00:1::/64}
    vms:
      - name: d1
        nics: [{bridge: lan, addresses: [dhcp, slaac]}]

A bridge's `dhcp:` and `ra:` are served by one dnsmasq in the lab namespace, bound to that bridge
only, as libvirt serves its networks (vnetlab.backends.dnsmasq; its config, lease file and log in
the lab's folder, the daemon recorded before it starts and stopped at teardown). `ra: {from: r1}`
has a guest send the advertisements instead (radvd in r1). The plan stays a pure function of the
scenario: each `address: dhcp` NIC gets a reservation from the range, in declaration order
(dnsmasq `dhcp-host=MAC,IP`), and a SLAAC address is the EUI-64 one of the NIC's planned MAC, so
templates, routes and checks know both in advance — while the guest still gets them through a real
DHCP exchange and real router advertisements (udhcpc in the tiny image, systemd-networkd in the
debian kind, cloud-init's network config in a user's cloud image; the kernel forms the SLAAC
address). The run waits for them, reads them back from the guest (and the leases from dnsmasq's
lease file), and fails when the guest holds something else than the plan says.

Capture expectations `dhcp` (DISCOVER, OFFER, REQUEST and ACK for the client's MAC) and `ra` (the
router advertisements of the bridge's prefix the client takes) are judged for one node
(`between: [d1]`): at the start of the check phase the client asks again (its DHCP client runs once
more; its NIC re-runs address autoconfiguration), so the exchange happens while the capture runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab import procfs
from vnetlab.backends import daemon, dnsmasq, linux_bridge, netns
from vnetlab.backends.image_kinds import DEBIAN, FILE, TINY
from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, CheckContext, Judgement
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.files import write_private
from vnetlab.model.addressing import bridge_subnets, eui64_address, nic_addresses, nic_entries, parse_address, parse_interface, parse_network
from vnetlab.model.scenario import NAME, VM_NAME_MAX, Expectation, ModelExtension, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, feature_nodes, vm_image
from vnetlab.plan.planner import Plan, PlanContext, PlannedNic, PlanPart, Resource
from vnetlab.run.apply import ApplyContext
from vnetlab.run.configure import find_nic, open_ssh
from vnetlab.run.state import LabState, RecordedResource
from vnetlab.tools.explain import Section, guest_line, sh
from vnetlab.tools.inspect import InspectRow

RESOURCE = "dnsmasq"  # a bridge's dnsmasq, recorded "<bridge>:<pid>"
_LEASE = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_LEASE = 120  # s: dnsmasq's shortest lease
LEASE_WAIT = 90.0  # s for a guest to get its lease (a debian guest starts systemd-networkd first)
SLAAC_WAIT = 45.0  # s for a guest to form its SLAAC address (router solicitations, duplicate address detection)
START_WAIT = 15.0  # s for dnsmasq to bind its sockets


class DhcpError(VnetlabError):
    """A DHCP server, a client or an address the guest formed is not what the plan says."""


# -- the scenario keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DhcpSpec:
    """A DHCP server on the bridge: dnsmasq in the lab namespace, bound to this bridge only."""

    range: str = spec("the addresses it leases, FIRST-LAST in the bridge's IPv4 subnet, e.g. 10.1.1.100-10.1.1.200 (each `address: dhcp` NIC gets a reservation from it)", max_length=40)
    lease: str = spec("lease time: seconds, or a number with s, m, h or d (e.g. 30m, 1h); at least 2m", default="1h", max_length=12)
    router: str | None = spec("default gateway the clients get (DHCP option 3), an address of the subnet; default: the bridge's gateway, if it has one", default=None, max_length=40)
    dns: list[str] = spec("DNS servers the clients get (DHCP option 6)", default_factory=list)


@dataclass(frozen=True)
class RaSpec:
    """Router advertisements of an IPv6 prefix on the bridge: `address: slaac` NICs form their addresses in it."""

    prefix: str = spec("the IPv6 /64 advertised, e.g. fd00:1::/64 (the bridge's IPv6 subnet, if it has one)", max_length=50)
    source: str | None = spec("a VM on the bridge that sends them (radvd in the guest: the tiny image has it, debian needs packages: [radvd]); default: the lab namespace (dnsmasq), which advertises no default route", key="from", default=None, pattern=NAME, max_length=VM_NAME_MAX)


def _lease_seconds(text: str) -> int | None:
    m = _LEASE.fullmatch(text.strip())
    return int(m[1]) * _UNIT[m[2]] if m else None


def parse_range(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    first, sep, last = text.partition("-")
    a, b = parse_address(first), parse_address(last)
    if not sep or not isinstance(a, ipaddress.IPv4Address) or not isinstance(b, ipaddress.IPv4Address):
        return None
    return a, b


def _pool(bridge: Any) -> Iterator[ipaddress.IPv4Interface]:
    """The reservations a bridge's range gives out, in order (none when the range or subnet is unusable)."""
    net = bridge_subnets(bridge).ipv4
    bounds = parse_range(bridge.dhcp.range)
    if net is None or bounds is None or bounds[0] > bounds[1]:
        return
    ip = bounds[0]
    while ip <= bounds[1]:
        yield ipaddress.IPv4Interface((ip, net.prefixlen))
        ip += 1


def _normalise(scenario: Any) -> Any:
    """A bridge's `ra:` prefix is its IPv6 subnet when it names none; each `address: dhcp` NIC gets
    the next reservation of its bridge's range, in declaration order."""
    bridges = []
    for b in scenario.bridges:
        nets = bridge_subnets(b)
        prefix = parse_network(b.ra.prefix) if b.ra is not None else None
        if isinstance(prefix, ipaddress.IPv6Network) and nets.ipv6 is None:
            b = dataclasses.replace(b, nets=dataclasses.replace(nets, ipv6=prefix))
        bridges.append(b)
    pools = {b.name: _pool(b) for b in bridges if b.dhcp is not None}
    vms = []
    for vm in scenario.vms:
        nics = []
        for nic in vm.nics:
            addrs = nic_addresses(nic)
            if addrs.dhcp and addrs.ipv4 is None and nic.bridge in pools:
                reserved = next(pools[nic.bridge], None)
                if reserved is not None:
                    nic = dataclasses.replace(nic, addrs=dataclasses.replace(addrs, ipv4=reserved))
            nics.append(nic)
        vms.append(dataclasses.replace(vm, nics=nics))
    return dataclasses.replace(scenario, bridges=bridges, vms=vms)


def _static_addresses(scenario: Any, bridge: Any) -> dict[ipaddress.IPv4Address, str]:
    """IPv4 addresses on the bridge that are not DHCP's: the VMs' static ones, the gateway, the features' nodes."""
    out: dict[ipaddress.IPv4Address, str] = {}
    for vm in scenario.vms:
        for j, nic in enumerate(vm.nics):
            addrs = nic_addresses(nic)
            if nic.bridge == bridge.name and addrs.ipv4 is not None and not addrs.dhcp:
                out[addrs.ipv4.ip] = f"{vm.name} {vm.nic_name(j)}"
    gateway = parse_address(getattr(bridge, "gateway", None))
    if isinstance(gateway, ipaddress.IPv4Address):
        out[gateway] = f"the gateway of {bridge.name}"
    for node in feature_nodes(scenario):
        for seg, text in node.interfaces:
            iface = parse_interface(text)
            if seg == bridge.name and isinstance(iface, ipaddress.IPv4Interface):
                out[iface.ip] = f"{node.name} eth0"
    return out


def server_address(scenario: Any, bridge: Any) -> ipaddress.IPv4Interface | None:
    """The DHCP server's address on the bridge: the bridge's gateway when it has one (the lab
    namespace is the router too, as on libvirt's networks), else the highest host address of the
    subnet that is neither in the range nor anyone's."""
    net = bridge_subnets(bridge).ipv4
    bounds = parse_range(bridge.dhcp.range)
    if net is None or bounds is None:
        return None
    gateway = parse_address(getattr(bridge, "gateway", None))
    if isinstance(gateway, ipaddress.IPv4Address) and gateway in net:
        return ipaddress.IPv4Interface((gateway, net.prefixlen))
    taken = _static_addresses(scenario, bridge)
    for ip in reversed(list(net.hosts())[-512:]):  # the top of a big subnet is enough
        if not bounds[0] <= ip <= bounds[1] and ip not in taken:
            return ipaddress.IPv4Interface((ip, net.prefixlen))
    return None


def _router(bridge: Any) -> str | None:
    if bridge.dhcp.router is not None:
        return bridge.dhcp.router
    return getattr(bridge, "gateway", None)


def _token_path(nic: Any, npath: str, token: str) -> str:
    if nic.addresses:
        return f"{npath}.addresses[{nic.addresses.index(token)}]"
    return f"{npath}.address"


def _validate(r: Rules) -> None:
    scenario = r.scenario
    bridges = {b.name: b for b in scenario.bridges}
    for i, b in enumerate(scenario.bridges):
        if b.dhcp is not None:
            _validate_dhcp(r, b, f"bridges[{i}].dhcp")
        if b.ra is not None:
            _validate_ra(r, b, f"bridges[{i}].ra")
    clients: dict[str, int] = {}
    for i, vm in enumerate(scenario.vms):
        for j, nic in enumerate(vm.nics):
            npath = f"vms[{i}].nics[{j}]"
            tokens = set(nic_entries(nic))
            bridge = bridges.get(nic.bridge)
            if bridge is None:
                continue  # the core's rule
            tagged = getattr(nic, "vlan", None) is not None or getattr(nic, "trunk", None) is not None
            if "dhcp" in tokens:
                path = _token_path(nic, npath, "dhcp")
                if bridge.dhcp is None:
                    r.add(path, f"address dhcp needs a DHCP server on bridge {nic.bridge!r}: give the bridge dhcp: {{range: FIRST-LAST}}")
                elif tagged:
                    r.add(path, "a VLAN NIC cannot ask the bridge's DHCP server (it serves the untagged segment)")
                else:
                    clients[nic.bridge] = clients.get(nic.bridge, 0) + 1
                    if bridge.dhcp is not None and nic_addresses(nic).ipv4 is None and parse_range(bridge.dhcp.range) is not None:
                        r.add(path, f"the range of bridge {nic.bridge!r} ({bridge.dhcp.range}) has no address left for this NIC ({clients[nic.bridge]} NICs ask it)")
            if "slaac" in tokens:
                path = _token_path(nic, npath, "slaac")
                if bridge.ra is None:
                    prefix = bridge_subnets(bridge).ipv6 or "fd00:1::/64"
                    r.add(path, f"address slaac needs router advertisements on bridge {nic.bridge!r}: give the bridge ra: {{prefix: {prefix}}}")
                elif bridge.ra.source == vm.name:
                    r.add(path, f"{vm.name} sends the router advertisements of bridge {nic.bridge!r}: a router does not autoconfigure from its own (give it a static IPv6 address)")


def _validate_dhcp(r: Rules, b: Any, path: str) -> None:
    net = r.bridges.get(b.name)
    if getattr(b, "vlans", None):
        r.add(path, "a bridge with vlans has one subnet per VLAN: DHCP serves an untagged segment (drop dhcp or vlans)")
        return
    if net is None:
        r.add(path, f"DHCP needs the bridge's IPv4 subnet: give bridge {b.name!r} subnet: (or subnets: [IPv4, IPv6])")
        return
    if b.dhcp.router is not None:
        router = parse_address(b.dhcp.router)
        if not isinstance(router, ipaddress.IPv4Address) or router not in net:
            r.add(f"{path}.router", f"expected an IPv4 address of subnet {net}, got {b.dhcp.router!r}")
    for k, text in enumerate(b.dhcp.dns):
        if not isinstance(parse_address(text), ipaddress.IPv4Address):
            r.add(f"{path}.dns[{k}]", f"expected an IPv4 address, got {text!r}")
    seconds = _lease_seconds(b.dhcp.lease)
    if seconds is None:
        r.add(f"{path}.lease", f"expected seconds or a number with s, m, h or d (e.g. 1h), got {b.dhcp.lease!r}")
    elif seconds < MIN_LEASE:
        r.add(f"{path}.lease", f"{b.dhcp.lease} is shorter than dnsmasq's shortest lease (2m)")
    bounds = parse_range(b.dhcp.range)
    if bounds is None:
        r.add(f"{path}.range", f"expected FIRST-LAST, two IPv4 addresses of {net} (e.g. {net.network_address + 100}-{net.network_address + 200}), got {b.dhcp.range!r}")
        return
    first, last = bounds
    outside = [ip for ip in bounds if ip not in net]
    if outside:
        r.add(f"{path}.range", f"{b.dhcp.range} is not inside subnet {net} of bridge {b.name!r} ({' and '.join(map(str, outside))} {'is' if len(outside) == 1 else 'are'} outside)")
        return
    if first > last:
        r.add(f"{path}.range", f"{b.dhcp.range}: the first address is after the last")
        return
    special = [ip for ip in (net.network_address, net.broadcast_address) if first <= ip <= last and net.prefixlen < 31]
    if special:
        r.add(f"{path}.range", f"{b.dhcp.range} holds {special[0]}, the network or broadcast address of {net}")
        return
    statics = _static_addresses(r.scenario, b)
    inside = sorted(ip for ip in statics if first <= ip <= last)
    if inside:
        r.add(f"{path}.range", f"{b.dhcp.range} overlaps static addresses: {', '.join(f'{ip} ({statics[ip]})' for ip in inside)}; keep them out of the range")
        return
    if server_address(r.scenario, b) is None:
        r.add(f"{path}.range", f"no address of {net} is left for the DHCP server (outside the range, unused): shrink the range or give the bridge a gateway")


def _validate_ra(r: Rules, b: Any, path: str) -> None:
    prefix = parse_network(b.ra.prefix)
    if not isinstance(prefix, ipaddress.IPv6Network):
        r.add(f"{path}.prefix", f"expected an IPv6 prefix like fd00:1::/64 (host bits zero), got {b.ra.prefix!r}")
    elif prefix.prefixlen != 64:
        r.add(f"{path}.prefix", f"{prefix}: SLAAC forms addresses in a /64 only")
    elif (own := r.bridges6.get(b.name)) is not None and own != prefix:
        r.add(f"{path}.prefix", f"{prefix} is not the IPv6 subnet {own} of bridge {b.name!r}")
    if b.ra.source is None:
        return
    vm = next((v for v in r.scenario.vms if v.name == b.ra.source), None)
    if vm is None or not any(n.bridge == b.name for n in vm.nics):
        r.add(f"{path}.from", f"expected a VM with a NIC on bridge {b.name!r}, got {b.ra.source!r}")
        return
    ref = vm_image(r.scenario, vm)
    if ref.kind == DEBIAN and "radvd" not in ref.packages:
        r.add(f"{path}.from", f"{vm.name} sends the advertisements with radvd: a debian guest needs it (image: {{kind: debian, packages: [radvd]}})")


def _validate_dhcp_capture(r: Rules, cap: Any, path: str) -> None:
    vm = r.scenario.vm(cap.between[0])
    if not any(n.bridge == cap.bridge and nic_addresses(n).dhcp for n in vm.nics):
        r.add(f"{path}.between[0]", f"dhcp is judged for a DHCP client: VM {vm.name!r} has no `address: dhcp` NIC on bridge {cap.bridge!r}")


def _validate_ra_capture(r: Rules, cap: Any, path: str) -> None:
    bridge = next(b for b in r.scenario.bridges if b.name == cap.bridge)
    vm = r.scenario.vm(cap.between[0])
    if bridge.ra is None:
        r.add(f"{path}.expect", f"ra needs router advertisements on bridge {cap.bridge!r} (ra: {{prefix: …}})")
    elif not any(n.bridge == cap.bridge and nic_addresses(n).slaac for n in vm.nics):
        r.add(f"{path}.between[0]", f"ra is judged for a node that takes them: VM {vm.name!r} has no `address: slaac` NIC on bridge {cap.bridge!r}")


MODEL = ModelExtension(
    bridge_fields=(
        decl("dhcp", DhcpSpec | None, spec("a DHCP server on this bridge (dnsmasq in the lab namespace); NICs on it take `address: dhcp`", default=None)),
        decl("ra", RaSpec | None, spec("router advertisements of an IPv6 prefix on this bridge; NICs on it take `address: slaac`", default=None)),
    ),
    expectations=(
        Expectation("dhcp", _validate_dhcp_capture, one_node=True),
        Expectation("ra", _validate_ra_capture, one_node=True),
    ),
    normalise=_normalise,
    validate=_validate,
)


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedServer:
    """One bridge's dnsmasq: what it serves, and the lab namespace's addresses on the bridge it serves from."""

    config: dnsmasq.ServerConfig
    address: str | None  # IPv4 with prefix: the gateway's (made by the containers feature) or its own
    own_address: bool  # address is added by this feature (no gateway on the bridge)
    address6: str | None  # IPv6 with prefix in the advertised prefix (dnsmasq advertises from a bridge holding one)

    @property
    def bridge(self) -> str:
        return self.config.bridge


@dataclass(frozen=True)
class PlannedClient:
    """A NIC that takes an address from its bridge: by DHCP (its reservation) or SLAAC (its EUI-64 address)."""

    vm: str
    nic: str  # its name in the guest
    mac: str
    bridge: str
    kind: str  # the guest's image kind: how it asks (tiny: udhcpc; debian: systemd-networkd; file: cloud-init)
    dhcp: str | None  # the reservation, with prefix
    slaac: str | None  # the address it forms, with prefix
    static6: str | None = None  # its static IPv6 address (systemd-networkd, managing the NIC, keeps it)
    router: str | None = None  # the default router its lease gives (DHCP option 3)


@dataclass(frozen=True)
class PlannedRadvd:
    vm: str
    nic: str
    bridge: str
    prefix: str


@dataclass(frozen=True)
class DhcpPlan:
    servers: tuple[PlannedServer, ...] = ()
    clients: tuple[PlannedClient, ...] = ()
    radvd: tuple[PlannedRadvd, ...] = ()


def _plan(ctx: PlanContext) -> DhcpPlan | None:
    scenario = ctx.scenario
    vms = {v.name: v for v in ctx.vms}
    servers = []
    for b in scenario.bridges:
        serves_ra = b.ra is not None and b.ra.source is None
        if b.dhcp is None and not serves_ra:
            continue
        net = bridge_subnets(b).ipv4
        config = dnsmasq.ServerConfig(b.name)
        address = None
        if b.dhcp is not None and net is not None:
            first, last = parse_range(b.dhcp.range) or (None, None)
            reservations = tuple(
                dnsmasq.Reservation(n.mac, n.ip or "", n.vm)
                for v in ctx.vms for n in v.nics if n.bridge == b.name and n.dhcp and n.ip
            )
            router = _router(b)
            config = dataclasses.replace(
                config, range_start=str(first), range_end=str(last), netmask=str(net.netmask), lease=b.dhcp.lease.strip(),
                router=router, dns=tuple(b.dhcp.dns), reservations=reservations,
            )
            found = server_address(scenario, b)
            address = found.with_prefixlen if found else None
        address6 = None
        if serves_ra:
            prefix = ipaddress.IPv6Network(b.ra.prefix)
            config = dataclasses.replace(config, ra_prefix=str(prefix))
            address6 = eui64_address(prefix, ctx.take_mac("02:00:00", "ra", b.name)).with_prefixlen
        own = address is not None and getattr(b, "gateway", None) is None
        servers.append(PlannedServer(config, address, own, address6))
    routers = {b.name: _router(b) for b in scenario.bridges if b.dhcp is not None}
    clients = tuple(
        PlannedClient(
            v.name, n.guest_name, n.mac, n.bridge, v.image.kind, n.cidr if n.dhcp else None, n.cidr6 if n.slaac else None,
            None if n.slaac else n.cidr6, routers.get(n.bridge) if n.dhcp else None,
        )
        for v in ctx.vms for n in v.nics if n.dhcp or n.slaac
    )
    radvd = tuple(
        PlannedRadvd(b.ra.source, nic.guest_name, b.name, str(ipaddress.IPv6Network(b.ra.prefix)))
        for b in scenario.bridges if b.ra is not None and b.ra.source is not None
        for nic in [vms[b.ra.source].nic_on(b.name)] if nic is not None
    )
    if not servers and not clients and not radvd:
        return None
    return DhcpPlan(tuple(servers), clients, radvd)


def _part(plan: Plan) -> DhcpPlan:
    return plan.part("dhcp", DhcpPlan())


# -- apply: a dnsmasq per bridge --------------------------------------------------------------------


def _bridge_ipv6(namespace: str, bridge: str) -> list[tuple[str, str]]:
    """The sysctls that give a bridge of the lab namespace IPv6 (off namespace-wide) without it
    taking addresses or routes from any advertisement, its own included."""
    conf = f"net.ipv6.conf.{bridge}"
    return [(f"{conf}.accept_ra", "0"), (f"{conf}.autoconf", "0"), (f"{conf}.dad_transmits", "0"), (f"{conf}.disable_ipv6", "0")]


def start_server(plan: Plan, server: PlannedServer, records: daemon.Records) -> None:
    if not dnsmasq.installed():
        raise DhcpError(f"bridge {server.bridge}: dhcp and ra need dnsmasq on this host: apt-get install {dnsmasq.PACKAGE} (`vnetlab setup` does)")
    ns = plan.namespace
    if server.own_address and server.address:
        linux_bridge.add_address(ns, server.bridge, server.address)
    if server.address6:
        for key, value in _bridge_ipv6(ns, server.bridge):
            netns.set_sysctl(ns, key, value)
        linux_bridge.add_address(ns, server.bridge, server.address6)
    here = dnsmasq.folder(plan.lab_dir)
    here.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(dnsmasq.config_path(plan.lab_dir, server.bridge), dnsmasq.config_text(server.config, plan.lab_dir).encode())
    d = dnsmasq.daemon(plan.lab_dir, server.bridge, ns)
    pid = daemon.start(d, records)
    try:
        daemon.wait_until(lambda: _started(d.log), d, pid, START_WAIT, "its sockets bound")
    except daemon.DaemonError as exc:
        raise DhcpError(f"bridge {server.bridge}: {exc}") from None


def _started(log: Path | None) -> bool:
    try:
        return log is not None and b"started, version" in log.read_bytes()[-65536:]
    except OSError:
        return False


def stop_server(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    bridge = resource.name.rpartition(":")[0]
    try:
        daemon.stop(resource.name, dnsmasq.DNSMASQ, f"--conf-file={dnsmasq.config_path(lab_dir, bridge)}", state.namespace)
    except daemon.DaemonError as exc:
        raise DhcpError(f"dnsmasq of bridge {bridge}: {exc}") from None


# -- configure: the guests ask, the run waits and reads back -------------------------------------------


# The DNS servers in $dns (space-separated) as /etc/resolv.conf: what a tiny guest's udhcpc hook and a
# debian guest's lease (NETWORKD_DNS) both write.
RESOLV_CONF_FROM_DNS = 'for s in $dns; do echo "nameserver $s"; done > /etc/resolv.conf'

UDHCPC_SCRIPT = """#!/bin/sh
# vnetlab: udhcpc's hook in the tiny guest. It sets what the server gave on the NIC (its address,
# the default route through its router, its DNS servers in /etc/resolv.conf) and keeps it while
# the client asks again (deconfig does nothing: the lab's checks may be running).
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface" 2>/dev/null
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	[ -n "$dns" ] && """ + RESOLV_CONF_FROM_DNS + """
	{ echo "ip=$ip/$mask"; echo "router=$router"; echo "dns=$dns"; echo "lease=$lease"; echo "serverid=$serverid"; } > "/run/vnetlab/udhcpc.$interface.lease"
	;;
esac
exit 0
"""
SCRIPT_PATH = "/run/vnetlab/udhcpc.sh"


def _networkd_file(client: PlannedClient, slaac_too: bool, ipv6: bool) -> str:
    lines = [
        "# vnetlab: this NIC asks the bridge's DHCP server (systemd-networkd then manages it)",
        "[Match]", f"MACAddress={client.mac}",
        "[Link]", "RequiredForOnline=no",
        "[Network]", "DHCP=ipv4", f"LinkLocalAddressing={'ipv6' if ipv6 else 'no'}", f"IPv6AcceptRA={'yes' if slaac_too else 'no'}", "KeepConfiguration=static",
        *([f"Address={client.static6}"] if client.static6 else []),
        "[DHCPv4]", "ClientIdentifier=mac", "UseDNS=no",
    ]
    return "\n".join(lines) + "\n"


NETWORKD_CONF = "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n"


def client_commands(client: PlannedClient, slaac_too: bool = False, ipv6: bool = False) -> list[tuple[str, bytes | None]]:
    """(shell command, its stdin) that make the guest ask for its lease, by image kind."""
    dev = find_nic(client.mac)
    if client.kind == TINY:
        return [
            (f"mkdir -p /run/vnetlab && cat > {SCRIPT_PATH} && chmod 755 {SCRIPT_PATH}", UDHCPC_SCRIPT.encode()),
            (f"{dev}; udhcpc -i \"$dev\" -s {SCRIPT_PATH} -p /run/vnetlab/udhcpc.$dev.pid -x hostname:{shlex.quote(client.vm)} -n -t 20 -T 2 -A 2", None),
        ]
    if client.kind == DEBIAN:
        unit = f"/run/systemd/network/10-vnetlab-{client.nic}.network"
        return [
            ("mkdir -p /run/systemd/networkd.conf.d && cat > /run/systemd/networkd.conf.d/vnetlab.conf", NETWORKD_CONF.encode()),
            (f"mkdir -p /run/systemd/network && cat > {unit}", _networkd_file(client, slaac_too, ipv6).encode()),
            ("systemctl restart systemd-networkd", None),
        ]
    return []  # a cloud image asked at boot: its network-config says dhcp4 for this NIC


# Whether systemd-networkd manages $dev (it keeps the NIC's .network file in its link state);
# networkd is then restarted to ask again: networkctl needs D-Bus, which a minimal guest lacks.
NETWORKD_MANAGES = 'i=$(cat /sys/class/net/"$dev"/ifindex); grep -qs "^NETWORK_FILE=" /run/systemd/netif/links/"$i" && command -v systemctl >/dev/null 2>&1'

# Once more, so that a capture sees the whole exchange (DISCOVER … ACK): systemd-networkd when it
# manages the NIC, ifupdown when it does (down and up again), else a one-shot busybox udhcpc or dhclient.
AGAIN = (
    f'if {NETWORKD_MANAGES}; then '
    'systemctl restart systemd-networkd; '
    'elif command -v ifquery >/dev/null 2>&1 && ifquery --state "$dev" >/dev/null 2>&1; then '
    'ifdown "$dev" && ifup "$dev"; '
    'elif command -v udhcpc >/dev/null 2>&1; then '
    f'mkdir -p /run/vnetlab; [ -x {SCRIPT_PATH} ] || {{ printf %s {shlex.quote(UDHCPC_SCRIPT)} > {SCRIPT_PATH} && chmod 755 {SCRIPT_PATH}; }}; '
    f'udhcpc -i "$dev" -s {SCRIPT_PATH} -f -q -n -t 5 -T 2; '
    'elif command -v dhclient >/dev/null 2>&1; then '
    'dhclient -1 -v "$dev"; '
    'else echo "no DHCP client vnetlab knows (systemd-networkd, ifupdown, udhcpc, dhclient)" >&2; exit 1; fi'
)


def ask_again(client: PlannedClient) -> str:
    return f"{find_nic(client.mac)}; {AGAIN}"


def _addresses(ssh: GuestSSH, client: PlannedClient, family: int) -> tuple[str, list[tuple[str, bool]]]:
    """(the NIC's name, its global addresses of `family` with whether each is still tentative)."""
    result = ssh.run(f"{find_nic(client.mac)}; echo \"$dev\"; ip -{family} -o addr show dev \"$dev\" scope global", timeout=15.0, check=False)
    lines = result.stdout.splitlines()
    dev = excerpt(lines[0], 15) if lines else "?"
    out = []
    for line in lines[1:50]:
        words = line.split()
        for k, word in enumerate(words[:-1]):
            iface = parse_interface(words[k + 1]) if word in ("inet", "inet6") else None
            if iface is not None and iface.version == family:  # the guest's words: only an address is kept (and shown)
                out.append((iface.with_prefixlen, "tentative" in words))
    return dev, out


def wait_for_address(ssh: GuestSSH, client: PlannedClient, family: int, wanted: str, timeout: float) -> str:
    """Until the guest's NIC holds `wanted` (usable, not tentative); DhcpError names what it holds
    instead (a SLAAC address formed another way than the plan's EUI-64, a lease of another address)."""
    deadline = time.monotonic() + timeout
    how = "lease" if family == 4 else "SLAAC address"
    while True:
        dev, held = _addresses(ssh, client, family)
        if (wanted, False) in held:
            return dev
        others = [a for a, _ in held if a != wanted]
        if family == 6 and others and ipaddress.IPv6Interface(others[0]).network == ipaddress.IPv6Interface(wanted).network:
            raise DhcpError(f"{client.vm} {client.nic}: formed {others[0]} from the advertised prefix, the plan says {wanted} (EUI-64 of {client.mac}): its kernel or network manager forms another kind of address (addr_gen_mode, stable privacy)")
        if time.monotonic() > deadline:
            seen = ", ".join(a for a, _ in held) or "no address"
            hint = " — a cloud image asks at boot, through its own DHCP client and cloud-init's network config (dhcp4: true): does the image have one?" if family == 4 and client.kind == FILE else ""
            raise DhcpError(f"{client.vm} {client.nic}: no {how} {wanted} within {timeout:g} s (it holds {seen}){hint}")
        time.sleep(0.5)


def wait_for_lease(ssh: GuestSSH, client: PlannedClient, timeout: float) -> None:
    """Its reserved address, and the default route through the router its lease names (a lab's
    check may go through it at once)."""
    wait_for_address(ssh, client, 4, client.dhcp or "", timeout)
    if client.router is None:
        return
    deadline = time.monotonic() + timeout
    while True:
        result = ssh.run(f"{find_nic(client.mac)}; ip -4 route show default", timeout=15.0, check=False)
        if f"via {client.router} " in result.stdout + " ":
            return
        if time.monotonic() > deadline:
            raise DhcpError(f"{client.vm} {client.nic}: leased {client.dhcp} but no default route via {client.router} within {timeout:g} s (routes: {excerpt(result.stdout) or 'none'})")
        time.sleep(0.5)


# systemd-networkd keeps a lease's DNS servers in its lease file but writes no /etc/resolv.conf
# (that is systemd-resolved's, which the debian kind does not have): the servers the lease gave,
# as udhcpc's hook writes them in the tiny guest. Nothing when the lease named none.
NETWORKD_DNS = (
    'i=$(cat /sys/class/net/"$dev"/ifindex); dns=$(sed -n "s/^DNS=//p" /run/systemd/netif/leases/"$i" 2>/dev/null); '
    f'if [ -n "$dns" ]; then {RESOLV_CONF_FROM_DNS}; fi'
)


def adopt_dns(ssh: GuestSSH, client: PlannedClient) -> None:
    """A networkd-managed NIC's lease: its DNS servers into /etc/resolv.conf."""
    result = ssh.run(f"{find_nic(client.mac)}; {NETWORKD_DNS}", timeout=15.0, check=False)
    if result.exit_code != 0:
        raise DhcpError(f"{client.vm} {client.nic}: could not write the lease's DNS servers to /etc/resolv.conf (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}")


def configure_client(plan: Plan, ssh: GuestSSH, clients: list[PlannedClient]) -> None:
    ipv6 = any(n.link_local for n in plan.vm(clients[0].vm).nics)
    for client in clients:
        if client.dhcp:
            for command, stdin in client_commands(client, slaac_too=client.slaac is not None, ipv6=ipv6):
                result = ssh.run(command, stdin=stdin, timeout=LEASE_WAIT, check=False)
                if result.exit_code != 0:
                    raise DhcpError(f"{client.vm} {client.nic}: asking for a lease failed (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}")
    for client in clients:
        if client.dhcp:
            wait_for_lease(ssh, client, LEASE_WAIT)
            if client.kind == DEBIAN:
                adopt_dns(ssh, client)
        if client.slaac:
            wait_for_address(ssh, client, 6, client.slaac, SLAAC_WAIT)


RADVD_CONF = "/run/vnetlab/radvd.conf"
RADVD_PID = "/run/vnetlab/radvd.pid"


def radvd_conf(radvd: tuple[PlannedRadvd, ...]) -> str:
    blocks = [
        f"interface {r.nic} {{\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 10;\n\tprefix {r.prefix} {{\n\t\tAdvOnLink on;\n\t\tAdvAutonomous on;\n\t}};\n}};\n"
        for r in radvd
    ]
    return "# vnetlab: router advertisements this guest sends\n" + "".join(blocks)


def start_radvd(ssh: GuestSSH, vm: str, radvd: tuple[PlannedRadvd, ...]) -> None:
    """radvd in the router guest: forwarding on (it is the segment's router), its own log in /run/vnetlab."""
    ssh.run(f"mkdir -p /run/vnetlab && cat > {RADVD_CONF}", stdin=radvd_conf(radvd).encode(), timeout=15.0)
    result = ssh.run(
        "command -v radvd >/dev/null || { echo 'radvd is not installed in this guest' >&2; exit 127; }; "
        f"echo 1 > /proc/sys/net/ipv6/conf/all/forwarding && radvd -C {RADVD_CONF} -p {RADVD_PID} -m logfile -l /run/vnetlab/radvd.log",
        timeout=30.0, check=False,
    )
    if result.exit_code != 0:
        raise DhcpError(f"{vm}: radvd did not start (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}")


def radvd_rows(plan: Plan, radvd: tuple[PlannedRadvd, ...]) -> list[InspectRow]:
    """A router guest's radvd (`ra: {from: VM}`): running (its pid file names a live process) and
    forwarding on, asked over the guest's SSH."""
    rows = []
    for vm, routers in _by_vm(radvd).items():
        label = f"radvd in {vm}"
        planned = "; ".join(f"{r.prefix} on {r.nic} ({r.bridge})" for r in routers)
        try:
            ssh = open_ssh(plan, plan.vm(vm), time.monotonic() + 10.0)
        except VnetlabError as exc:
            rows.append(InspectRow(label, planned, "unknown", [f"cannot reach {vm}: {exc}"]))
            continue
        try:
            out = ssh.run(f"p=$(cat {RADVD_PID} 2>/dev/null); [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null && echo \"pid $p\" || echo 'not running'; cat /proc/sys/net/ipv6/conf/all/forwarding", timeout=10.0, check=False).stdout.split("\n")
        finally:
            ssh.close()
        running, forwarding = (out + ["", ""])[:2]
        problems = [] if running.startswith("pid ") else [f"radvd does not run in {vm}"]
        if forwarding.strip() != "1":
            problems.append(f"IPv6 forwarding is off in {vm}")
        rows.append(InspectRow(label, planned, f"radvd {running.strip()}; forwarding {forwarding.strip() or '?'}", problems))
    return rows


def leases(plan: Plan) -> list[dict[str, object]]:
    """The leases dnsmasq holds (its lease files, read on the host), with the NIC each is of."""
    nics = {c.mac: c for c in _part(plan).clients}
    out = []
    for server in _part(plan).servers:
        for lease in dnsmasq.read_leases(plan.lab_dir, server.bridge):
            client = nics.get(lease.mac)
            out.append({"bridge": server.bridge, **lease.to_json(), **({"vm": client.vm, "nic": client.nic} if client else {})})
    return out


# -- checks: the client asks again while the capture runs --------------------------------------------


def _clients_of(plan: Plan, captures: list[Any], want: str) -> dict[str, list[PlannedClient]]:
    """The clients the captures are about (their one node's NICs on the captured bridge) that take an address by `want`."""
    out: dict[str, list[PlannedClient]] = {}
    for cap in captures:
        vm = cap.between[0]
        for c in _part(plan).clients:
            if c.vm == vm and c.bridge == cap.bridge and getattr(c, want) and c not in out.get(vm, []):
                out.setdefault(vm, []).append(c)
    return out


def redo_dhcp(ctx: CheckContext, captures: list[Any]) -> None:
    """Each client asks for its lease again (DISCOVER … ACK) and gets it back."""
    clients = _clients_of(ctx.plan, [_on_bridge(ctx.plan, c) for c in captures], "dhcp")

    def one(vm: str) -> None:
        ssh = ctx.sessions[vm]
        for c in clients[vm]:
            result = ssh.run(ask_again(c), timeout=LEASE_WAIT, check=False)
            if result.exit_code != 0:
                raise DhcpError(f"{vm} {c.nic} did not ask again (exit {result.exit_code}): {excerpt(result.stdout + result.stderr)}")
            wait_for_lease(ssh, c, LEASE_WAIT)

    _each(one, clients)


# IPv6 started over on $dev. Where the kernel forms the SLAAC address, IPv6 is switched off and on
# on the NIC. Where systemd-networkd forms it (it took the advertisements over: a debian guest's
# DHCP and SLAAC NIC), networkd is restarted instead. Switched off under it right after the dhcp
# stimulus had restarted it, IPv6 was off while networkd set what an advertisement brought; the
# kernel refused it ("Could not set route: IPv6 is disabled on nexthop device. Permission denied"),
# networkd marked the link failed and stopped its router solicitation client: no SLAAC address
# from any later advertisement (a restored debian guest: none within 45 s; reproduced in one by
# stopping networkd while an advertisement came, then IPv6 off, networkd on). networkd keeps the
# address it formed across the restart and solicits a router only 1-2 s after it, so the address
# ($slaac) goes first: waiting for it to come back waits for the advertisement the capture is to
# see (a restored debian guest's checks were over before its router solicitation left).
IPV6_OVER = (
    f'if {NETWORKD_MANAGES}; then ip -6 addr del "$slaac" dev "$dev" 2>/dev/null; systemctl restart systemd-networkd; '
    'else conf=/proc/sys/net/ipv6/conf/"$dev"; echo 1 > "$conf"/disable_ipv6 && echo 0 > "$conf"/disable_ipv6; fi'
)


def redo_slaac(ctx: CheckContext, captures: list[Any]) -> None:
    """Each client's NIC starts IPv6 over (solicits a router, forms its address again, checks it is
    unique); a lease that systemd-networkd asked for again on the way is back before the checks."""
    clients = _clients_of(ctx.plan, [_on_bridge(ctx.plan, c) for c in captures], "slaac")

    def one(vm: str) -> None:
        ssh = ctx.sessions[vm]
        for c in clients[vm]:
            ssh.run(f"{find_nic(c.mac)}; slaac={shlex.quote(c.slaac or '')}; {IPV6_OVER}", timeout=LEASE_WAIT)
            wait_for_address(ssh, c, 6, c.slaac or "", SLAAC_WAIT)
            if c.dhcp:
                wait_for_lease(ssh, c, LEASE_WAIT)

    _each(one, clients)


def _on_bridge(plan: Plan, cap: Any) -> Any:
    """A capture on a link (VM.NIC) is about that NIC's bridge."""
    if cap.bridge is None and cap.link is not None:
        vm, _, nic = cap.link.partition(".")
        found = next((n for n in plan.vm(vm).nics if n.guest_name == nic), None)
        return dataclasses.replace(cap, bridge=found.bridge if found else None)
    return cap


def _each(fn: Any, clients: dict[str, list[PlannedClient]]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        for future in [pool.submit(fn, vm) for vm in clients]:
            future.result()


_DISCOVER, _OFFER, _REQUEST, _ACK = 1, 2, 3, 5
_NAMES = {_DISCOVER: "DISCOVER", _OFFER: "OFFER", _REQUEST: "REQUEST", 4: "DECLINE", _ACK: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}  # RFC 2132 option 53


def dhcp_messages(packets: Any, mac: str) -> list[tuple[int, str]]:
    """(message type, the address offered or acknowledged) of every DHCP message for client `mac`, in order."""
    from scapy.layers.dhcp import BOOTP, DHCP

    mac = mac.lower()
    want = bytes.fromhex(mac.replace(":", ""))
    out = []
    for packet in packets:
        bootp = packet.getlayer(BOOTP)
        dhcp = packet.getlayer(DHCP)
        if bootp is None or dhcp is None or bytes(bootp.chaddr)[:6] != want:
            continue
        kind = next((v for k, v in (o for o in dhcp.options if isinstance(o, tuple) and len(o) == 2) if k == "message-type"), None)
        if isinstance(kind, int):
            out.append((kind, str(bootp.yiaddr)))
    return out


def judge_dhcp(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    nic = s.nic_a
    assert isinstance(nic, PlannedNic) and nic.dhcp and nic.ip  # model validation: a DHCP client on the bridge
    seen = dhcp_messages(s.packets, nic.mac)
    counts = {name: sum(1 for kind, _ in seen if kind == code) for code, name in _NAMES.items()}
    given = [ip for kind, ip in seen if kind in (_OFFER, _ACK)]
    wrong = sorted({ip for ip in given if ip != nic.ip})
    ok = all(counts[n] >= 1 for n in ("DISCOVER", "OFFER", "REQUEST", "ACK")) and not wrong
    order = " → ".join(_NAMES.get(kind, str(kind)) + (f" {ip}" if kind in (_OFFER, _ACK) else "") for kind, ip in seen[:8]) or "no DHCP message"
    return Judgement(
        ok,
        f"DISCOVER, OFFER, REQUEST and ACK of {nic.ip} for {nic.mac} ({s.name_a} {nic.guest_name})",
        order + (f" (offered {', '.join(wrong)}, not the reservation)" if wrong else ""),
        {f"dhcp_{n.lower()}": c for n, c in counts.items()},
    )


def _router_mac(plan: Plan, bridge: str) -> str:
    b = next(x for x in plan.scenario.bridges if x.name == bridge)
    if b.ra.source is not None:
        nic = plan.vm(b.ra.source).nic_on(bridge)
        if nic is not None:
            return nic.mac
    return plan.bridge(bridge).mac


def judge_ra(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    from vnetlab.checks.capture import count_router_solicitations, router_advertisements

    nic = s.nic_a
    assert isinstance(nic, PlannedNic) and nic.slaac  # model validation
    bridge = nic.bridge
    b = next(x for x in plan.scenario.bridges if x.name == bridge)
    prefix = str(ipaddress.IPv6Network(b.ra.prefix))
    router = _router_mac(plan, bridge).lower()
    ras = list(router_advertisements(s.packets))
    from_router = [p for p, prefixes in ras if str(getattr(p, "src", "")).lower() == router and prefix in prefixes]
    solicits = count_router_solicitations(s.packets, nic.mac)
    who = f"{b.ra.source}'s radvd" if b.ra.source else "the lab namespace's dnsmasq"
    return Judgement(
        len(from_router) >= 1,
        f"≥1 router advertisement of {prefix} from {router} ({who}) on {bridge}",
        f"{len(from_router)} advertisement(s) of {prefix} from {router} ({len(ras)} in all), {solicits} router solicitation(s) from {nic.mac} ({s.name_a})",
        {"ra": len(from_router), "ra_all": len(ras), "rs": solicits},
    )


# -- the feature -----------------------------------------------------------------------------------------


def _by_vm(items: tuple[Any, ...]) -> dict[str, list[Any]]:
    """Clients or radvd records, grouped by their guest (one SSH session each)."""
    out: dict[str, list[Any]] = {}
    for item in items:
        out.setdefault(item.vm, []).append(item)
    return out


def explain_lines(plan: Plan) -> list[str]:
    ns = plan.namespace
    lines = ["# one dnsmasq per bridge, bound to it only; vnetlab runs it in the foreground as its child and records its PID"]
    for s in _part(plan).servers:
        if s.own_address and s.address:
            lines.append(sh("ip", "-n", ns, "addr", "add", s.address, "dev", s.bridge))
        if s.address6:
            lines.append(sh("ip", "netns", "exec", ns, "sysctl", "-qw", *(f"{k}={v}" for k, v in _bridge_ipv6(ns, s.bridge))))
            lines.append(sh("ip", "-n", ns, "addr", "add", s.address6, "dev", s.bridge, "nodad"))
        conf = dnsmasq.config_path(plan.lab_dir, s.bridge)
        lines += [f"cat > {shlex.quote(str(conf))} <<'EOF'", *dnsmasq.config_text(s.config, plan.lab_dir).splitlines(), "EOF"]
        lines.append(sh("ip", "netns", "exec", ns, *dnsmasq.argv(plan.lab_dir, s.bridge)) + " &")
    return lines


def explain_guest_lines(plan: Plan) -> list[str]:
    lines: list[str] = []
    part = _part(plan)
    for vm, routers in _by_vm(part.radvd).items():
        lines += [guest_line(vm, f"cat > {RADVD_CONF} <<'EOF'"), *radvd_conf(tuple(routers)).splitlines(), "EOF"]
        lines.append(guest_line(vm, f"echo 1 > /proc/sys/net/ipv6/conf/all/forwarding; radvd -C {RADVD_CONF}"))
    for c in part.clients:
        if c.dhcp:
            if c.kind == TINY:
                lines.append(guest_line(c.vm, f"udhcpc -i {c.nic} -s {SCRIPT_PATH} -x hostname:{c.vm}    # the script sets what the server gives; leased: {c.dhcp}"))
            elif c.kind == DEBIAN:
                lines.append(guest_line(c.vm, f"# systemd-networkd: /run/systemd/network/10-vnetlab-{c.nic}.network with DHCP=ipv4, then systemctl restart systemd-networkd; leased: {c.dhcp}; its DNS servers (DNS= in /run/systemd/netif/leases/IFINDEX) into /etc/resolv.conf"))
            else:
                lines.append(guest_line(c.vm, f"# cloud-init's network-config asks at boot (dhcp4: true for {c.nic}); leased: {c.dhcp}"))
        if c.slaac:
            lines.append(guest_line(c.vm, f"# {c.nic} forms {c.slaac} from the router advertisements (EUI-64 of {c.mac}): ip -6 addr show dev {c.nic}"))
    return lines


def _running_servers(plan: Plan) -> dict[str, int]:
    """bridge → PID of its dnsmasq, found in the lab namespace by its config file."""
    if not netns.namespace_exists(plan.namespace):
        return {}
    out = {}
    members = procfs.net_namespace_members(netns.namespace_path(plan.namespace))
    for s in _part(plan).servers:
        marker = f"--conf-file={dnsmasq.config_path(plan.lab_dir, s.bridge)}"
        pid = next((p for p in members if daemon.is_running(p, dnsmasq.DNSMASQ, marker)), None)
        if pid is not None:
            out[s.bridge] = pid
    return out


class Dhcp(Feature):
    name = "dhcp"
    requires = ("containers",)  # a bridge's gateway is its DHCP server's address
    model = MODEL
    judges = {"dhcp": judge_dhcp, "ra": judge_ra}
    stimuli = {"dhcp": redo_dhcp, "ra": redo_slaac}
    removers = {RESOURCE: stop_server}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        part = _plan(ctx)
        if part is None:
            return None
        return PlanPart(data=part, resources=tuple(Resource(RESOURCE, f"{s.bridge}:<pid>") for s in part.servers))

    def dump(self, plan: Plan) -> dict[str, Any]:
        part = _part(plan)
        if not part.servers and not part.clients:
            return {}
        return {"dhcp": {
            "servers": [
                {"bridge": s.bridge, **({"address": s.address} if s.address else {}), **({"address6": s.address6} if s.address6 else {}),
                 "config": dnsmasq.config_text(s.config, plan.lab_dir).splitlines()}
                for s in part.servers
            ],
            "clients": [{"vm": c.vm, "nic": c.nic, "mac": c.mac, **({"dhcp": c.dhcp} if c.dhcp else {}), **({"slaac": c.slaac} if c.slaac else {})} for c in part.clients],
            **({"radvd": [{"vm": r.vm, "nic": r.nic, "prefix": r.prefix} for r in part.radvd]} if part.radvd else {}),
        }}

    def apply(self, plan: Plan, ctx: ApplyContext) -> None:
        for server in _part(plan).servers:
            start_server(plan, server, ctx.records(RESOURCE))

    def configure_label(self, plan: Plan) -> str | None:
        part = _part(plan)
        if not part.clients and not part.radvd:
            return None
        return "DHCP leases and SLAAC addresses: " + ", ".join(f"{c.vm} {c.nic}" for c in part.clients) + (f" (router advertisements from {', '.join(r.vm for r in part.radvd)})" if part.radvd else "")

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        part = _part(plan)
        for vm, routers in _by_vm(part.radvd).items():
            start_radvd(sessions[vm], vm, tuple(routers))
        clients = _by_vm(part.clients)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
            for future in [pool.submit(configure_client, plan, sessions[vm], cs) for vm, cs in clients.items()]:
                future.result()

    def report(self, plan: Plan) -> dict[str, Any] | None:
        part = _part(plan)
        if not part.clients:
            return None
        return {
            "leases": leases(plan),
            "slaac": [{"vm": c.vm, "nic": c.nic, "mac": c.mac, "address": c.slaac} for c in part.clients if c.slaac],
        }

    def report_lines(self, data: dict[str, Any]) -> list[str]:
        lines = [f"lease on {x['bridge']}: {x.get('vm', '?')} {x.get('nic', '')} {x['mac']} → {x['address']}" for x in data.get("leases", ())]
        return lines + [f"SLAAC: {x['vm']} {x['nic']} {x['mac']} → {x['address']}" for x in data.get("slaac", ())]

    def explain(self, plan: Plan) -> list[Section]:
        part = _part(plan)
        out = []
        if part.servers:
            out.append(Section("DHCP and router advertisements: a dnsmasq per bridge in the lab namespace", tuple(explain_lines(plan)), stage="network"))
        if part.clients or part.radvd:
            out.append(Section("Addresses the guests get: DHCP leases, SLAAC", tuple(explain_guest_lines(plan)), stage="configure"))
        return out

    def graph(self, plan: Plan, drawing: Any) -> None:
        bridges = {n.label[0]: n for n in drawing.topo.bridges}
        for b in plan.scenario.bridges:
            node = bridges.get(b.name)
            if node is None:
                continue
            if b.dhcp is not None:
                node.label.append(f"dhcp {b.dhcp.range}")
            if b.ra is not None:
                node.label.append(f"ra {b.ra.prefix}" + (f" from {b.ra.source}" if b.ra.source else ""))

    def inspect(self, plan: Plan) -> list[InspectRow]:
        part = _part(plan)
        running = _running_servers(plan)
        rows = []
        by_bridge = {}
        for lease in leases(plan):
            by_bridge.setdefault(lease["bridge"], []).append(lease)
        for s in part.servers:
            problems = [] if s.bridge in running else [f"no dnsmasq runs for bridge {s.bridge}"]
            held = by_bridge.get(s.bridge, [])
            for r in s.config.reservations:
                if not any(x["mac"] == r.mac and x["address"] == r.address for x in held):
                    problems.append(f"no lease of {r.address} to {r.mac} ({r.name})")
            state = (f"dnsmasq pid {running[s.bridge]}" if s.bridge in running else "not running") + "".join(f"; lease {x['address']} → {x['mac']}" for x in held)
            what = " and ".join(w for w, on in (("dhcp", s.config.range_start), ("ra", s.config.ra_prefix)) if on)
            planned = ", ".join(p for p in (f"{s.config.range_start}-{s.config.range_end}" if s.config.range_start else "", s.config.ra_prefix or "") if p)
            rows.append(InspectRow(f"{what} on {s.bridge}", planned, state, problems))
        return rows + radvd_rows(plan, part.radvd)
