"""Warm images in the image cache: listed with what they were made of, current while the image they
were booted from is and the same QEMU and libvirt are installed, and pruned otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from vnetlab.backends import user_image, warm_image
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
