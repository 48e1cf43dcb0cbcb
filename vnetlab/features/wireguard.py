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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from vnetlab.checks.capture import count_icmp_in_subnet, count_udp
from vnetlab.backends.keys import write_secret
from vnetlab.model.scenario import CaptureCheck, PingCheck, Scenario, WireGuardCheck, capture_tunnel, tunnel_named

if TYPE_CHECKING:
    from vnetlab.checks.runner import CaptureSubject, CheckContext, CheckResult, Judgement
    from vnetlab.plan.planner import Plan
    from vnetlab.backends.ssh import GuestSSH

GUEST_KEY_DIR = "/etc/wireguard"


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


def _underlay_ip(scenario: Scenario, vm: str, bridge: str) -> str:
    nic = next(n for n in scenario.vm(vm).nics if n.bridge == bridge and n.address)
    return str(ipaddress.IPv4Interface(nic.address).ip)


def plan_wireguard(scenario: Scenario, secrets: Path) -> tuple[WgInterface, ...]:
    """Every member of every tunnel, each peering with all the others (a full mesh)."""
    out: list[WgInterface] = []
    for tunnel in scenario.wireguard:
        for member in tunnel.members:
            peers = tuple(
                WgPeer(
                    other.vm,
                    f"{_underlay_ip(scenario, other.vm, tunnel.underlay)}:{tunnel.listen_port}",
                    f"{ipaddress.IPv4Interface(other.address).ip}/32",
                )
                for other in tunnel.members
                if other.vm != member.vm
            )
            out.append(WgInterface(tunnel.name, member.vm, member.address, tunnel.listen_port, secrets / f"wg-{tunnel.name}-{member.vm}.key", peers))
    return tuple(out)


def tunnel_ip(scenario: Scenario, tunnel: str, vm: str) -> str:
    """The tunnel address (without prefix) of member `vm`; the model guarantees it exists."""
    t = tunnel_named(scenario, tunnel)
    assert t is not None
    member = next(m for m in t.members if m.vm == vm)
    return str(ipaddress.IPv4Interface(member.address).ip)


def ping_target(scenario: Scenario, ping: PingCheck) -> str:
    assert ping.via is not None
    return tunnel_ip(scenario, ping.via, ping.to)


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


def parse_handshakes(text: str) -> dict[str, int]:
    """`wg show IFACE latest-handshakes` lines ("<public key>\\t<unix time>", 0 = never) by public key."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def handshake_command(tunnel: str) -> str:
    return f"wg show {tunnel} latest-handshakes"


def run_check(ctx: CheckContext, check: WireGuardCheck) -> CheckResult:
    """Both members must report a completed handshake with each other (read from the kernel via `wg show`)."""
    from vnetlab.checks.runner import CheckResult

    interfaces = {i.vm: i for i in ctx.plan.wireguard if i.tunnel == check.tunnel}
    a, b = check.between
    seen: list[str] = []
    ok = True
    data: dict[str, object] = {}
    for me, peer in ((a, b), (b, a)):
        command = f"date +%s; {handshake_command(check.tunnel)}"
        result = ctx.sessions[me].run(command, timeout=15.0, check=False)
        lines = result.stdout.splitlines()
        now = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        stamp = parse_handshakes("\n".join(lines[1:])).get(public_key(interfaces[peer].key_file), 0)
        data[me] = {"peer": peer, "latest_handshake": stamp, "guest_time": now}
        if result.exit_code != 0:
            ok = False
            seen.append(f"{me}: `{command}` exited {result.exit_code}: {(result.stderr or result.stdout).strip()[-200:]}")
        elif stamp == 0:
            ok = False
            seen.append(f"{me}: no handshake with {peer}'s key yet")
        else:
            age = f"{now - stamp} s ago" if now is not None else f"at {stamp}"
            seen.append(f"{me}: handshake with {peer} {age}")
    detail = f"expected a completed handshake on {check.tunnel} between {a} and {b} on both sides; saw {'; '.join(seen)}"
    return CheckResult(f"wireguard {check.tunnel}: handshake {a} ↔ {b}", "wireguard", ok, detail, data=data)


def judge_udp(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    """The tunnel's traffic crossed the bridge as UDP on the listen port between the underlay addresses."""
    from vnetlab.checks.runner import Judgement, expected_echo_pairs

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


def judge_no_plaintext(plan: Plan, check: CaptureCheck, s: CaptureSubject) -> Judgement:
    """No ICMP of the tunnel subnet is readable on the bridge: it only travels encrypted."""
    from vnetlab.checks.runner import Judgement

    tunnel = capture_tunnel(plan.scenario, check)
    assert tunnel is not None
    subnet = str(ipaddress.IPv4Interface(tunnel.members[0].address).network)
    n = count_icmp_in_subnet(s.packets, subnet)
    return Judgement(n == 0, f"0 plaintext ICMP packets of tunnel subnet {subnet}", f"{n} plaintext ICMP packet(s) of {subnet}", {"plaintext_tunnel_icmp": n})
