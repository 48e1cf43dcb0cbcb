"""`vnetlab setup` across distributions: which package table /etc/os-release selects, what the
tables hold, `--packages-only`, and the error for a distribution without a table. Fast, no root:
os-release files are written into tmp_path, and only apt-get is faked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vnetlab import cli
from vnetlab.tools import setup as st
from vnetlab.tools.setup import BUILD_PACKAGES, DEBIAN_12, DEBIAN_13, PACKAGES, UBUNTU_2204, UBUNTU_2404, SetupError, host_release

REPO = Path(__file__).resolve().parents[2]

OS_RELEASES = {
    "debian-12": ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n', DEBIAN_12),
    "debian-13": ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nVERSION="13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n', DEBIAN_13),
    "debian-trixie-before-release": ('PRETTY_NAME="Debian GNU/Linux trixie/sid"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=trixie\nID=debian\n', DEBIAN_13),
    "ubuntu-22.04": ('PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n', UBUNTU_2204),
    "ubuntu-24.04": ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n', UBUNTU_2404),
    "linuxmint-21.3": ('NAME="Linux Mint"\nVERSION="21.3 (Virginia)"\nID=linuxmint\nID_LIKE="ubuntu debian"\nPRETTY_NAME="Linux Mint 21.3"\nVERSION_ID="21.3"\nVERSION_CODENAME=virginia\nUBUNTU_CODENAME=jammy\n', UBUNTU_2204),
    "pop-24.04": ('NAME="Pop!_OS"\nVERSION="24.04 LTS"\nID=pop\nID_LIKE="ubuntu debian"\nPRETTY_NAME="Pop!_OS 24.04 LTS"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n', UBUNTU_2404),
    "lmde-6": ('PRETTY_NAME="LMDE 6 (faye)"\nNAME="LMDE"\nVERSION_ID="6"\nVERSION="6 (faye)"\nVERSION_CODENAME=faye\nID=linuxmint\nID_LIKE=debian\nDEBIAN_CODENAME=bookworm\n', DEBIAN_12),
    "raspbian-12": ('PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nNAME="Raspbian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=raspbian\nID_LIKE=debian\n', DEBIAN_12),
}
UNKNOWN = {
    "fedora-40": ('NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora Linux 40 (Workstation Edition)"\n', None),
    "debian-forky": ('PRETTY_NAME="Debian GNU/Linux forky/sid"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=forky\nID=debian\n', "debian"),
    "ubuntu-20.04": ('PRETTY_NAME="Ubuntu 20.04.6 LTS"\nNAME="Ubuntu"\nVERSION_ID="20.04"\nVERSION_CODENAME=focal\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=focal\n', "ubuntu"),
    "devuan-5": ('PRETTY_NAME="Devuan GNU/Linux 5 (daedalus)"\nNAME="Devuan GNU/Linux"\nVERSION_ID="5"\nVERSION_CODENAME=daedalus\nID=devuan\nID_LIKE=debian\n', "debian"),
}
# The guest image no longer takes anything from the host's packages (cpio and wireguard-tools are
# back, for the test suite: TOOL_PACKAGES).
NO_LONGER_NEEDED = {"linux-image-amd64"}
IMAGE_BUILD = {"mmdebstrap", "debian-archive-keyring", "qemu-utils", "e2fsprogs", "kmod", "extlinux", "syslinux-common", "fdisk"}
HYPERVISOR_AND_TOOLS = {"qemu-system-x86", "libvirt-daemon-system", "libvirt-clients", "iproute2", "iputils-ping", "tcpdump", "nftables", "openvswitch-switch", "graphviz", "libxml2-utils", "busybox-static", "iperf3", "dropbear-bin", "dnsmasq-base"}


def _os_release(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "os-release"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_os_release_selects_the_table(tmp_path: Path, name: str):
    text, expected = OS_RELEASES[name]
    assert host_release(_os_release(tmp_path, text)).release == expected


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_no_table_for_other_releases_but_the_family_is_known(tmp_path: Path, name: str):
    text, family = UNKNOWN[name]
    host = host_release(_os_release(tmp_path, text))
    assert host.release is None
    assert host.family == family


def test_a_missing_os_release_selects_nothing(tmp_path: Path):
    host = host_release(tmp_path / "nope")
    assert (host.release, host.family, host.id) == (None, None, "unknown")


def test_os_release_quoting_and_comments(tmp_path: Path):
    path = _os_release(tmp_path, "# comment\nID='debian'\n\nVERSION_ID=\"13\"\nBROKEN LINE\n")
    assert st.read_os_release(path) == {"ID": "debian", "VERSION_ID": "13"}
    assert host_release(path).release == DEBIAN_13


def test_the_tables_cover_the_four_releases():
    assert set(PACKAGES) == set(BUILD_PACKAGES) == {DEBIAN_12, DEBIAN_13, UBUNTU_2204, UBUNTU_2404}
    assert [str(r) for r in PACKAGES] == ["Debian 12", "Debian 13", "Ubuntu 22.04", "Ubuntu 24.04"]
    assert set(st.CODENAMES.values()) == set(PACKAGES)


@pytest.mark.parametrize("release", list(PACKAGES), ids=str)
def test_each_table_has_the_image_build_tools_and_nothing_the_guest_used_to_take(release):
    names = PACKAGES[release]
    assert len(names) == len(set(names)), "a package listed twice"
    assert IMAGE_BUILD <= set(names)
    assert HYPERVISOR_AND_TOOLS <= set(names)
    assert not NO_LONGER_NEEDED & set(names)
    assert "qemu-system-x86" in names and "qemu-kvm" not in names  # Ubuntu's qemu package has the Debian name too


@pytest.mark.parametrize(("release", "pkg_config"), [(DEBIAN_12, "pkg-config"), (DEBIAN_13, "pkgconf"), (UBUNTU_2204, "pkg-config"), (UBUNTU_2404, "pkgconf")], ids=str)
def test_build_packages_by_release(release, pkg_config):
    assert set(BUILD_PACKAGES[release]) == {"python3-venv", "python3-dev", "gcc", "libvirt-dev", pkg_config}


# Every program a test or benchmark looks for before it runs it, and the package that brings it:
# `make test` on a new machine must skip nothing for want of one of them.
TOOL_PACKAGES = {
    "busybox": "busybox-static", "cpio": "cpio", "dot": "graphviz", "dropbearkey": "dropbear-bin", "mmdebstrap": "mmdebstrap",
    "qemu-img": "qemu-utils", "qemu-system-x86_64": "qemu-system-x86", "virt-xml-validate": "libvirt-clients", "wg": "wireguard-tools",
    "xmllint": "libxml2-utils", "mkfs.ext4": "e2fsprogs", "sfdisk": "fdisk", "extlinux": "extlinux",
    "openssl": "openssl",
}
ON_EVERY_DEBIAN = {"dpkg-query", "apt-get", "losetup", "unshare"}  # dpkg, apt, mount and util-linux: required packages, in every installation
_LOOKS_FOR = re.compile(r'shutil\.which\("([^"]+)"\)|os\.path\.exists\("/usr/s?bin/([^"/]+)"\)')


def test_setup_installs_every_tool_the_tests_look_for():
    from tests.support.cloud_image import HOST_TOOLS  # the test cloud image's tools, looked up by name in a loop

    looked_for = set(HOST_TOOLS)
    for path in [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py")]:
        looked_for |= {a or b for a, b in _LOOKS_FOR.findall(path.read_text())}
    assert {"cpio", "wg", "xmllint", "mmdebstrap"} <= looked_for, "the search finds the tools"
    unknown = looked_for - set(TOOL_PACKAGES) - ON_EVERY_DEBIAN
    assert not unknown, f"tests look for {sorted(unknown)}: add the package that brings each to TOOL_PACKAGES and to vnetlab setup's tables"
    for release, names in PACKAGES.items():
        missing = {tool: package for tool, package in TOOL_PACKAGES.items() if package not in names}
        assert not missing, f"{release}: vnetlab setup does not install {missing}"


def _setup_host_build_packages(os_release: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "setup-host"), "--print-build-packages"], env={**os.environ, "VNETLAB_OS_RELEASE": str(os_release)}, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_setup_host_selects_the_same_build_packages_as_vnetlab_setup(tmp_path: Path, name: str):
    text, release = OS_RELEASES[name]
    done = _setup_host_build_packages(_os_release(tmp_path, text))
    assert done.returncode == 0, done.stderr
    key, *names = done.stdout.split()
    assert key == f"{release.id}-{release.version}"
    assert tuple(names) == BUILD_PACKAGES[release]


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_setup_host_refuses_an_unknown_release_and_says_what_to_install(tmp_path: Path, name: str):
    done = _setup_host_build_packages(_os_release(tmp_path, UNKNOWN[name][0]))
    assert done.returncode == 1 and done.stdout == ""
    assert "no package table for this host" in done.stderr and " ".join(BUILD_PACKAGES[DEBIAN_13]) in done.stderr
    assert "vnetlab setup --no-packages" in done.stderr


# --- vnetlab setup itself: root is faked, apt-get is the only fake ---------------------------


class FakeApt:
    """Records every command setup runs; answers apt-get itself (noting whether policy-rc.d was in
    place), passes everything else (dpkg-query) to the real subprocess.run."""

    def __init__(self, policy: Path, fail_with: str = ""):
        self.policy, self.fail_with = policy, fail_with
        self.commands: list[list[str]] = []
        self.policy_during_apt: list[str | None] = []
        self._run = subprocess.run

    def __call__(self, argv, *args, **kwargs):
        self.commands.append(list(argv))
        if argv[0] != "apt-get":
            return self._run(argv, *args, **kwargs)
        self.policy_during_apt.append(self.policy.read_text() if self.policy.exists() else None)
        if self.fail_with and argv[1] == "install":
            return subprocess.CompletedProcess(argv, 100, "", self.fail_with)
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def as_root(monkeypatch, tmp_path: Path):
    """Root for setup's check, policy-rc.d in tmp_path, and one package no host has installed."""
    monkeypatch.setattr(st.os, "geteuid", lambda: 0)
    monkeypatch.setattr(st, "POLICY_RC_D", tmp_path / "sbin" / "policy-rc.d")
    for release in list(PACKAGES):
        monkeypatch.setitem(PACKAGES, release, (*PACKAGES[release], "vnetlab-test-not-a-package"))
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        pytest.skip("needs dpkg-query and apt-get on PATH (a Debian-family machine); apt-get itself is faked")
    return tmp_path / "sbin" / "policy-rc.d"


def _no_daemons(*_args, **_kwargs):
    raise AssertionError("--packages-only must not start daemons")


def test_packages_only_installs_with_service_starts_forbidden_and_starts_nothing(as_root: Path, tmp_path: Path, monkeypatch):
    apt = FakeApt(as_root)
    monkeypatch.setattr(st.subprocess, "run", apt)
    monkeypatch.setattr(st, "start_daemons", _no_daemons)
    said: list[str] = []
    report = st.setup(said.append, daemons=False, os_release=_os_release(tmp_path, OS_RELEASES["debian-13"][0]))
    installs = [c for c in apt.commands if c[:2] == ["apt-get", "install"]]
    assert len(installs) == 1 and installs[0][:5] == ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    assert installs[0][-1] == "vnetlab-test-not-a-package" and set(installs[0][5:]) <= set(PACKAGES[DEBIAN_13])
    assert ["apt-get", "update", "-q"] in apt.commands
    # Both apt-get calls ran with a policy-rc.d that forbids every start; it is gone afterwards.
    assert len(apt.policy_during_apt) == 2 and all(p is not None and p.rstrip().endswith("exit 101") for p in apt.policy_during_apt)
    assert not as_root.exists()
    assert not [c for c in apt.commands if c[0] not in ("apt-get", "dpkg-query")], "no systemctl, virtlogd or libvirtd"
    assert report.installed == installs[0][5:]
    assert report.lines()[-1] == "skipped: libvirtd and virtlogd not started (--packages-only)"
    assert said == [f"installing {' '.join(report.installed)}"]


def test_packages_only_keeps_an_existing_policy_rc_d(as_root: Path, tmp_path: Path, monkeypatch):
    as_root.parent.mkdir()
    as_root.write_text("#!/bin/sh\n# the container's own\nexit 101\n")
    apt = FakeApt(as_root)
    monkeypatch.setattr(st.subprocess, "run", apt)
    monkeypatch.setattr(st, "start_daemons", _no_daemons)
    st.setup(lambda _m: None, daemons=False, os_release=_os_release(tmp_path, OS_RELEASES["ubuntu-24.04"][0]))
    assert as_root.read_text() == "#!/bin/sh\n# the container's own\nexit 101\n"


def test_policy_rc_d_is_removed_when_apt_fails(as_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(st.subprocess, "run", FakeApt(as_root, fail_with="E: Unable to locate package mmdebstrap"))
    with pytest.raises(SetupError, match="universe") as failed:
        st.setup(lambda _m: None, daemons=False, os_release=_os_release(tmp_path, OS_RELEASES["ubuntu-22.04"][0]))
    assert "apt-get install" in str(failed.value)
    assert not as_root.exists()


def test_full_setup_leaves_service_starts_alone_and_starts_the_daemons(as_root: Path, tmp_path: Path, monkeypatch):
    apt = FakeApt(as_root)
    monkeypatch.setattr(st.subprocess, "run", apt)
    started: list[bool] = []
    monkeypatch.setattr(st, "start_daemons", lambda report, say: started.append(True))
    report = st.setup(lambda _m: None, os_release=_os_release(tmp_path, OS_RELEASES["debian-12"][0]))
    assert started == [True] and apt.policy_during_apt == [None, None] and not report.skipped


def test_no_packages_reads_no_os_release(as_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(st, "start_daemons", lambda report, say: report.already.append("libvirtd running"))
    report = st.setup(lambda _m: None, packages=False, os_release=_os_release(tmp_path, UNKNOWN["fedora-40"][0]))
    assert report.lines() == ["nothing to change: libvirtd running"]


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_an_unknown_distribution_is_a_clear_error_naming_the_packages(as_root: Path, tmp_path: Path, monkeypatch, name: str):
    monkeypatch.setattr(st.subprocess, "run", _no_daemons)  # nothing may run: not even dpkg-query
    with pytest.raises(SetupError) as failed:
        st.setup(lambda _m: None, daemons=False, os_release=_os_release(tmp_path, UNKNOWN[name][0]))
    message = str(failed.value)
    family = UNKNOWN[name][1]
    nearest = {"debian": DEBIAN_13, "ubuntu": UBUNTU_2404, None: DEBIAN_12}[family]
    assert " ".join(PACKAGES[nearest]) in message
    assert "Debian 12, Debian 13, Ubuntu 22.04, Ubuntu 24.04" in message
    assert "vnetlab setup --no-packages" in message
    assert ("apt-get install --no-install-recommends" in message) == (family is not None)


def test_the_cli_prints_the_unknown_distribution_error_without_a_traceback(as_root: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(st, "OS_RELEASE", _os_release(tmp_path, UNKNOWN["fedora-40"][0]))
    monkeypatch.delenv("VNETLAB_DEBUG", raising=False)
    assert cli.main(["setup", "--packages-only"]) == cli.EXIT_FAIL
    captured = capsys.readouterr()
    text = " ".join(captured.err.split())  # rich wraps long lines
    assert "error: vnetlab setup has package tables for" in text and "Fedora Linux 40" in text
    assert "Traceback" not in captured.err and "unexpected error" not in captured.err
    assert captured.out == ""


def test_the_cli_offers_packages_only_and_refuses_it_with_no_packages(capsys):
    parser = cli.build_parser()
    assert parser.parse_args(["setup", "--packages-only"]).packages_only is True
    assert parser.parse_args(["setup"]).packages_only is False
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["setup", "--packages-only", "--no-packages"])
    assert refused.value.code == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["setup", "--help"])
    assert "--packages-only" in capsys.readouterr().out


def test_setup_needs_root(monkeypatch):
    monkeypatch.setattr(st.os, "geteuid", lambda: 1000)
    with pytest.raises(SetupError, match="as root"):
        st.setup(lambda _m: None, daemons=False)
