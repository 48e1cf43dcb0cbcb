"""`vnetlab setup`: which distribution it recognises, and how it says what it changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnetlab.tools.setup import SetupReport, distribution


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n', "debian"),
        ('ID=ubuntu\nID_LIKE=debian\n', "debian"),
        ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "debian"),
        ('ID=fedora\n', "fedora"),
    ],
)
def test_distribution(tmp_path: Path, text: str, expected: str):
    release = tmp_path / "os-release"
    release.write_text(text)
    assert distribution(release) == expected


def test_missing_os_release_is_unknown(tmp_path: Path):
    assert distribution(tmp_path / "nope") == "unknown"


def test_the_report_says_what_changed_or_that_nothing_did():
    assert SetupReport(installed=["iperf3", "cpio"], started=["virtlogd"]).lines() == ["installed: iperf3 cpio", "started: virtlogd"]
    assert SetupReport(already=["all 18 packages installed", "libvirtd running"]).lines() == ["nothing to change: all 18 packages installed; libvirtd running"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_setup_again_changes_nothing():
    """`make test` has run setup already: running it again must find everything in place."""
    done = subprocess.run([sys.executable, "-m", "vnetlab", "setup"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nothing to change: all ") and "libvirtd running" in done.stdout


def test_a_stale_pid_file_is_not_a_running_daemon(tmp_path: Path):
    from vnetlab.tools.setup import _pid_alive

    pidfile = tmp_path / "virtlogd.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live process, but not virtlogd
    assert not _pid_alive(pidfile, "virtlogd")
    assert _pid_alive(pidfile, Path(f"/proc/{os.getpid()}/comm").read_text().strip())
    pidfile.write_text("not a pid\n")
    assert not _pid_alive(pidfile, "virtlogd")
    assert not _pid_alive(tmp_path / "missing.pid", "virtlogd")
