"""`vnetlab setup`: make this host ready for labs — the distribution's packages and the libvirt daemons.

Idempotent: a package already installed and a daemon already answering are left alone, and the
result says what was changed. On a host with systemd the daemons are its units; without systemd
(containers, CI sandboxes) they are started directly, libvirtd under a reaping supervisor
(vnetlab.tools.reaper) so that qemu's exits are reaped at once.

The package names come from a table keyed by distribution release (ID and VERSION_ID, or a
codename, from /etc/os-release): Debian 12 and 13, Ubuntu 22.04 and 24.04, and derivatives that
name one of them. `vnetlab setup --packages-only` (daemons=False) installs the packages and starts
nothing, for chroots, containers and image-building CI steps: it also keeps the packages' own
install scripts from starting their services (a policy-rc.d that says no, for the install only).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import stat
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from vnetlab import procfs
from vnetlab.backends import libvirt_domains as hv
from vnetlab.errors import VnetlabError
from vnetlab.paths import CLASSROOM_WEB_DIR, Layout


class Release(NamedTuple):
    """A distribution release vnetlab has a package table for: os-release ID and VERSION_ID."""

    id: str
    version: str

    def __str__(self) -> str:
        return f"{_DISPLAY.get(self.id, self.id)} {self.version}"


_DISPLAY = {"debian": "Debian", "ubuntu": "Ubuntu"}
DEBIAN_12, DEBIAN_13 = Release("debian", "12"), Release("debian", "13")
UBUNTU_2204, UBUNTU_2404 = Release("ubuntu", "22.04"), Release("ubuntu", "24.04")
# Codenames as os-release spells them (VERSION_CODENAME, and UBUNTU_CODENAME / DEBIAN_CODENAME in
# derivatives such as Linux Mint, Pop!_OS and LMDE): how a derivative, or a Debian release before
# it has a VERSION_ID, says which table fits.
CODENAMES = {"bookworm": DEBIAN_12, "trixie": DEBIAN_13, "jammy": UBUNTU_2204, "noble": UBUNTU_2404}

# What labs need at run time. The hypervisor; the guest image build, which fetches every guest
# package with mmdebstrap into vnetlab's cache (nothing of the guest comes from the host's
# packages) and so needs mmdebstrap with the Debian archive keys (on Ubuntu too: the guests are
# Debian), qemu-img, mkfs.ext4 -d and depmod, plus extlinux and sfdisk (fdisk) for the test suite's disk-booted cloud
# image; the tools vnetlab runs on the host (ip, ping, nft, tcpdump for `vnetlab shell`/capture,
# OVS for `type: ovs`, Graphviz for `graph`, ssh for `vnetlab ssh`) and xmllint for the test suite.
# WireGuard keys are made in Python: labs need no wireguard-tools (the test suite does, below).
_HYPERVISOR = ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients")
_IMAGE_BUILD = ("mmdebstrap", "debian-archive-keyring", "e2fsprogs", "kmod", "extlinux", "syslinux-common", "fdisk")
# busybox and iperf3 also run on the host: container and host nodes are namespaces running the
# host's programs (`busybox wget` in a check, the perf lesson's iperf3 server); dnsmasq-base is a
# bridge's DHCP server and router advertiser (`dhcp:`, `ra:`), the program without its system
# service, run by vnetlab in the lab namespace as libvirt runs it for its networks; dropbear-bin is the
# SSH server of the test suite's SSH tests. openssh-server is the sshd of simulated hypervisors
# (multi-host labs on one machine): installed without starting or enabling its service, since
# vnetlab runs one sshd per simulated hypervisor inside that hypervisor's namespace only.
_HOST_TOOLS = (
    "iproute2", "iputils-ping", "tcpdump", "nftables", "openvswitch-switch", "graphviz", "libxml2-utils", "openssh-client",
    "busybox-static", "iperf3", "dnsmasq-base", "dropbear-bin", "openssh-server",
)
# What the test suite runs beside the product, so that `make test` on a new machine skips nothing:
# cpio reads the image's archives independently of vnetlab's own reader, and wg checks the
# WireGuard keys vnetlab makes in Python against the reference tool; openssl makes the
# classroom's TLS test certificate. (xmllint and dropbear-bin,
# which the suite also uses, are above; tests/unit/test_setup_distros.py finds every tool the
# tests look for and checks that a table installs it.)
_TEST_SUITE = ("cpio", "wireguard-tools", "openssl")
# Packages whose service must never start or be enabled by vnetlab's install: an sshd listening
# in the root namespace is what the simulated hypervisors exist to avoid.
_QUIET_PACKAGES = {"openssh-server": "ssh"}
_RUNTIME = (*_HYPERVISOR, *_IMAGE_BUILD, *_HOST_TOOLS, *_TEST_SUITE)
# The test suite's browser for the classroom's pages (headless; Playwright drives it, it never
# downloads one): Debian's chromium. Ubuntu ships Chromium only as a snap, which does not run in
# containers: there the browser test says it is skipped, and why.
_TEST_BROWSER = ("chromium",)
# The same names on all four releases: checked with apt-cache on Debian 12 and in a Debian 13
# chroot (scripts/prove-debian13 installs them); the Ubuntu names are from the Ubuntu archive's
# package lists, not installed here (mmdebstrap and debian-archive-keyring are in universe there).
PACKAGES: dict[Release, tuple[str, ...]] = {DEBIAN_12: (*_RUNTIME, *_TEST_BROWSER), DEBIAN_13: (*_RUNTIME, *_TEST_BROWSER), UBUNTU_2204: _RUNTIME, UBUNTU_2404: _RUNTIME}
# To build libvirt-python when vnetlab is installed with pip (scripts/setup-host has the same
# table, and a unit test keeps the two equal). Debian 13 and Ubuntu 24.04 ship pkg-config as
# pkgconf (`pkg-config` is only a transitional package there).
_BUILD = ("python3-venv", "python3-dev", "gcc", "libvirt-dev")
BUILD_PACKAGES: dict[Release, tuple[str, ...]] = {
    DEBIAN_12: (*_BUILD, "pkg-config"),
    DEBIAN_13: (*_BUILD, "pkgconf"),
    UBUNTU_2204: (*_BUILD, "pkg-config"),
    UBUNTU_2404: (*_BUILD, "pkgconf"),
}
OS_RELEASE = Path("/etc/os-release")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")  # invoke-rc.d and deb-systemd-invoke ask it before starting a service
LIBVIRTD_LOG = Path("/var/log/vnetlab-libvirtd.log")
KVM_DEVICE = Path("/dev/kvm")
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_USER = "libvirt-qemu"  # Debian's and Ubuntu's libvirt run qemu as this user, in group kvm
READY_TIMEOUT = 20.0


class SetupError(VnetlabError):
    pass


@dataclass
class SetupReport:
    installed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"installed: {' '.join(self.installed)}"] if self.installed else []
        out += [f"changed: {c}" for c in self.changed]
        out += [f"started: {s}" for s in self.started]
        if not (self.installed or self.changed or self.started):
            out.append("nothing to change: " + "; ".join(self.already))
        out += [f"skipped: {s}" for s in self.skipped]
        return out


@dataclass(frozen=True)
class HostRelease:
    """What /etc/os-release says about this host, and the table that fits it (None: no table does)."""

    pretty: str
    id: str
    version_id: str
    codenames: tuple[str, ...]  # VERSION_CODENAME, UBUNTU_CODENAME, DEBIAN_CODENAME, as present
    id_like: tuple[str, ...]
    release: Release | None

    @property
    def family(self) -> str | None:
        """debian or ubuntu when the host is (like) one of them, also for a release with no table."""
        if self.release:
            return self.release.id
        for candidate in ("ubuntu", "debian"):
            if candidate == self.id or candidate in self.id_like:
                return candidate
        return None


def read_os_release(os_release: Path) -> dict[str, str]:
    """KEY=value lines of os-release(5), quotes removed; {} when it cannot be read."""
    fields: dict[str, str] = {}
    try:
        text = os_release.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            fields[key] = value
    return fields


def host_release(os_release: Path | None = None) -> HostRelease:
    """This host's distribution and the package table for it: its own ID and VERSION_ID first,
    then a codename it names (a derivative's UBUNTU_CODENAME or DEBIAN_CODENAME, or a Debian
    release before it has a VERSION_ID)."""
    f = read_os_release(os_release or OS_RELEASE)
    ident, version = f.get("ID", "").lower(), f.get("VERSION_ID", "")
    codenames = tuple(c.lower() for c in (f.get("VERSION_CODENAME"), f.get("UBUNTU_CODENAME"), f.get("DEBIAN_CODENAME")) if c)
    release: Release | None = Release(ident, version) if Release(ident, version) in PACKAGES else None
    if release is None:
        release = next((CODENAMES[c] for c in codenames if c in CODENAMES), None)
    pretty = f.get("PRETTY_NAME") or " ".join(x for x in (f.get("NAME", ident), version) if x) or "unknown"
    return HostRelease(pretty, ident or "unknown", version, codenames, tuple(f.get("ID_LIKE", "").lower().split()), release)


def _known() -> str:
    return ", ".join(str(r) for r in PACKAGES)


def unknown_distribution_message(host: HostRelease) -> str:
    """What to install by hand when no table fits: the nearest table's names, and the next step."""
    family = host.family
    nearest = max((r for r in PACKAGES if r.id == family), key=lambda r: [int(p) for p in r.version.split(".")], default=DEBIAN_12)
    names = " ".join(PACKAGES[nearest])
    ident = f"ID={host.id}" + (f" VERSION_ID={host.version_id}" if host.version_id else "") + (f" codename {'/'.join(host.codenames)}" if host.codenames else "")
    how = f"apt-get install --no-install-recommends {names}" if family else f"the equivalents of these {nearest} packages: {names}"
    return (
        f"vnetlab setup has package tables for {_known()} (and derivatives that name one of their codenames); "
        f"this host is {host.pretty!r} ({ident}). Install by hand: {how}; then run `vnetlab setup --no-packages` to start the daemons."
    )


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Debian packages of `packages` that dpkg does not list as installed."""
    out = []
    for pkg in packages:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
        if "install ok installed" not in done.stdout:
            out.append(pkg)
    return out


class _NoServiceStarts:
    """For the install only: a policy-rc.d that answers 101 (action forbidden), so the packages'
    maintainer scripts start no service (libvirtd, virtlogd, ovsdb-server...). Left alone if the
    host has one already (container images often do); removed afterwards otherwise."""

    def __init__(self, path: Path | None = None):
        self.path = path or POLICY_RC_D
        self.placed = False

    def __enter__(self) -> _NoServiceStarts:
        if not self.path.exists() and not self.path.is_symlink():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("#!/bin/sh\n# vnetlab setup --packages-only: start no service while packages are installed\nexit 101\n")
            self.path.chmod(0o755)
            self.placed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.placed:
            self.path.unlink(missing_ok=True)


def install_packages(missing: list[str], say: Callable[[str], None], *, start_services: bool = True, ubuntu: bool = False) -> None:
    """apt-get update and install; with start_services=False the maintainer scripts start nothing."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {' '.join(missing)}")
    quiet = [p for p in missing if p in _QUIET_PACKAGES]
    loud = [p for p in missing if p not in _QUIET_PACKAGES]
    with contextlib.nullcontext() if start_services else _NoServiceStarts():
        _apt(env, ubuntu, ["apt-get", "update", "-q"], *([["apt-get", "install", "-y", "-q", "--no-install-recommends", *loud]] if loud else []))
    if quiet:
        with _NoServiceStarts():
            _apt(env, ubuntu, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *quiet])
        for package in quiet:  # its service stays off at the next boot too
            unit = _QUIET_PACKAGES[package]
            argv = ["systemctl", "disable", "--quiet", f"{unit}.service"] if _systemd() else ["update-rc.d", unit, "disable"]
            subprocess.run(argv, capture_output=True, check=False)
            say(f"{package}: its {unit} service is left stopped and disabled (vnetlab starts sshd only inside simulated hypervisors' namespaces)")


def _apt(env: dict[str, str], ubuntu: bool, *commands: list[str]) -> None:
    for argv in commands:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            output = done.stdout[-1500:] + done.stderr[-1500:]
            hint = "\n(on Ubuntu, mmdebstrap and debian-archive-keyring are in the universe component: `add-apt-repository universe`)" if ubuntu and "Unable to locate package" in output else ""
            raise SetupError(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{output}{hint}")


def ensure_packages(report: SetupReport, say: Callable[[str], None], *, os_release: Path | None = None, start_services: bool = True) -> Release:
    """Install what this release's table names and dpkg lacks; a clear SetupError when no table fits."""
    host = host_release(os_release)
    if host.release is None:
        raise SetupError(unknown_distribution_message(host))
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        raise SetupError(f"this host says it is {host.pretty!r} but has no dpkg-query/apt-get. " + unknown_distribution_message(host))
    wanted = PACKAGES[host.release]
    missing = missing_packages(wanted)
    if missing:
        install_packages(missing, say, start_services=start_services, ubuntu=host.release.id == "ubuntu")
        report.installed = missing
    else:
        report.already.append(f"all {len(wanted)} packages installed")
    return host.release


def _pid_alive(pidfile: Path, program: str) -> bool:
    """Whether the pid file names a live `program` (a stale file's PID may belong to anything by now)."""
    try:
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != program:
            return False
    except (OSError, ValueError):
        return False
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields)


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


def qemu_account(conf: Path = QEMU_CONF) -> tuple[str, str | None]:
    """The user (and group, None: the user's own) libvirt runs qemu as: qemu.conf's, else the distribution's."""
    try:
        text = conf.read_text()
    except OSError:
        text = ""
    found = dict(re.findall(r'^\s*(user|group)\s*=\s*"([^"]+)"', text, re.MULTILINE))
    return found.get("user", QEMU_USER), found.get("group")


def kvm_reachable_by(device: Path, user: str, group: str | None = None) -> bool | None:
    """Whether `user` may open `device` read-write, from its owner, group and mode (None: no such
    device or user). libvirt asks the same; when its answer differs from what its capabilities
    probe saw, it probes qemu again on every call (seen: 17 s to start two domains)."""
    try:
        st = device.stat()
        account = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else account.pw_gid
    except (OSError, KeyError):
        return None
    if account.pw_uid in (0, st.st_uid):
        return account.pw_uid == 0 or st.st_mode & 0o600 == 0o600
    if st.st_gid == gid or st.st_gid in os.getgrouplist(user, gid):
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


def qemu_reaches_kvm(device: Path = KVM_DEVICE, conf: Path = QEMU_CONF) -> tuple[str, bool | None]:
    """qemu's user (libvirt's configuration) and whether it may open `device` (None: no device or user)."""
    user, group = qemu_account(conf)
    return user, kvm_reachable_by(device, user, group)


def grant_kvm_to_qemu(report: SetupReport, device: Path = KVM_DEVICE, conf: Path = QEMU_CONF) -> None:
    """Give /dev/kvm to group kvm, read-write, as udev's rule does, when qemu's user cannot open it.

    Hosts without udev (containers, some CI sandboxes) keep the kernel's root-only node; libvirt then
    finds KVM unusable although its probe (run with more rights) used it, and re-probes each call.
    """
    user, reachable = qemu_reaches_kvm(device, conf)
    if reachable is not False:
        return
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        report.skipped.append(f"{device} is not open to qemu's user {user} and there is no group kvm to give it to")
        return
    mode = stat.S_IMODE(device.stat().st_mode) | 0o060
    os.chown(device, -1, kvm_gid)
    os.chmod(device, mode)
    report.changed.append(f"{device} to group kvm, mode {mode:04o}, so that qemu's user {user} opens it (as udev's rule does)")


def start_daemons(report: SetupReport, say: Callable[[str], None]) -> None:
    """virtlogd and libvirtd, each only if it is not running already; then wait until libvirtd answers."""
    grant_kvm_to_qemu(report)
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


# The classroom pages' browser libraries (xterm.js), from the npm registry: the manifest and its
# lock (exact versions and their SHA-512) ship with vnetlab; `npm ci` installs exactly them into
# Layout.web, outside the repository. npm comes from the distribution when the host has none.
WEB_MANIFEST = ("package.json", "package-lock.json")


def web_libraries_current(web: Path, manifest_dir: Path = CLASSROOM_WEB_DIR) -> bool:
    """Whether `web` holds exactly what the shipped lock names (manifest and lock equal, every package there)."""
    try:
        if any((web / name).read_bytes() != (manifest_dir / name).read_bytes() for name in WEB_MANIFEST):
            return False
        lock = json.loads((manifest_dir / "package-lock.json").read_text())
    except (OSError, ValueError):
        return False
    for where, entry in lock.get("packages", {}).items():
        if not where:
            continue
        try:
            if json.loads((web / where / "package.json").read_text()).get("version") != entry.get("version"):
                return False
        except (OSError, ValueError):
            return False
    return True


def ensure_web_libraries(report: SetupReport, say: Callable[[str], None], web: Path, *, os_release: Path | None = None, start_services: bool = True) -> None:
    if web_libraries_current(web):
        report.already.append(f"the classroom's browser libraries in {web}")
        return
    if shutil.which("npm") is None:
        host = host_release(os_release)
        install_packages(["npm"], say, start_services=start_services, ubuntu=host.release is not None and host.release.id == "ubuntu")
        report.installed.append("npm")
    web.mkdir(parents=True, exist_ok=True)
    for name in WEB_MANIFEST:
        shutil.copyfile(CLASSROOM_WEB_DIR / name, web / name)
    say(f"installing the classroom's browser libraries (xterm.js) from npm into {web}")
    done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev"], cwd=web, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SetupError(f"`npm ci` in {web} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-1500:]}")
    lock = json.loads((CLASSROOM_WEB_DIR / "package-lock.json").read_text())
    report.installed += [f"{where.removeprefix('node_modules/')}@{entry['version']} (npm)" for where, entry in lock["packages"].items() if where]


def setup(say: Callable[[str], None], *, packages: bool = True, daemons: bool = True, os_release: Path | None = None, web: Path | None = None) -> SetupReport:
    """packages=False: only the daemons (`--no-packages`); daemons=False: only the packages, and no
    service started by their maintainer scripts either (`--packages-only`). `web`: where the
    classroom's browser libraries go (default Layout().web)."""
    if os.geteuid() != 0:
        raise SetupError("vnetlab setup installs packages and starts daemons: run it as root (sudo vnetlab setup)")
    report = SetupReport()
    if packages:
        ensure_packages(report, say, os_release=os_release, start_services=daemons)
        ensure_web_libraries(report, say, web or Layout().web, os_release=os_release, start_services=daemons)
    if daemons:
        start_daemons(report, say)
    else:
        report.skipped.append("libvirtd and virtlogd not started (--packages-only)")
    return report
