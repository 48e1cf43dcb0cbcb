"""The real libvirtd going down under a lab: `status` still answers, `down` removes everything it
can (namespace, taps), says the domains are left and keeps them, and only them, in the state file;
with libvirtd back, `down` finishes and nothing of the lab is left.

libvirtd is stopped by the PID in /run/libvirtd.pid. Its reaping supervisor does not restart it
(vnetlab.tools.reaper exits with its daemon), so it stays down until this test starts it again the
way the host was set up (./scripts/setup-host, idempotent), in a `finally`, and checks it answers.
Other labs on this host cannot reach libvirt meanwhile: the window is kept to a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from labtools import leftovers, qemu_pids_of, state_of, vnetlab

from vnetlab import procfs
from vnetlab.backends.linux_bridge import list_links
from vnetlab.backends.netns import list_namespaces
from vnetlab.plan.planner import tap_prefix

pytestmark = pytest.mark.e2e
LAB_PREFIX = "d-"
LIBVIRTD_PID = Path("/run/libvirtd.pid")


def libvirt_answers() -> bool:
    try:
        return subprocess.run(["virsh", "-q", "-c", "qemu:///system", "uri"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _running(pid: int) -> bool:
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields)


@contextmanager
def libvirtd_stopped() -> Iterator[int]:
    """The real daemon down for the block; started again afterwards, whatever happened."""
    pid = int(LIBVIRTD_PID.read_text().strip())
    assert b"libvirtd" in Path(f"/proc/{pid}/cmdline").read_bytes(), f"{LIBVIRTD_PID} names pid {pid}, which is not libvirtd"
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(pid), f"libvirtd (pid {pid}) did not stop within 60 s"
        time.sleep(1.0)  # a supervisor that restarted it would have done so by now
        assert not libvirt_answers(), "libvirtd answers again: something restarted it"
        yield pid
    finally:
        setup = subprocess.run(["./scripts/setup-host"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert libvirt_answers(), "libvirtd does not answer after ./scripts/setup-host"


def test_down_with_libvirtd_stopped_leaves_only_the_domains_and_a_later_down_finishes(lab_name):
    up = vnetlab("up", "two-vm-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    resources = state_of(lab_name)["resources"]
    domains = [r["name"] for r in resources if r["kind"] == "domain"]
    taps = [r["name"] for r in resources if r["kind"] == "tap"]
    namespace = f"vnl-{lab_name}"
    assert len(domains) == 2 and len(taps) == 4 and namespace in list_namespaces()
    guests = qemu_pids_of(lab_name)
    assert len(guests) == 2

    with libvirtd_stopped():
        status = vnetlab("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert lab_name in status.stdout and "libvirtd not answering" in status.stdout

        down = vnetlab("down", lab_name)
        assert down.returncode == 1, down.stdout + down.stderr
        assert namespace not in list_namespaces()
        assert [link["name"] for link in list_links(None) if link["name"].startswith(tap_prefix(lab_name))] == []
        assert f"; left domain {domains[0]}, domain {domains[1]} (kept in its state file)" in down.stdout or (
            f"; left domain {domains[1]}, domain {domains[0]} (kept in its state file)" in down.stdout
        ), down.stdout
        assert f"removed namespace {namespace}" in down.stdout
        assert all(f"tap {tap}" in down.stdout.split("; left")[0] for tap in taps)
        print(status.stdout, down.stdout, down.stderr, sep="\n")  # shown with -rP
        assert all(f"  domain {d}: " in down.stderr for d in domains), down.stderr  # why each is left
        assert "not everything was removed" in down.stderr
        left = state_of(lab_name)
        assert left is not None and sorted((r["kind"], r["name"]) for r in left["resources"]) == sorted(("domain", d) for d in domains)
        assert qemu_pids_of(lab_name) == guests  # the guests run on: only libvirt can stop them

    status = vnetlab("status")
    assert status.returncode == 0 and "libvirtd not answering" not in status.stdout, status.stdout
    down = vnetlab("down", lab_name)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.strip() == f"lab {lab_name}: removed"
    assert leftovers(lab_name) == []
    assert vnetlab("down", lab_name).stdout.strip() == f"lab {lab_name}: nothing to remove"
