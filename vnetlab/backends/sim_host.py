"""A simulated hypervisor: a network namespace on a lab underlay, running its own OpenSSH sshd.

vnetlab reaches it exactly as it reaches a real second machine — libvirt's ssh transport
(`qemu+ssh://`) and host commands over SSH — only its libvirtd is this machine's. The sshd
listens on the namespace's underlay address only, with its own host key, the lab's client key as
its only authorized key, no passwords and no PAM. It is recorded as a `sim-sshd` resource
"<host>:" before it starts, then "<host>:<pid>"; `stop_sshd` ends exactly that PID after checking
that it is still this lab's sshd (its command line names the lab's config file), or, when the PID
was never recorded (a kill -9 in between), every such sshd in the host's namespace.

libvirt's ssh client runs through a wrapper (the URI's `command=`) that starts /usr/bin/ssh inside
the lab namespace with the host key pinned, so this machine's root namespace is never addressed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from vnetlab import procfs
from vnetlab.backends import netns
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


def start_sshd(lab_dir: Path, host: str, namespace: str) -> int:
    """sshd in the host's namespace, in the foreground of its own session (it outlives vnetlab until
    teardown ends it by PID). `ip netns exec` execs sshd in place: the PID is sshd's."""
    if not SSHD.exists():
        raise SimHostError(f"simulated hypervisor {host}: {SSHD} is missing: install openssh-server (`vnetlab setup`)")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = (folder(lab_dir, host) / "sshd.log").open("ab")
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, str(SSHD), "-D", "-e", "-f", str(config(lab_dir, host))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    finally:
        log.close()
    return proc.pid


def is_lab_sshd(pid: int, lab_dir: Path, host: str) -> bool:
    """Whether pid still runs sshd with this lab's config for `host` (not a PID reused since)."""
    try:
        # sshd rewrites its title ("sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] …"): search the whole line
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields) and comm == "sshd" and f"-f {config(lab_dir, host)}".encode() in cmdline.replace(b"\0", b" ")


def stop_sshd(lab_dir: Path, name: str, namespace: str) -> None:
    """Stop the recorded "<host>:<pid>" (SIGTERM, then SIGKILL); gone already is fine. A record
    without its PID ("<host>:", made before the start) stops every sshd of this lab's config for
    `host` found in the host's `namespace`."""
    host, _, pid_text = name.rpartition(":")
    if not host or not (pid_text.isdigit() or pid_text == ""):
        raise SimHostError(f"unexpected sshd record {name!r}")
    pids = [int(pid_text)] if pid_text else [pid for pid in netns.processes_in(namespace) if is_lab_sshd(pid, lab_dir, host)]
    for pid in pids:
        _stop(pid, lab_dir, host)


def _stop(pid: int, lab_dir: Path, host: str) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if not is_lab_sshd(pid, lab_dir, host):
            _reap(pid)
            return
        os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            _reap(pid)
            if not is_lab_sshd(pid, lab_dir, host):
                return
            time.sleep(0.05)
    raise SimHostError(f"sshd {pid} of simulated hypervisor {host} did not stop")


def _reap(pid: int) -> None:
    """Collect it if it is our child (started by this process), so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
