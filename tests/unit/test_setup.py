"""`vnetlab setup`: how it says what it changed, and its daemons (distributions: test_setup_distros.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnetlab.tools.setup import SetupReport


def test_the_report_says_what_changed_or_that_nothing_did():
    assert SetupReport(installed=["iperf3", "cpio"], started=["virtlogd"]).lines() == ["installed: iperf3 cpio", "started: virtlogd"]
    assert SetupReport(already=["all 18 packages installed", "libvirtd running"]).lines() == ["nothing to change: all 18 packages installed; libvirtd running"]
    assert SetupReport(already=["all 18 packages installed"], skipped=["libvirtd and virtlogd not started (--packages-only)"]).lines() == ["nothing to change: all 18 packages installed", "skipped: libvirtd and virtlogd not started (--packages-only)"]


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



def test_doctor_reports_same_page_merging_as_the_hosts_choice(tmp_path):
    from vnetlab.tools.doctor import _ksm

    run = tmp_path / "run"
    run.write_text("0\n")
    assert _ksm(run).status == "ok" and _ksm(run).detail.startswith("off (vnetlab never turns it on)")
    run.write_text("1\n")
    assert _ksm(run).detail.startswith("on: guests share their identical pages")
    assert "no same-page merging" in _ksm(tmp_path / "absent").detail
