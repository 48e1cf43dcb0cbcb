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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from vnetlab.backends.keys import load_client_key
from vnetlab.backends.ssh import GuestSSH, SSHError
from vnetlab.errors import VnetlabError
from vnetlab.lazy import LazyModule

paramiko = LazyModule("paramiko")  # imported at the first SSH use, or while the guests boot (vnetlab.lazy)
T = TypeVar("T")

CONNECT_TIMEOUT = 20.0
SFTP_TIMEOUT = 20.0  # s: the longest an SFTP request (open, read, write, stat, rename) may go unanswered
HOSTS_FILE = "hosts.json"  # in the lab folder: how teardown reaches each hypervisor without the scenario


class HostError(VnetlabError):
    """A hypervisor could not be reached, or a command on it failed."""


class HostCommandFailed(HostError):
    """A command on a hypervisor ran and exited non-zero (the connection itself is fine)."""


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
    port: int = 22  # its SSH port (the URI's)


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
    """One SSH connection to one hypervisor; `run` a command, `put`/`open` files.

    Every SFTP request must be answered within SFTP_TIMEOUT: a hypervisor whose SFTP stops
    answering fails the operation with a HostError saying so, and every later SFTP operation on
    this connection fails at once with the same message (the session is left in an unknown state).
    """

    def __init__(self, access: HostAccess) -> None:
        self.access = access
        self._ssh = GuestSSH(access.client_namespace, access.address, load_client_key(Path(access.key)), access.host_key, port=access.port, user=access.user)
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()  # one SFTP session per connection, opened once
        self._sftp_stalled: str | None = None

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
            raise HostCommandFailed(f"hypervisor {self.access.name}: `{command}` exited {result.exit_code}: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    @property
    def connected(self) -> bool:
        return self._ssh.connected

    def sftp_call(self, doing: str, call: Callable[..., T], *args: Any) -> T:
        """call(*args) on this connection's SFTP session, bounded: a request unanswered within
        SFTP_TIMEOUT, or a session that broke, raises HostError naming the hypervisor and `doing`.
        Other OSErrors (no such file) pass through as they are."""
        if self._sftp_stalled is not None:
            raise HostError(self._sftp_stalled)
        try:
            return call(*args)
        except (TimeoutError, EOFError, paramiko.SSHException, SSHError) as exc:
            why = f"no answer within {SFTP_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            self._sftp_stalled = f"hypervisor {self.access.name}: SFTP stopped answering while {doing} ({why}): is its sftp-server hung? (`vnetlab down` still removes the lab over SSH)"
            self._drop_sftp()
            raise HostError(self._sftp_stalled) from None

    def sftp(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self.sftp_call("opening an SFTP session", self._ssh.open_sftp, SFTP_TIMEOUT)
            return self._sftp

    def put(self, local: Path, remote: PurePosixPath, mode: int = 0o600) -> None:
        """Copy a file to the host, private from its first byte (written under a temporary name, then renamed)."""
        sftp = self.sftp()
        partial = f"{remote}.part"
        doing = f"copying {local} to {remote}"
        with local.open("rb") as src:
            dst = self.sftp_call(doing, sftp.open, partial, "wb")
            try:
                self.sftp_call(doing, dst.chmod, mode)
                dst.set_pipelined(True)
                while chunk := src.read(1 << 20):
                    self.sftp_call(doing, dst.write, chunk)
            finally:
                self.sftp_call(doing, dst.close)
        self.sftp_call(doing, sftp.posix_rename, partial, str(remote))

    def open(self, remote: PurePosixPath | str) -> BoundedFile:
        """A file of the host opened for reading, every request bounded (see sftp_call)."""
        path = str(remote)
        sftp = self.sftp()
        return BoundedFile(self, path, self.sftp_call(f"opening {path}", sftp.open, path, "rb"))

    def _drop_sftp(self) -> None:
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            try:
                sftp.close()  # sends the channel's close; never waits for an answer
            except (OSError, EOFError, paramiko.SSHException):
                pass

    def close(self) -> None:
        self._drop_sftp()
        self._ssh.close()


class BoundedFile:
    """A file read over SFTP whose every request is bounded (HostShell.sftp_call); a binary file
    object for the serial log readers (read, seek, tell, with)."""

    def __init__(self, shell: HostShell, path: str, file: Any) -> None:
        self._shell, self._path, self._file = shell, path, file

    def read(self, size: int = -1) -> bytes:
        return self._shell.sftp_call(f"reading {self._path}", self._file.read, size)

    def seek(self, offset: int, whence: int = 0) -> None:
        self._shell.sftp_call(f"reading {self._path}", self._file.seek, offset, whence)  # a seek from the end asks for the size

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._shell.sftp_call(f"closing {self._path}", self._file.close)

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    """`ip -j -d addr show` → name → {state (administrative up/down), master, addresses, kind, vni, mtu}.

    The text comes from another machine: what is not as iproute2 writes it (not JSON, not a list
    of objects, an entry without a name, fields of the wrong type) is left out, never an error."""
    try:
        links = json.loads(text or "[]")
    except ValueError:
        return {}
    out: dict[str, dict] = {}
    for link in links if isinstance(links, list) else []:
        name = link.get("ifname") if isinstance(link, dict) else None
        if not isinstance(name, str):
            continue
        info = _mapping(link.get("linkinfo"))
        out[name] = {
            "name": name,
            "state": "up" if "UP" in _list(link.get("flags")) else "down",
            "master": _text_or_none(link.get("master")),
            "addresses": [
                f"{a['local']}/{a['prefixlen']}" for a in map(_mapping, _list(link.get("addr_info")))
                if a.get("family") == "inet" and isinstance(a.get("local"), str) and isinstance(a.get("prefixlen"), int)
            ],
            "kind": _text_or_none(info.get("info_kind")),
            "vni": _mapping(info.get("info_data")).get("id"),
            "mtu": link.get("mtu"),
        }
    return out


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def folder_command(folder: PurePosixPath, *, exclusive: bool) -> str:
    """A folder of the lab on the host, traversable by libvirt's qemu user (files are 0600; libvirt
    hands them over). `exclusive`: it must not exist yet (the lab's own folder: one that exists
    is another lab instance's)."""
    return f"mkdir {'' if exclusive else '-p '}-m 0711 {q(str(folder))}"


def files_commands(folder: PurePosixPath) -> list[str]:
    """The lab's folder on the host, below a root every lab's folder is in (traversable too)."""
    return [f"mkdir -p {q(str(folder.parent))} && chmod 0711 {q(str(folder.parent))}", folder_command(folder, exclusive=True)]


def known_host_key(known_hosts: Path, address: str, port: int = 22) -> str | None:
    """The host key a known_hosts file pins for address (and port): "type base64", or None.

    paramiko's HostKeys matches names as OpenSSH does: hashed entries (|1|salt|hash), entries for
    [address]:port, several names per line. A line it cannot read is skipped (as OpenSSH does;
    paramiko's own loader would give up on the whole file), and so are @cert-authority and
    @revoked lines. Of several keys, the strongest type is taken."""
    try:
        lines = known_hosts.read_text(errors="replace").splitlines()
    except OSError:
        return None
    keys = paramiko.HostKeys()
    for line in lines:
        if not line.strip() or line.lstrip().startswith(("#", "@")):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except Exception:  # noqa: BLE001 — a bad line of a file vnetlab does not own: skipped
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    found = keys.lookup(address if port == 22 else f"[{address}]:{port}")
    if not found:
        return None
    for kind in ("ssh-ed25519", "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", *found.keys()):
        if kind in found:
            return f"{found[kind].get_name()} {found[kind].get_base64()}"
    return None
