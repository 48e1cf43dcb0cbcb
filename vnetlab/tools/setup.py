"""`vnetlab setup`: make this host ready for labs — the distribution's packages and the libvirt daemons.

Idempotent: a package already installed and a daemon already answering are left alone, and the
result says what was changed. On a host with systemd the daemons are its units; without systemd
(containers, CI sandboxes) they are started directly, libvirtd under a reaping supervisor
(vnetlab.tools.reaper) so that qemu's exits are reaped at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vnetlab.backends import libvirt_domains as hv
from vnetlab.errors import VnetlabError

# What labs need at run time, by distribution (ID in /etc/os-release). The guest image is built
# from the kernel, busybox, dropbear, wg and iperf3 packages; the rest are the hypervisor, the tools
# vnetlab runs (nft, tcpdump for `vnetlab shell`, OVS for `type: ovs`, Graphviz for `graph`), and
# what the test suite checks XML with.
PACKAGES = {
    "debian": (
        "qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients",
        "linux-image-amd64", "busybox-static", "dropbear-bin", "wireguard-tools", "iperf3", "kmod", "cpio",
        "iproute2", "iputils-ping", "tcpdump", "nftables", "openvswitch-switch", "graphviz", "libxml2-utils",
    ),
}
# To build libvirt-python when vnetlab is installed with pip.
BUILD_PACKAGES = {"debian": ("libvirt-dev", "pkg-config", "gcc", "python3-dev", "python3-venv")}
LIBVIRTD_LOG = Path("/var/log/vnetlab-libvirtd.log")
READY_TIMEOUT = 20.0


class SetupError(VnetlabError):
    pass


@dataclass
class SetupReport:
    installed: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"installed: {' '.join(self.installed)}"] if self.installed else []
        out += [f"started: {s}" for s in self.started]
        if not (self.installed or self.started):
            out.append("nothing to change: " + "; ".join(self.already))
        return out


def distribution(os_release: Path = Path("/etc/os-release")) -> str:
    """The distribution's ID, or the first ID_LIKE vnetlab knows (Debian derivatives)."""
    fields: dict[str, str] = {}
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    except OSError:
        return "unknown"
    for candidate in [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]:
        if candidate in PACKAGES:
            return candidate
    return fields.get("ID", "unknown")


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Debian packages of `packages` that dpkg does not list as installed."""
    out = []
    for pkg in packages:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
        if "install ok installed" not in done.stdout:
            out.append(pkg)
    return out


def install_packages(missing: list[str], say: Callable[[str], None]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {' '.join(missing)}")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SetupError(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{done.stdout[-1500:]}{done.stderr[-1500:]}")


def _pid_alive(pidfile: Path, program: str) -> bool:
    """Whether the pid file names a live `program` (a stale file's PID may belong to anything by now)."""
    try:
        pid = int(pidfile.read_text().strip())
        return Path(f"/proc/{pid}/comm").read_text().strip() == program and Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def _systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def libvirt_answers() -> bool:
    if not hv.LIBVIRT_SOCKET.exists() or not hv.VIRTLOGD_SOCKET.exists():
        return False
    try:
        hv.connect(timeout=5.0).close()
    except hv.HypervisorError:
        return False
    return True


def start_daemons(report: SetupReport, say: Callable[[str], None]) -> None:
    """virtlogd and libvirtd, each only if it is not running already; then wait until libvirtd answers."""
    if _systemd():
        for unit in ("virtlogd", "libvirtd"):
            active = subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0
            if active:
                report.already.append(f"{unit} running")
                continue
            subprocess.run(["systemctl", "enable", "--now", unit], check=True, capture_output=True)
            report.started.append(f"{unit} (systemd)")
    else:
        if _pid_alive(Path("/run/virtlogd.pid"), "virtlogd"):
            report.already.append("virtlogd running")
        else:
            say("starting virtlogd")
            subprocess.run(["/usr/sbin/virtlogd", "-d"], check=True)
            report.started.append("virtlogd")
        if _pid_alive(Path("/run/libvirtd.pid"), "libvirtd"):
            report.already.append("libvirtd running")
        else:
            say("starting libvirtd")
            subprocess.run([sys.executable, "-m", "vnetlab.tools.reaper", str(LIBVIRTD_LOG), "/usr/sbin/libvirtd"], check=True)
            report.started.append(f"libvirtd (under vnetlab's reaping supervisor; log {LIBVIRTD_LOG})")
    deadline = time.monotonic() + READY_TIMEOUT
    while not libvirt_answers():  # a socket file can outlive its daemon: wait until libvirtd really answers
        if time.monotonic() > deadline:
            raise SetupError(f"libvirtd/virtlogd did not answer within {READY_TIMEOUT:g} s (see {LIBVIRTD_LOG})")
        time.sleep(0.2)


def setup(say: Callable[[str], None], *, packages: bool = True, daemons: bool = True) -> SetupReport:
    if os.geteuid() != 0:
        raise SetupError("vnetlab setup installs packages and starts daemons: run it as root (sudo vnetlab setup)")
    report = SetupReport()
    if packages:
        distro = distribution()
        if distro not in PACKAGES or shutil.which("dpkg-query") is None:
            wanted = " ".join(PACKAGES["debian"])
            raise SetupError(f"vnetlab setup knows Debian and its derivatives; this is {distro!r}. Install the equivalents of: {wanted}; then run `vnetlab setup --no-packages`")
        missing = missing_packages(PACKAGES[distro])
        if missing:
            install_packages(missing, say)
            report.installed = missing
        else:
            report.already.append(f"all {len(PACKAGES[distro])} packages installed")
    if daemons:
        start_daemons(report, say)
    return report
