"""Image kinds on real guests: Debian 12 guests (debian kind), a tiny and a Debian guest in one lab,
and a user's own cloud image booted by its own bootloader and configured by cloud-init (NoCloud)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from labtools import DEFAULT_START, leftovers, run_report, warm_image_modes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package
from support.cloud_image import ensure_cloud_image  # noqa: E402

pytestmark = pytest.mark.e2e
LAB_PREFIX = "i-"


def _guests(report: dict, image: str) -> dict:
    guests = report["guests"]
    for name, timing in guests.items():
        if timing["image"].startswith(image):
            assert timing["ssh_seconds"] > 0, (name, timing)
    return guests


def test_debian_guests_pass_the_two_vm_ping_checks(tmp_path, lab_name):
    result, report = run_report(tmp_path, "debian-two-vm-ping", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * 3, [c["detail"] for c in report["checks"]]
    guests = _guests(report, "debian")
    assert sorted(guests) == ["vm1", "vm2"] and all(g["image"] == "debian" for g in guests.values())
    assert all(0 < g["ready_seconds"] <= g["ssh_seconds"] for g in guests.values()), guests
    assert "vm1 (debian): ready " in result.stdout + result.stderr and f" after its {DEFAULT_START} began" in result.stdout + result.stderr
    assert {g["start"] for g in guests.values()} == {DEFAULT_START}
    if DEFAULT_START == "restore":  # the cache is root's: qemu's group reads the disk the guests' overlays are backed by, nothing else
        [key] = {g["warm_image"] for g in guests.values()}
        assert warm_image_modes(key) == {".": (0o710, "qemu"), "disk.qcow2": (0o640, "qemu"), "warm.save": (0o600, "root"), "console.log": (0o600, "root"), "info.json": (0o600, "root")}
    assert leftovers(lab_name) == []


def test_a_tiny_and_a_debian_guest_with_an_extra_package_share_a_lab(tmp_path, lab_name):
    result, report = run_report(tmp_path, "mixed-images", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * 7, [c["detail"] for c in report["checks"]]
    assert {n: g["image"] for n, g in report["guests"].items()} == {"tiny1": "tiny", "deb1": "debian + bridge-utils"}
    assert leftovers(lab_name) == []


@pytest.mark.parametrize("start", ["cold", pytest.param("warm", marks=pytest.mark.warm)])
def test_a_users_cloud_image_boots_by_its_own_bootloader_and_cloud_init(tmp_path, lab_name, start):
    """cold: booted by its bootloader, configured by cloud-init, ready when SSH answers with the
    pinned key and cloud-init is done; warm: restored from a warm image of it (booted that way once),
    ready when its warm start's agent says so, with its own name and keys."""
    image = ensure_cloud_image()
    before = os.stat(image)
    scenario = tmp_path / "cloud.yaml"
    os.symlink(image, tmp_path / "my-cloud.qcow2")
    scenario.write_text(
        "name: cloud-image\n"
        "bridges: [{name: br0, subnet: 10.1.1.0/24}]\n"
        "vms:\n"
        "  - {name: tiny1, nics: [{bridge: br0, address: 10.1.1.2/24}]}\n"
        "  - {name: cloud1, image: {file: my-cloud.qcow2}, nics: [{bridge: br0, address: 10.1.1.3/24}]}\n"
        "checks:\n"
        "  - ping: {from: tiny1, to: cloud1}\n"
        "  - ping: {from: cloud1, to: tiny1}\n"
        "  - command: {name: cloud-init named the guest and is done, node: cloud1, run: 'hostname; cloud-init status', expect: {stdout: 'cloud1\\nstatus: done'}}\n"
        "  - capture: {bridge: br0, between: [tiny1, cloud1], expect: [arp, icmp-echo]}\n"
    )
    result, report = run_report(tmp_path, str(scenario), lab_name, *(["--cold"] if start == "cold" else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * 4, [c["detail"] for c in report["checks"]]
    cloud = report["guests"]["cloud1"]
    assert cloud["image"] == f"file {tmp_path / 'my-cloud.qcow2'}", cloud
    if start == "cold":
        assert cloud["start"] == "boot" and cloud["ssh_seconds"] <= cloud["ready_seconds"], cloud
        assert "cloud1 (file " in result.stdout + result.stderr and "SSH answered with its pinned key" in result.stdout + result.stderr
    else:
        assert cloud["start"] == "restore" and cloud["ready_seconds"] <= cloud["ssh_seconds"], cloud
        assert warm_image_modes(cloud["warm_image"]) == {
            ".": (0o710, "qemu"), "disk.qcow2": (0o640, "qemu"), "seed.iso": (0o640, "qemu"), "warm.save": (0o600, "root"),
            "console.log": (0o600, "root"), "info.json": (0o600, "root"),
        }
    after = os.stat(image)
    assert (after.st_mtime_ns, after.st_mode, after.st_uid, after.st_gid, after.st_size) == (
        before.st_mtime_ns, before.st_mode, before.st_uid, before.st_gid, before.st_size
    )  # the user's image was only read
    assert leftovers(lab_name) == []
