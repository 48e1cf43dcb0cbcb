"""`vnetlab setup` gives /dev/kvm to qemu's user as udev would (libvirt re-probes qemu otherwise)."""

from __future__ import annotations

import grp
import os
import stat

import pytest

from vnetlab.tools.setup import SetupReport, grant_kvm_to_qemu, kvm_reachable_by, qemu_account

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")]


def _device(tmp_path, mode: int, gid: int):
    device = tmp_path / "kvm"
    device.write_text("")
    os.chown(device, 0, gid)
    os.chmod(device, mode)
    return device


def test_kvm_reachability_follows_owner_group_and_mode(tmp_path):
    kvm = grp.getgrnam("kvm").gr_gid
    assert kvm_reachable_by(_device(tmp_path, 0o600, 0), "libvirt-qemu") is False  # the kernel's node without udev
    assert kvm_reachable_by(_device(tmp_path, 0o660, kvm), "libvirt-qemu") is True  # udev's rule
    assert kvm_reachable_by(_device(tmp_path, 0o666, 0), "libvirt-qemu") is True
    assert kvm_reachable_by(_device(tmp_path, 0o640, kvm), "libvirt-qemu") is False
    assert kvm_reachable_by(_device(tmp_path, 0o600, 0), "root") is True
    assert kvm_reachable_by(tmp_path / "absent", "libvirt-qemu") is None
    assert kvm_reachable_by(_device(tmp_path, 0o600, 0), "no-such-user-here") is None


def test_grant_gives_the_device_to_group_kvm_once(tmp_path):
    device, conf = _device(tmp_path, 0o600, 0), tmp_path / "qemu.conf"
    conf.write_text('#user = "root"\n')
    report = SetupReport()
    grant_kvm_to_qemu(report, device, conf)
    assert (device.stat().st_gid, stat.S_IMODE(device.stat().st_mode)) == (grp.getgrnam("kvm").gr_gid, 0o660)
    assert report.lines()[0] == f"changed: {device} to group kvm, mode 0660, so that qemu's user libvirt-qemu opens it (as udev's rule does)"
    again = SetupReport()
    grant_kvm_to_qemu(again, device, conf)
    assert again.changed == []


def test_qemu_account_reads_qemu_conf(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text('# user = "nobody"\nuser = "root"\ngroup = "root"\n')
    assert qemu_account(conf) == ("root", "root")
    assert qemu_account(tmp_path / "absent") == ("libvirt-qemu", None)
