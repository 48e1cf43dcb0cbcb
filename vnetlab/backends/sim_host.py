"""A simulated hypervisor: a network namespace on a lab underlay, running its own OpenSSH sshd.

vnetlab reaches it exactly as it reaches a real second machine — libvirt's ssh transport
(`qemu+ssh://`) and host commands over SSH — only its libvirtd is this machine's. The sshd
listens on the namespace's underlay address only, with its own host key, the lab's client key as
its only authorized key, no passwords and no PAM. It runs as every lab daemon does
(vnetlab.backends.daemon): recorded as a `sim-sshd` resource "<host>:" before it starts, then
"<host>:<pid>"; `stop_sshd` ends exactly that PID after checking that it is still this lab's sshd
(its command line names the lab's config file), or, when the PID was never recorded (a kill -9 in
between), every such sshd in the host's namespace.

libvirt's ssh client runs through a wrapper (the URI's `command=`) that starts /usr/bin/ssh inside
the lab namespace with the host key pinned, so this machine's root namespace is never addressed.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from vnetlab.backends import daemon
from vnetlab.errors import VnetlabError

SSHD = Path("/usr/sbin/sshd")
SSH = Path("/usr/bin/ssh")
PRIVSEP_DIR = Path("/run/sshd")  # OpenSSH's privilege separation folder (made by its init script elsewhere)
# On a simulated host, the shell runs in its own namespace while taps must appear where this
# machine's libvirtd opens them: the prefix enters libvirtd's network namespace.
LIBVIRT_NETNS = "nsenter --net=/proc/$(pidof -s libvirtd || pidof -s virtqemud)/ns/net "


class SimHostError(VnetlabError):
    """A simulated hypervisor's sshd could not be started or stopped."""


def folder(lab_dir: Path, host: str) -> Path:
    return lab_dir / "hosts" / host


def client_key(lab_dir: Path) -> Path:
    return lab_dir / "hosts" / "id_ed25519"


def wrapper(lab_dir: Path, host: str) -> Path:
    return folder(lab_dir, host) / "ssh"


def known_hosts(lab_dir: Path, host: str) -> Path:
    return folder(lab_dir, host) / "known_hosts"


def config(lab_dir: Path, host: str) -> Path:
    return folder(lab_dir, host) / "sshd_config"


def uri(lab_dir: Path, host: str, address: str) -> str:
    """libvirt's URI for it: ssh as root to its underlay address, with the lab's key, through the wrapper."""
    return f"qemu+ssh://root@{address}/system?keyfile={quote(str(client_key(lab_dir)))}&no_tty=1&command={quote(str(wrapper(lab_dir, host)))}"


def sshd_config(lab_dir: Path, host: str, address: str) -> str:
    here = folder(lab_dir, host)
    return "\n".join([
        f"# sshd of simulated hypervisor {host} (vnetlab): its underlay address only, the lab's key only",
        f"ListenAddress {address}:22",
        f"HostKey {here / 'host_key'}",
        f"AuthorizedKeysFile {here / 'authorized_keys'}",
        f"PidFile {here / 'sshd.pid'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "Subsystem sftp internal-sftp",
        "",
    ])


def write_files(lab_dir: Path, host: str, address: str, namespace: str, host_key_private: bytes, host_key_public: str, client_public: str) -> None:
    """Its config, host key and authorized key; libvirt's ssh wrapper and pinned known_hosts."""
    here = folder(lab_dir, host)
    here.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data, mode in (
        ("host_key", host_key_private, 0o600),
        ("authorized_keys", (client_public + "\n").encode(), 0o600),
        ("sshd_config", sshd_config(lab_dir, host, address).encode(), 0o600),
        ("known_hosts", f"{address} {host_key_public}\n".encode(), 0o600),
        ("ssh", (
            "#!/bin/sh\n"
            f"# libvirt's ssh client for simulated hypervisor {host}: run in the lab namespace, its host key pinned\n"
            f"exec ip netns exec {namespace} {SSH} -o UserKnownHostsFile={known_hosts(lab_dir, host)} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 \"$@\"\n"
        ).encode(), 0o700),
    ):
        path = here / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.chmod(path, mode)


def sshd(lab_dir: Path, host: str, namespace: str) -> daemon.Daemon:
    """sshd in the host's namespace, in the foreground (-D) of its own session: it outlives vnetlab
    until teardown ends it by PID; its log is sshd.log in the host's folder."""
    return daemon.Daemon(host, [str(SSHD), "-D", "-e", "-f", str(config(lab_dir, host))], namespace, f"-f {config(lab_dir, host)}", folder(lab_dir, host) / "sshd.log")


def start_sshd(lab_dir: Path, host: str, namespace: str) -> int:
    """Start its sshd; its PID (`ip netns exec` execs sshd in place)."""
    if not SSHD.exists():
        raise SimHostError(f"simulated hypervisor {host}: {SSHD} is missing: install openssh-server (`vnetlab setup`)")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    try:
        return daemon.spawn(sshd(lab_dir, host, namespace))
    except daemon.DaemonError as exc:
        raise SimHostError(f"simulated hypervisor {host}: {exc}") from None


def is_lab_sshd(pid: int, lab_dir: Path, host: str) -> bool:
    """Whether pid still runs sshd with this lab's config for `host` (not a PID reused since)."""
    return daemon.is_running(pid, "sshd", f"-f {config(lab_dir, host)}")


def stop_sshd(lab_dir: Path, name: str, namespace: str | None = None) -> None:
    """Stop the recorded "<host>:<pid>" (SIGTERM, then SIGKILL); gone already is fine. A record
    without its PID ("<host>:", made before the start) stops every sshd of this lab's config for
    `host` found in the host's `namespace`."""
    host = name.rpartition(":")[0]
    try:
        daemon.stop(name, "sshd", f"-f {config(lab_dir, host)}", namespace)
    except daemon.DaemonError as exc:
        raise SimHostError(f"sshd of simulated hypervisor {host or '?'}: {exc}") from None
