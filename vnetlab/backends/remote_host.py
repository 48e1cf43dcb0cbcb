"""Another hypervisor, reached over SSH: its network commands run in its shell, its files go over SFTP.

Here there is no netlink to call: a remote host's namespaces, bridges, taps and VXLAN devices are
made with iproute2 commands in a root shell on it, the same lines `vnetlab explain` prints. The
SSH client pins the host's key and authenticates with the lab's key; its socket is made in a
network namespace of this machine when the host is reached through one (a simulated hypervisor
on a lab underlay), so nothing is addressed in this machine's root namespace.

`libvirt_netns` is the shell prefix that reaches the network namespace the host's libvirtd opens
taps in: empty on a real host (its shell, libvirtd and taps share the root namespace); on a
simulated one, whose shell runs in its own namespace while libvirtd is this machine's, the
prefix enters libvirtd's.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from vnetlab.backends.keys import load_client_key
from vnetlab.backends.ssh import GuestSSH, SSHError
from vnetlab.errors import VnetlabError
from vnetlab.lazy import LazyModule

paramiko = LazyModule("paramiko")  # imported at the first SSH use, or while the guests boot (vnetlab.lazy)

CONNECT_TIMEOUT = 20.0
HOSTS_FILE = "hosts.json"  # in the lab folder: how teardown reaches each hypervisor without the scenario


class HostError(VnetlabError):
    """A hypervisor could not be reached, or a command on it failed."""


@dataclass(frozen=True)
class HostAccess:
    """How to reach one hypervisor: recorded in the lab folder before anything is made there."""

    name: str
    address: str  # its SSH address
    client_namespace: str | None  # where this machine's SSH client runs (None: its own namespace)
    key: str  # the client's private key file
    host_key: str  # its pinned host key, "ssh-ed25519 AAAA…"
    uri: str  # its libvirt URI
    libvirt_netns: str = ""  # shell prefix reaching the namespace its libvirtd opens taps in
    user: str = "root"


def save_hosts(lab_dir: Path, hosts: list[HostAccess]) -> None:
    path = lab_dir / HOSTS_FILE
    path.write_text(json.dumps([asdict(h) for h in hosts], indent=2) + "\n")
    path.chmod(0o600)


def load_hosts(lab_dir: Path) -> dict[str, HostAccess]:
    try:
        raw = json.loads((lab_dir / HOSTS_FILE).read_text())
    except FileNotFoundError:
        return {}
    return {h["name"]: HostAccess(**h) for h in raw}


class HostShell:
    """One SSH connection to one hypervisor; `run` a command, `put`/`open` files."""

    def __init__(self, access: HostAccess) -> None:
        self.access = access
        self._ssh = GuestSSH(access.client_namespace, access.address, load_client_key(Path(access.key)), access.host_key, user=access.user)
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> HostShell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> HostShell:
        try:
            self._ssh.connect(time.monotonic() + timeout)
        except SSHError as exc:
            raise HostError(f"hypervisor {self.access.name}: {exc}") from None
        return self

    def run(self, command: str, *, timeout: float = 60.0) -> str:
        try:
            result = self._ssh.run(command, timeout=timeout, check=False)
        except SSHError as exc:
            raise HostError(f"hypervisor {self.access.name}: {exc}") from None
        if result.exit_code != 0:
            raise HostError(f"hypervisor {self.access.name}: `{command}` exited {result.exit_code}: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    @property
    def connected(self) -> bool:
        return self._ssh.connected

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._ssh.open_sftp()
        return self._sftp

    def put(self, local: Path, remote: PurePosixPath, mode: int = 0o600) -> None:
        """Copy a file to the host, private from its first byte (written under a temporary name, then renamed)."""
        sftp = self.sftp()
        partial = f"{remote}.part"
        with local.open("rb") as src, sftp.open(partial, "wb") as dst:
            dst.chmod(mode)
            dst.set_pipelined(True)
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        sftp.posix_rename(partial, str(remote))

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._ssh.close()


def shell(access: HostAccess) -> HostShell:
    return HostShell(access).connect()


class Shells:
    """Connections kept open across calls (a teardown's removals: each would otherwise cost a
    handshake), one per hypervisor; a connection that broke is made anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str | None], HostShell] = {}

    def get(self, access: HostAccess, timeout: float) -> HostShell:
        key = (access.name, access.address, access.client_namespace)
        with self._lock:
            found = self._open.pop(key, None)
        if found is not None and found.connected:
            with self._lock:
                self._open[key] = found
            return found
        if found is not None:
            found.close()
        made = HostShell(access).connect(timeout)
        with self._lock:
            self._open[key] = made
        return made

    def drop(self, access: HostAccess) -> None:
        with self._lock:
            found = self._open.pop((access.name, access.address, access.client_namespace), None)
        if found is not None:
            found.close()


# -- the commands (also what `vnetlab explain` prints) ------------------------------------------


def q(word: str) -> str:
    return shlex.quote(word)


def namespace_commands(ns: str) -> list[str]:
    """The host's lab namespace: lo up, IPv6 off (as in this machine's lab namespace: no ICMPv6 noise)."""
    return [
        f"ip netns add {q(ns)}",
        f"ip -n {q(ns)} link set lo up",
        f"ip netns exec {q(ns)} sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
    ]


def bridge_commands(ns: str, name: str, mac: str) -> list[str]:
    return [f"ip -n {q(ns)} link add {q(name)} address {mac} type bridge", f"ip -n {q(ns)} link set {q(name)} up"]


def tap_command(access: HostAccess, tap: str) -> str:
    """A tap where the host's libvirtd opens it; an existing link of that name is someone else's: refused."""
    return f"{access.libvirt_netns}sh -c {q(f'! ip link show dev {tap} >/dev/null 2>&1 && ip tuntap add dev {tap} mode tap')}"


def tap_into_lab_commands(access: HostAccess, tap: str, ns: str, bridge: str) -> list[str]:
    return [f"{access.libvirt_netns}ip link set dev {q(tap)} netns {q(ns)}", f"ip -n {q(ns)} link set dev {q(tap)} master {q(bridge)} up"]


def tap_removal_command(access: HostAccess, taps: list[str]) -> str:
    """Taps still where libvirtd opened them (a crash before the move); those moved go with the namespace."""
    return f"{access.libvirt_netns}sh -c {q('; '.join(f'ip link del dev {t} 2>/dev/null' for t in taps) + '; true')}"


def vxlan_commands(ns: str, device: str, vni: int, local: str, underlay_device: str, port: int, mtu: int, bridge: str, peers: list[str], macs: list[tuple[str, str]]) -> list[str]:
    """A VXLAN device made against the host's underlay (its UDP socket stays there), then moved into
    the lab namespace as a port of the bridge. No learning: every peer gets a flood entry (broadcast,
    ARP, unknown unicast), every known guest MAC a static entry towards its host."""
    out = [
        f"ip link add {q(device)} type vxlan id {vni} local {local} dev {q(underlay_device)} dstport {port} nolearning",
        f"ip link set dev {q(device)} mtu {mtu} netns {q(ns)}",
        f"ip -n {q(ns)} link set dev {q(device)} master {q(bridge)} up",
    ]
    out += [f"bridge -n {q(ns)} fdb append 00:00:00:00:00:00 dev {q(device)} dst {peer}" for peer in peers]
    out += [f"bridge -n {q(ns)} fdb add {mac} dev {q(device)} dst {dst} self permanent" for mac, dst in macs]
    return out


def links_command(ns: str) -> str:
    return f"ip -j -d -n {q(ns)} addr show"


def parse_links(text: str) -> dict[str, dict]:
    """`ip -j -d addr show` → name → {state (administrative up/down), master, addresses, kind, vni, mtu}."""
    out: dict[str, dict] = {}
    for link in json.loads(text or "[]"):
        info = link.get("linkinfo", {})
        out[link["ifname"]] = {
            "name": link["ifname"],
            "state": "up" if "UP" in link.get("flags", []) else "down",
            "master": link.get("master"),
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"],
            "kind": info.get("info_kind"),
            "vni": info.get("info_data", {}).get("id"),
            "mtu": link.get("mtu"),
        }
    return out


def files_commands(folder: PurePosixPath) -> list[str]:
    """The lab's folder on the host: traversable by libvirt's qemu user (files are 0600; libvirt hands them over)."""
    return [f"mkdir -p {q(str(folder))}", f"chmod 0711 {q(str(folder.parent))} {q(str(folder))}"]
