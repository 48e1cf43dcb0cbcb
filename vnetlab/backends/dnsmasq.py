"""dnsmasq as a lab bridge's DHCP server and router advertiser, as libvirt runs it for its networks.

One dnsmasq per bridge, in the lab namespace, bound to that bridge only, with its DNS server off
(`port=0`): it leases from the bridge's range, gives each `address: dhcp` NIC the address its
reservation names (`dhcp-host=MAC,IP`), and sends router advertisements for the bridge's `ra:`
prefix. Its config file, lease file and log are in the lab's folder (<lab>/dhcp/), so they go with
the lab. It runs as every lab daemon does (vnetlab.backends.daemon): recorded before it starts,
known again by its config file on its command line.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vnetlab.backends.daemon import Daemon

DNSMASQ = "dnsmasq"
PACKAGE = "dnsmasq-base"  # the program without the system service (libvirt's choice too)
_LEASE_LINE = re.compile(r"(\d{1,12}) ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) (\d{1,3}(?:\.\d{1,3}){3}) ([A-Za-z0-9*._-]{1,64}) ([0-9A-Za-z*:]{1,255})")  # what dnsmasq writes: a legal host name or *, a hex client-id or *
MAX_LEASE_FILE = 1 << 20  # bytes read of a lease file (a lab has a handful of leases)


def folder(lab_dir: Path) -> Path:
    return lab_dir / "dhcp"


@dataclass(frozen=True)
class Reservation:
    mac: str
    address: str  # IPv4, no prefix
    name: str  # the client's hostname in the lease (its VM's name)


@dataclass(frozen=True)
class ServerConfig:
    """What one bridge's dnsmasq serves."""

    bridge: str
    range_start: str | None = None  # DHCP: first and last address leased (None: router advertisements only)
    range_end: str | None = None
    netmask: str | None = None
    lease: str = "1h"
    router: str | None = None  # option 3 (None: not sent)
    dns: tuple[str, ...] = ()  # option 6 (empty: not sent)
    reservations: tuple[Reservation, ...] = ()
    ra_prefix: str | None = None  # router advertisements for this /64 (None: none)


def config_path(lab_dir: Path, bridge: str) -> Path:
    return folder(lab_dir) / f"{bridge}.conf"


def lease_path(lab_dir: Path, bridge: str) -> Path:
    return folder(lab_dir) / f"{bridge}.leases"


def log_path(lab_dir: Path, bridge: str) -> Path:
    return folder(lab_dir) / f"{bridge}.log"


def config_text(server: ServerConfig, lab_dir: Path) -> str:
    """The config file (also shown by `vnetlab plan` and `--explain`)."""
    lines = [
        f"# dnsmasq of bridge {server.bridge} (vnetlab): DHCP and router advertisements on this bridge only, no DNS",
        "port=0",
        f"interface={server.bridge}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "log-facility=-",  # stderr: vnetlab appends it to the log file (dnsmasq drops root before it would open one)
        "pid-file=",
    ]
    if server.range_start:
        lines += [
            f"dhcp-range={server.range_start},{server.range_end},{server.netmask},{server.lease}",
            *(f"dhcp-host={r.mac},{r.address},{r.name}" for r in server.reservations),
            f"dhcp-option=option:router{',' + server.router if server.router else ''}",  # empty: not sent (dnsmasq would offer itself)
            f"dhcp-option=option:dns-server{',' + ','.join(server.dns) if server.dns else ''}",
            f"dhcp-leasefile={lease_path(lab_dir, server.bridge)}",
            "dhcp-authoritative",
            "log-dhcp",
        ]
    if server.ra_prefix:
        prefix = ipaddress.IPv6Network(server.ra_prefix)
        lines += [
            "enable-ra",
            f"dhcp-range={prefix.network_address},ra-only,{prefix.prefixlen}",
            f"ra-param={server.bridge},10,0",  # every 10 s, router lifetime 0: the lab namespace is no default router
        ]
    return "\n".join(lines) + "\n"


def argv(lab_dir: Path, bridge: str) -> list[str]:
    """Its command line (also shown by `--explain`): in the foreground (vnetlab records its PID)."""
    return [DNSMASQ, "--keep-in-foreground", f"--conf-file={config_path(lab_dir, bridge)}"]


def daemon(lab_dir: Path, bridge: str, namespace: str) -> Daemon:
    return Daemon(bridge, argv(lab_dir, bridge), namespace, f"--conf-file={config_path(lab_dir, bridge)}", log_path(lab_dir, bridge))


def installed() -> bool:
    return shutil.which(DNSMASQ) is not None


@dataclass(frozen=True)
class Lease:
    expires: int  # unix time (0: never)
    mac: str
    address: str
    hostname: str  # "*" when the client sent none
    client_id: str

    def to_json(self) -> dict[str, object]:
        return {"mac": self.mac, "address": self.address, "hostname": self.hostname, "expires": self.expires}


def parse_leases(text: str) -> list[Lease]:
    """dnsmasq's lease file: one lease a line, `EXPIRY MAC IP HOSTNAME CLIENT-ID` (the guest chose
    some of it, so each line is matched whole, and odd ones are skipped)."""
    out = []
    for line in text[:MAX_LEASE_FILE].splitlines():
        m = _LEASE_LINE.fullmatch(line.strip())
        if m is not None:
            out.append(Lease(int(m[1]), m[2], m[3], m[4], m[5]))
    return out


def read_leases(lab_dir: Path, bridge: str) -> list[Lease]:
    try:
        with lease_path(lab_dir, bridge).open("rb") as f:
            return parse_leases(f.read(MAX_LEASE_FILE).decode(errors="replace"))
    except OSError:
        return []
