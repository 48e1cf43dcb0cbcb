"""Warm images in the image cache: listed with what they were made of, current while the image they
were booted from is and the same QEMU and libvirt are installed, and pruned otherwise; root's,
with qemu's group reading only what restored guests open; and when a lab uses none ($VNETLAB_COLD,
a --cold lab's rebuild)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vnetlab.backends import image_cache, user_image, warm_image
from vnetlab.run.lab import COLD_ENV, cold_by_environment
from vnetlab.run.state import STATE_FILE, LabState
from vnetlab.tools import images

VERSIONS = "qemu 7.2.22, libvirt 9.0.0"


def _entry(cache: Path, name: str, info: dict, files: dict[str, bytes]) -> Path:
    path = cache / name
    path.mkdir(parents=True)
    for file, data in files.items():
        (path / file).write_bytes(data)
    (path / "info.json").write_text(json.dumps({"built": "2026-12-07T10:00:00Z", **info}))
    return path


def test_a_warm_image_is_current_with_its_base_image_and_the_qemu_that_saved_it(tmp_path, monkeypatch):
    monkeypatch.setattr(warm_image, "host_versions", lambda: VERSIONS)
    cache = tmp_path / "images"
    source = tmp_path / "mine.qcow2"
    source.write_bytes(b"QFI\xfb" + bytes(508))
    key = user_image.import_key(source)
    _entry(cache, f"file-{key}", {"kind": "file", "hash": key, "source": str(source)}, {"base.qcow2": b"x"})
    warm = {"kind": "warm", "image": f"file {source}", "memory_mib": 512, "vcpus": 1, "nics": 2}
    _entry(cache, "warm-aaaa", {**warm, "hash": "aaaa", "base": f"file-{key}", "versions": VERSIONS}, {"warm.save": bytes(4096)})
    _entry(cache, "warm-bbbb", {**warm, "hash": "bbbb", "base": f"file-{key}", "versions": "qemu 7.2.1, libvirt 9.0.0"}, {"warm.save": b"s"})
    _entry(cache, "warm-cccc", {**warm, "hash": "cccc", "base": "file-0000", "versions": VERSIONS}, {"warm.save": b"s"})

    rows = {row.name: row for row in images.list_images(cache)}
    assert {name: row.current for name, row in rows.items()} == {f"file-{key}": True, "warm-aaaa": True, "warm-bbbb": False, "warm-cccc": False}
    assert rows["warm-aaaa"].kind == "warm" and rows["warm-aaaa"].size >= 4096
    assert rows["warm-aaaa"].detail == f"warm start: file {source}, 512 MiB, 1 vCPU, 2 NIC(s), booted from file-{key} ({VERSIONS})"

    removed = images.prune_images(cache)
    assert sorted(p.name for p in removed) == ["warm-bbbb", "warm-cccc"]
    assert sorted(p.name for p in cache.iterdir()) == [f"file-{key}", "warm-aaaa"]

    source.write_bytes(b"QFI\xfb" + bytes(600))  # the user's file changed: its import, and the warm image booted from it, are no longer current
    assert sorted(p.name for p in images.prune_images(cache)) == [f"file-{key}", "warm-aaaa"]


def test_a_cached_warm_image_needs_its_save_file(tmp_path):
    cache = tmp_path / "images"
    _entry(cache, "warm-dddd", {"kind": "warm", "hash": "dddd"}, {})
    assert warm_image.cached(cache, "dddd") is None
    (cache / "warm-dddd" / "warm.save").write_bytes(b"s")
    found = warm_image.cached(cache, "dddd")
    assert found is not None and found.save == cache / "warm-dddd" / "warm.save" and found.disk.name == "disk.qcow2"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_a_warm_image_is_roots_and_qemus_group_reads_only_its_disk_and_seed(tmp_path: Path) -> None:
    """While it is made, its guest's qemu passes through the build folder; once published, what the
    restored guests' qemu opens (disk, seed) is granted to qemu's group when used, the save image
    stays root's alone, nothing is readable by others, and using the cache again keeps it so."""
    qemu_gid = 64055
    with image_cache.building(tmp_path, warm_image.KIND, "eeee") as build:
        image_cache.open_build_to_qemu(build, qemu_gid)
        assert (stat.S_IMODE(build.stat().st_mode), build.stat().st_gid) == (0o710, qemu_gid)
        for name in (warm_image.SAVE_FILE, warm_image.DISK_FILE, warm_image.SEED_FILE):
            (build / name).write_bytes(b"x")
            os.chmod(build / name, image_cache.FILE_MODE)
        entry = image_cache.publish(build, tmp_path, warm_image.KIND, "eeee", {})
    found = warm_image.cached(tmp_path, "eeee")
    assert found is not None and found.read_by_qemu() == [found.disk, found.seed]
    image_cache.grant_to_qemu(tmp_path, found.read_by_qemu(), qemu_gid)
    assert warm_image.cached(tmp_path, "eeee") is not None  # another lab looking it up meanwhile

    def seen(path: Path) -> tuple[int, int]:
        st = path.stat()
        return stat.S_IMODE(st.st_mode), st.st_gid

    assert seen(tmp_path) == (0o710, qemu_gid) and seen(entry.path) == (0o710, qemu_gid)
    assert seen(found.disk) == (0o640, qemu_gid) and seen(found.seed) == (0o640, qemu_gid)
    assert seen(found.save) == (0o600, 0) and seen(entry.path / "info.json") == (0o600, 0)


def test_a_tiny_guests_warm_image_gives_qemu_nothing_to_read(tmp_path: Path) -> None:
    _entry(tmp_path, "warm-ffff", {"kind": "warm", "hash": "ffff"}, {"warm.save": b"s"})
    found = warm_image.cached(tmp_path, "ffff")
    assert found is not None and found.read_by_qemu() == []
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in found.path.iterdir()} == {"warm.save": 0o600, "info.json": 0o600}  # an older vnetlab's 0644, narrowed


@pytest.mark.parametrize(("value", "cold"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_vnetlab_cold_in_the_environment_turns_warm_start_off(monkeypatch, value, cold):
    if value is None:
        monkeypatch.delenv(COLD_ENV, raising=False)
    else:
        monkeypatch.setenv(COLD_ENV, value)
    assert cold_by_environment() is cold


def test_a_lab_remembers_it_was_booted_and_an_older_state_file_reads_as_warm(tmp_path: Path) -> None:
    """An exercise's reset rebuilds a --cold lab booted (LabState.cold); a lab an older vnetlab
    recorded, with no such field, is read as a lab with warm start on."""
    LabState("l", "s", "/x/lab.yaml", "vnl-l", "qemu", "/k", 1, cold=True).save(tmp_path)
    assert LabState.load(tmp_path).cold is True
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    del raw["cold"]
    (tmp_path / STATE_FILE).write_text(json.dumps(raw))
    assert LabState.load(tmp_path).cold is False


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_grant_leaves_the_owner_libvirt_gave_a_file_in_use(tmp_path: Path) -> None:
    """While a guest runs, libvirt has its kernel owned by qemu's user (and remembers root); a lab
    starting meanwhile grants the same kernel and must not take it back to root, or libvirt refuses
    that lab's guests ("Setting different DAC user or group ... already in use": two classroom
    seats restored at once)."""
    qemu = 64055
    entry = _entry(tmp_path, "tiny-aaaa", {"kind": "tiny"}, {"vmlinux": b"k"})
    os.chown(entry / "vmlinux", qemu, qemu)
    image_cache.grant_to_qemu(tmp_path, [entry / "vmlinux"], qemu)
    st = (entry / "vmlinux").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (qemu, qemu, 0o640)


def test_a_libvirt_between_the_proven_ones_boots_its_guests_and_says_why(monkeypatch):
    """libvirt 9.0 reads a save image's header once per restore, 11.2 and later twice (11.3 proven,
    make prove-debian13); the releases between were never run here: their guests boot, each saying why."""
    from scenario_helpers import plan_of
    from vnetlab.run import warm

    plan = plan_of((Path(__file__).parents[2] / "scenarios" / "two-vm-ping.yaml").read_text(), "w13")
    monkeypatch.setattr(warm_image.libvirt, "getVersion", lambda: 10_000_000)
    said: list[str] = []
    assert warm.warm_keys(plan, said.append) == {}
    assert said == [
        f"{vm}: booted, not restored: warm start restores on libvirt 9 and on 11.2 and later (proven on 9.0 and 11.3);"
        " libvirt 10.0 was never run with it" for vm in ("vm1", "vm2")
    ]
    for proven in (9_000_000, 11_003_000, 12_000_000):
        monkeypatch.setattr(warm_image.libvirt, "getVersion", lambda proven=proven: proven)
        assert warm_image.warm_refused() is None


@pytest.mark.parametrize("version, reads", [(9_000_000, 1), (11_001_000, 1), (11_002_000, 2), (11_003_000, 2)])
def test_libvirt_from_11_2_reads_a_save_images_header_twice(version, reads):
    assert warm_image.header_reads(version) == reads
