"""WireGuard tunnels between guests (tutorial §2): plan, keys, guest configuration, checks.

The scenario only says which VMs a tunnel joins, over which bridge and with
which addresses; everything run in the guests is derived here from that intent
(`guest_commands`), so `vnetlab run` and `--explain` show the same commands.
Keys are X25519 pairs made on the host in Python (no `wg genkey` on the host),
stored as 0600 secrets in the lab's folder and sent to the guest on stdin.
"""

from __future__ import annotations

import base64
import concurrent.futures
import ipaddress
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from vnetlab.backends.keys import write_secret
from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.base import CaptureSubject, CheckContext, CheckKind, CheckResult, Evidence, Judgement, Wire, expected_echo_pairs
from vnetlab.checks.capture import count_icmp_in_subnet, count_ipv4, count_udp, count_udp_from, udp_payloads
from vnetlab.checks.ping import output_evidence, ping_argv, recorded
from vnetlab.checks.parse import excerpt, handshakes, unix_time
from vnetlab.features.base import Feature
from vnetlab.model.scenario import IFACE_MAX, NAME, RESERVED_IFACES, VM_NAME_MAX, Expectation, ModelExtension, Overlay, decl
from vnetlab.model.typed_yaml import spec
from vnetlab.model.addressing import nic_addresses
from vnetlab.model.validate import Rules, interface, segment_networks
from vnetlab.plan.planner import Plan, PlanContext, PlanPart
from vnetlab.tools.explain import Section, guest_line, ssh_line

GUEST_KEY_DIR = "/etc/wireguard"


# -- the scenario keys: `wireguard:` tunnels, the `wireguard` check, `via:` on pings ----


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
class WireGuardCheck:
    tunnel: str = spec("WireGuard interface name of a tunnel in the scenario's wireguard section", pattern=NAME, max_length=IFACE_MAX)
    between: list[str] = spec("the two member VMs that must have completed a handshake", min_items=2)
    rekey: bool = spec(
        "make a new handshake happen now: between[0]'s tunnel interface goes down and up (its sessions are dropped, its "
        "configuration stays) and pings between[1] once through it; both ends must then report a handshake no older than that, "
        "and graded on the wire (an exercise) the capture on the underlay must see that handshake. Without it, a handshake of any age counts",
        default=False,
    )

    def check_shape(self) -> list[str]:
        return [] if len(self.between) == 2 else [f"between: expected exactly two VM names, got {len(self.between)}"]


def tunnel_named(scenario: Any, name: str) -> WireGuardTunnel | None:
    return next((t for t in scenario.wireguard if t.name == name), None)


def capture_tunnel(scenario: Any, cap: Any) -> WireGuardTunnel | None:
    """The tunnel a capture's WireGuard expectations are about: on the captured bridge, joining both VMs."""
    return next((t for t in scenario.wireguard if t.underlay == cap.bridge and set(cap.between) <= {m.vm for m in t.members}), None)


@dataclass(frozen=True)
class WgPeer:
    vm: str
    endpoint: str  # underlay address:port of the peer
    allowed_ips: str  # the peer's tunnel address as /32: what it may send and what is routed to it


@dataclass(frozen=True)
class WgInterface:
    """One member's end of a tunnel: what is configured inside that VM."""

    tunnel: str  # interface name in the guest, e.g. wg0
    vm: str
    address: str  # tunnel address with prefix
    listen_port: int
    key_file: Path  # the private key on the host (a secret of the lab)
    peers: tuple[WgPeer, ...]

    @property
    def guest_key_file(self) -> str:
        return f"{GUEST_KEY_DIR}/{self.tunnel}.key"


def _underlay_ip(scenario: Any, vm: str, bridge: str) -> str:
    """The member's IPv4 address on the underlay (static or its DHCP reservation): the peers' endpoint."""
    return next(str(a.ipv4.ip) for n in scenario.vm(vm).nics if n.bridge == bridge and (a := nic_addresses(n)).ipv4 is not None)


def plan_wireguard(scenario: Any, secrets: Path) -> tuple[WgInterface, ...]:
    """Every member of every tunnel, each peering with all the others (a full mesh)."""
    out: list[WgInterface] = []
    for tunnel in scenario.wireguard:
        for member in tunnel.members:
            peers = tuple(
                WgPeer(
                    other.vm,
                    f"{_underlay_ip(scenario, other.vm, tunnel.underlay)}:{tunnel.listen_port}",
                    f"{interface(other.address).ip}/32",  # type: ignore[union-attr]  # model validation: an IPv4 address
                )
                for other in tunnel.members
                if other.vm != member.vm
            )
            out.append(WgInterface(tunnel.name, member.vm, member.address, tunnel.listen_port, secrets / f"wg-{tunnel.name}-{member.vm}.key", peers))
    return tuple(out)


def tunnel_ip(scenario: Any, tunnel: str, vm: str) -> str:
    """The tunnel address (without prefix) of member `vm`; the model guarantees it exists."""
    t = tunnel_named(scenario, tunnel)
    assert t is not None
    member = next(m for m in t.members if m.vm == vm)
    return str(interface(member.address).ip)  # type: ignore[union-attr]  # model validation: an IPv4 address


# -- keys -----------------------------------------------------------------------


def ensure_keys(interfaces: tuple[WgInterface, ...]) -> None:
    """Generate each member's private key once per lab (kept for `vnetlab check`)."""
    for iface in interfaces:
        if not iface.key_file.exists():
            raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            write_secret(iface.key_file, base64.b64encode(raw) + b"\n")


def public_key(key_file: Path) -> str:
    """The base64 public key `wg pubkey` would print for the private key in key_file."""
    raw = base64.b64decode(key_file.read_text().strip())
    public = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(public).decode()


# -- guest configuration ----------------------------------------------------------


def guest_commands(iface: WgInterface, peer_key: Callable[[str], str]) -> list[str]:
    """The commands run in iface.vm once its private key is at guest_key_file; peer_key(vm) gives a peer's public key."""
    wg_set = f"wg set {iface.tunnel} listen-port {iface.listen_port} private-key {iface.guest_key_file}"
    for peer in iface.peers:
        wg_set += f" peer {peer_key(peer.vm)} allowed-ips {peer.allowed_ips} endpoint {peer.endpoint}"
    return [
        "modprobe wireguard",
        f"ip link add {iface.tunnel} type wireguard",
        wg_set,
        f"ip addr add {iface.address} dev {iface.tunnel}",
        f"ip link set {iface.tunnel} up",
    ]


def key_upload_command(iface: WgInterface) -> str:
    """Receives the private key on stdin (dropbear has no sftp)."""
    return f"umask 077 && mkdir -p {GUEST_KEY_DIR} && cat > {iface.guest_key_file}"


def configure(interfaces: tuple[WgInterface, ...], sessions: dict[str, GuestSSH]) -> None:
    """Send each member its key and bring its tunnel up, all guests in parallel."""
    if not interfaces:
        return
    ensure_keys(interfaces)
    keys = {(i.tunnel, i.vm): public_key(i.key_file) for i in interfaces}

    def one(iface: WgInterface) -> None:
        ssh = sessions[iface.vm]
        ssh.run(key_upload_command(iface), stdin=iface.key_file.read_bytes(), timeout=20.0)
        commands = guest_commands(iface, lambda vm: shlex.quote(keys[(iface.tunnel, vm)]))
        ssh.run(" && ".join(commands), timeout=30.0)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(interfaces)) as pool:
        for future in [pool.submit(one, i) for i in interfaces]:
            future.result()


# -- checks ---------------------------------------------------------------------


def handshake_command(tunnel: str) -> str:
    return f"wg show {tunnel} latest-handshakes"


def handshake_probe(tunnel: str) -> str:
    """What a check runs on each member: the guest's clock, then its handshakes (an age needs both)."""
    return f"date +%s; {handshake_command(tunnel)}"


def rekey_command(tunnel: str, peer_ip: str) -> str:
    """Drop the interface's sessions (down and up keeps its keys, peers, port and addresses) and
    send one packet through it, which starts a new handshake at once."""
    return f"ip link set {tunnel} down && ip link set {tunnel} up && ping -c 1 -W 5 {peer_ip} >/dev/null"


def collect_check(ctx: CheckContext, check: WireGuardCheck) -> Evidence:
    """Each member's `wg show` of its handshakes (with its clock), and the public keys of both.
    With rekey, first both clocks and a new handshake (between[0]'s wg down and up, one echo
    through it); else, graded on the wire, one echo through the tunnel, so that the capture sees
    the tunnel work (a handshake, or data both ways when the session is fresh) however long ago it began."""
    interfaces = {i.vm: i for i in ctx.plan.part("wireguard") if i.tunnel == check.tunnel}
    a, b = check.between
    data: dict[str, Any] = {"keys": {vm: public_key(interfaces[vm].key_file) for vm in (a, b)}}
    peer = tunnel_ip(ctx.plan.scenario, check.tunnel, b)
    if check.rekey:  # the clocks first: a handshake no older than its own side's clock then is the new one
        data["clock"] = output_evidence(ctx.sessions[b].run("date +%s", timeout=15.0, check=False))
        data["rekey"] = output_evidence(ctx.sessions[a].run(f"date +%s; {rekey_command(check.tunnel, peer)}", timeout=30.0, check=False))
    elif ctx.wire:
        data["probe"] = output_evidence(ctx.sessions[a].run(shlex.join(ping_argv(1, peer)), timeout=15.0, check=False))
    for me in (a, b):
        data[me] = output_evidence(ctx.sessions[me].run(handshake_probe(check.tunnel), timeout=15.0, check=False))
    return Evidence(data, guests=(a, b))


def _rekeyed_since(plan: Plan, check: WireGuardCheck, evidence: Evidence) -> tuple[dict[str, int | None], list[str]]:
    """Each member's clock before the rekey (guest output: parsed with bounds), and what went wrong with it."""
    a, b = check.between
    rekey, clock = recorded(Evidence(evidence.data["rekey"])), recorded(Evidence(evidence.data["clock"]))
    since = {a: unix_time(rekey.stdout.partition("\n")[0]), b: unix_time(clock.stdout.partition("\n")[0])}
    command = rekey_command(check.tunnel, tunnel_ip(plan.scenario, check.tunnel, b))
    said = [f"{a}: `{command}` exited {rekey.exit_code}" + (f": {excerpt(rekey.stderr, 200)}" if rekey.stderr.strip() else "")] if rekey.exit_code != 0 else []
    return since, said  # a failed rekey is said; the handshakes show whether one happened anyway


def judge_check(plan: Plan, check: WireGuardCheck, evidence: Evidence) -> CheckResult:
    """Both members must report a completed handshake with each other (read from the kernel via
    `wg show`): each one's output names the other's public key with a handshake time (0: never);
    with rekey, one no older than the check. The command named in the detail is the plan's, not
    the evidence's word."""
    a, b = check.between
    keys = evidence.data["keys"]
    since, seen = _rekeyed_since(plan, check, evidence) if check.rekey else ({}, [])
    ok = True
    data: dict[str, object] = {}
    for me, peer in ((a, b), (b, a)):
        result = recorded(Evidence(evidence.data[me]))
        first, _, rest = result.stdout.partition("\n")  # guest output: parsed with bounds, never trusted
        now = unix_time(first)
        stamp = handshakes(rest).get(str(keys[peer]), 0)
        data[me] = {"peer": peer, "latest_handshake": stamp, "guest_time": now}
        start = since.get(me)
        if result.exit_code != 0:
            ok = False
            seen.append(f"{me}: `{handshake_probe(check.tunnel)}` exited {result.exit_code}: {excerpt(result.stderr or result.stdout, 200)}")
        elif stamp == 0:
            ok = False
            seen.append(f"{me}: no handshake with {peer}'s key yet")
        elif check.rekey and (start is None or stamp < start):
            ok = False
            seen.append(f"{me}: no handshake with {peer} since the rekey (the latest {start - stamp} s before it)" if start is not None else f"{me}: its clock could not be read before the rekey")
        else:
            age = f"{now - stamp} s ago" if now is not None else f"at {stamp}"
            seen.append(f"{me}: handshake with {peer} {age}" + (" (after the rekey)" if check.rekey else ""))
    fresh = " made during this check (after a rekey)" if check.rekey else ""
    detail = f"expected a completed handshake{fresh} on {check.tunnel} between {a} and {b} on both sides; saw {'; '.join(seen)}"
    return CheckResult(f"wireguard {check.tunnel}: handshake {a} ↔ {b}" + (" (rekeyed)" if check.rekey else ""), "wireguard", ok, detail, data=data)


WG_MESSAGES = {1: "handshake initiation", 2: "handshake response", 3: "cookie reply", 4: "data"}
HANDSHAKE_INITIATION, HANDSHAKE_RESPONSE, DATA = 1, 2, 4
_SIZES = {1: 148, 2: 92, 3: 64}  # a handshake message has a fixed size (the WireGuard paper, §5.4)
_DATA_MIN = 32  # a data message's header (16) and its authentication tag (16), even for a keepalive


def message_types(payloads: Iterable[bytes]) -> Counter[int]:
    """WireGuard message types among UDP payloads: a type is a little-endian 32-bit word (1-4, then
    three zero bytes), and each message has its size (handshakes and cookies exact, data at least 32)."""
    found: Counter[int] = Counter()
    for payload in payloads:
        kind = payload[0] if len(payload) >= 4 and payload[1:4] == b"\0\0\0" else 0
        if (kind in _SIZES and len(payload) == _SIZES[kind]) or (kind == DATA and len(payload) >= _DATA_MIN):
            found[kind] += 1
    return found


def handshake_seen(there: Counter[int], back: Counter[int]) -> bool:
    """An initiation one way and its response the other (either member may have begun)."""
    return bool((there[HANDSHAKE_INITIATION] and back[HANDSHAKE_RESPONSE]) or (back[HANDSHAKE_INITIATION] and there[HANDSHAKE_RESPONSE]))


def _messages(packets: Any, ip_a: str, ip_b: str, port: int) -> tuple[Counter[int], Counter[int]]:
    """The WireGuard messages ip_a sent ip_b and those it got back, on the tunnel's port."""
    return message_types(udp_payloads(packets, ip_a, ip_b, port)), message_types(udp_payloads(packets, ip_b, ip_a, port))


def _said(seen: Counter[int]) -> str:
    return ", ".join(f"{n} {WG_MESSAGES[t]}" for t, n in sorted(seen.items())) or "nothing"


def _underlay_points(plan: Plan, check: WireGuardCheck) -> list[str]:
    tunnel = tunnel_named(plan.scenario, check.tunnel)
    return [tunnel.underlay] if tunnel is not None else []


def judge_handshake_wire(plan: Plan, check: WireGuardCheck, evidence: Evidence, frames: Mapping[str, Any]) -> Judgement:
    """On the underlay: a handshake (an initiation one way, its response the other) or, for a session
    begun earlier, data messages both ways; only a completed handshake gives either. With rekey
    the check made a new handshake: only that counts."""
    tunnel = tunnel_named(plan.scenario, check.tunnel)
    assert tunnel is not None  # guaranteed by model validation
    a, b = check.between
    ip_a, ip_b = _underlay_ip(plan.scenario, a, tunnel.underlay), _underlay_ip(plan.scenario, b, tunnel.underlay)
    there, back = _messages(frames.get(tunnel.underlay, ()), ip_a, ip_b, tunnel.listen_port)
    handshake = handshake_seen(there, back)
    data_both = bool(there[DATA] and back[DATA]) and not check.rekey
    counts = {f"wire_{WG_MESSAGES[t].replace(' ', '_')}_{way}": n for way, seen in (("out", there), ("back", back)) for t, n in sorted(seen.items())}
    seen = f"{ip_a} → {ip_b}: {_said(there)}; back: {_said(back)} (UDP port {tunnel.listen_port} on {tunnel.underlay})"
    if not handshake and not data_both:
        seen = f"no {'new ' if check.rekey else 'completed '}WireGuard handshake crossed {tunnel.underlay}: " + seen
    wanted = "a new WireGuard handshake" if check.rekey else "a WireGuard handshake (or data both ways)"
    return Judgement(handshake or data_both, f"{wanted} between {ip_a} and {ip_b} on {tunnel.underlay}", seen, counts)


HANDSHAKE = CheckKind(collect_check, judge_check, Wire(_underlay_points, judge_handshake_wire))


def judge_udp(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """The tunnel's traffic crossed the bridge as UDP on the listen port between the underlay addresses."""
    tunnel = capture_tunnel(plan.scenario, check)
    assert tunnel is not None and s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    want = max(1, 2 * expected_echo_pairs(plan, s.name_a, s.name_b, via=tunnel.name))  # each echo request and reply, encrypted
    n = count_udp(s.packets, s.nic_a.ip, s.nic_b.ip, tunnel.listen_port)
    return Judgement(
        n >= want,
        f"≥{want} UDP datagram(s) on port {tunnel.listen_port} between {s.nic_a.ip} and {s.nic_b.ip} ({tunnel.name})",
        f"{n} UDP datagram(s) on port {tunnel.listen_port}",
        {"wireguard_udp": n},
    )


def judge_no_plaintext(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """No ICMP of the tunnel subnet is readable on the bridge: it only travels encrypted."""
    tunnel = capture_tunnel(plan.scenario, check)
    assert tunnel is not None
    subnet = str(interface(tunnel.members[0].address).network)  # type: ignore[union-attr]  # model validation
    n = count_icmp_in_subnet(s.packets, subnet)
    return Judgement(n == 0, f"0 plaintext ICMP packets of tunnel subnet {subnet}", f"{n} plaintext ICMP packet(s) of {subnet}", {"plaintext_tunnel_icmp": n})


def judge_handshake(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """A handshake crossed the underlay: an initiation from one member and a response from the other,
    each a UDP datagram of its exact size on the tunnel's port (what no ping output can stand in for)."""
    tunnel = capture_tunnel(plan.scenario, check)
    assert tunnel is not None and s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    there, back = _messages(s.packets, s.nic_a.ip, s.nic_b.ip, tunnel.listen_port)
    initiations, responses = there[HANDSHAKE_INITIATION] + back[HANDSHAKE_INITIATION], there[HANDSHAKE_RESPONSE] + back[HANDSHAKE_RESPONSE]
    return Judgement(
        handshake_seen(there, back),
        f"a WireGuard handshake on port {tunnel.listen_port} between {s.nic_a.ip} and {s.nic_b.ip}: an initiation (148 bytes) one way, a response (92 bytes) back",
        f"{s.nic_a.ip} → {s.nic_b.ip}: {_said(there)}; back: {_said(back)}",
        {"wireguard_initiations": initiations, "wireguard_responses": responses},
    )


def judge_only_wireguard(plan: Plan, check: Any, s: CaptureSubject) -> Judgement:
    """Between the two underlay addresses nothing but the tunnel's UDP crossed the bridge (and some of it did)."""
    tunnel = capture_tunnel(plan.scenario, check)
    assert tunnel is not None and s.nic_a.ip and s.nic_b.ip  # guaranteed by model validation
    a, b, port = s.nic_a.ip, s.nic_b.ip, tunnel.listen_port
    udp = count_udp_from(s.packets, a, b, port) + count_udp_from(s.packets, b, a, port)
    other = count_ipv4(s.packets, src=a, dst=b) + count_ipv4(s.packets, src=b, dst=a) - udp
    return Judgement(
        udp > 0 and other == 0,
        f"only UDP on port {port} between {a} and {b} (and some)",
        f"{udp} UDP datagram(s) on port {port}, {other} other IPv4 packet(s) between them",
        {"wireguard_udp_port": udp, "underlay_other": other},
    )


# -- rules -----------------------------------------------------------------------------


def _validate(r: Rules) -> None:
    for i in range(len(r.scenario.wireguard)):
        _validate_tunnel(r, i)


def _validate_tunnel(r: Rules, index: int) -> None:
    """Members exist and sit on the underlay; tunnel addresses share one subnet clear of every other."""
    scenario = r.scenario
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
            if bridge is not None and not any(n.bridge == bridge.name and nic_addresses(n).ipv4 is not None for n in vm.nics):
                r.add(f"{mpath}.vm", f"VM {member.vm!r} has no IPv4-addressed NIC on bridge {bridge.name!r} (the tunnel's underlay)")
            if tunnel.name in {vm.nic_name(j) for j in range(len(vm.nics))}:
                r.add(f"{path}.name", f"{tunnel.name!r} is already an interface name in VM {member.vm!r}")
        iface = interface(member.address)
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
        clash = next((n for n in segment_networks(scenario) if n.overlaps(iface.network)), None)
        if clash is not None:
            r.add(f"{mpath}.address", f"{iface.network} overlaps {clash}, a subnet already in the lab (a tunnel needs its own)")
        r.claim(f"{mpath}.address", iface.ip, f"{member.vm} {tunnel.name}")


def _validate_check(r: Rules, check: WireGuardCheck, path: str) -> None:
    scenario = r.scenario
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



def _validate_expectation(r: Rules, cap: Any, path: str) -> None:
    if capture_tunnel(r.scenario, cap) is None:
        tunnel_expectations = [e for e in cap.expect if e in TUNNEL_EXPECTATIONS]
        message = f"{', '.join(tunnel_expectations)} needs a WireGuard tunnel with underlay {cap.bridge!r} joining {' and '.join(cap.between)}"
        if not any(p.field == f"{path}.expect" and p.message == message for p in r.problems):  # one problem for both expectations
            r.add(f"{path}.expect", message)


TUNNEL_EXPECTATIONS = ("wireguard-udp", "no-plaintext-tunnel", "wireguard-handshake", "only-wireguard")


def _overlays(scenario: Any) -> list[Overlay]:
    return [Overlay(t.name, "WireGuard tunnel", {m.vm: m.address for m in t.members}, t.underlay, t.listen_port) for t in scenario.wireguard]


MODEL = ModelExtension(
    sections=(decl("wireguard", list[WireGuardTunnel], spec("WireGuard tunnels between VMs, configured over SSH after addressing", default_factory=list)),),
    ping_fields=(decl("via", str | None, spec("WireGuard tunnel whose address of the target VM to ping (e.g. wg0)", default=None, pattern=NAME, max_length=IFACE_MAX)),),
    checks=(decl("wireguard", WireGuardCheck | None, spec("assert a WireGuard handshake happened between two members", default=None)),),
    check_validators={"wireguard": _validate_check},
    expectations=tuple(Expectation(name, _validate_expectation) for name in TUNNEL_EXPECTATIONS),
    validate=_validate,
    overlays=_overlays,
    overlay_kind="WireGuard tunnel",
)


# -- views -----------------------------------------------------------------------------


def explain_section(plan: Plan) -> Section | None:
    interfaces = plan.part("wireguard")
    if not interfaces:
        return None
    lines = ["# a key pair per member (vnetlab makes X25519 keys in Python; by hand:)"]
    public = {(w.tunnel, w.vm): w.key_file.with_suffix(".pub") for w in interfaces}
    for w in interfaces:
        key, pub = shlex.quote(str(w.key_file)), shlex.quote(str(public[(w.tunnel, w.vm)]))
        lines.append(f"wg genkey > {key} && wg pubkey < {key} > {pub}")
    for w in interfaces:
        lines.append(f"# {w.vm}: its private key goes to {w.guest_key_file} on stdin (dropbear has no sftp)")
        lines.append(f"{ssh_line(plan, plan.vm(w.vm))} {shlex.quote(key_upload_command(w))} < {shlex.quote(str(w.key_file))}")
        lines += [guest_line(w.vm, c) for c in guest_commands(w, lambda vm, t=w.tunnel: f'"$(cat {shlex.quote(str(public[(t, vm)]))})"')]
    return Section("WireGuard tunnels", tuple(lines), stage="configure")


def _check_commands(plan: Plan, check: WireGuardCheck) -> list[str]:
    a, b = check.between
    rekey = [guest_line(a, rekey_command(check.tunnel, tunnel_ip(plan.scenario, check.tunnel, b)))] if check.rekey else []
    return rekey + [guest_line(vm, handshake_command(check.tunnel)) for vm in check.between]


class WireGuard(Feature):
    name = "wireguard"
    model = MODEL
    check_kinds = {"wireguard": HANDSHAKE}
    judges = {"wireguard-udp": judge_udp, "no-plaintext-tunnel": judge_no_plaintext, "wireguard-handshake": judge_handshake, "only-wireguard": judge_only_wireguard}
    check_commands = {"wireguard": _check_commands}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        interfaces = plan_wireguard(ctx.scenario, ctx.lab_dir / "secrets")
        return PlanPart(data=interfaces) if interfaces else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        interfaces = plan.part("wireguard")
        if not interfaces:
            return {}
        return {"wireguard": [
            {
                "tunnel": w.tunnel,
                "vm": w.vm,
                "address": w.address,
                "listen_port": w.listen_port,
                "private_key": str(w.key_file),
                "peers": [{"vm": p.vm, "endpoint": p.endpoint, "allowed_ips": p.allowed_ips} for p in w.peers],
            }
            for w in interfaces
        ]}

    def configure_label(self, plan: Plan) -> str | None:
        interfaces = plan.part("wireguard")
        if not interfaces:
            return None
        return f"WireGuard: {', '.join(sorted({w.tunnel for w in interfaces}))} in {', '.join(w.vm for w in interfaces)} over SSH"

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        configure(plan.part("wireguard"), sessions)

    def explain(self, plan: Plan) -> list[Section]:
        section = explain_section(plan)
        return [section] if section else []

    def graph(self, plan: Plan, drawing: Any) -> None:
        """One overlay edge per pair of members of a tunnel."""
        interfaces = plan.part("wireguard")
        address = {(i.tunnel, i.vm): i.address for i in interfaces}
        for i in interfaces:
            for peer in i.peers:
                if i.vm < peer.vm and i.vm in drawing.node_ids and peer.vm in drawing.node_ids:
                    label = [f"wireguard {i.tunnel}", f"{address.get((i.tunnel, i.vm), '')} ↔ {address.get((i.tunnel, peer.vm), '')}"]
                    drawing.edge(drawing.node_ids[i.vm], drawing.node_ids[peer.vm], label, overlay=True)
