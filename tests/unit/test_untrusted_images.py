"""A user's disk image is untrusted input read by root (issue 23, finding 1): an image that would
have qemu read any other file — a qcow2 external data file, a backing file, a vmdk extent — is
refused with the file, what was found and why, before anything is copied; what is imported and
the whole image cache are root's alone."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from vnetlab.backends import image_cache, qcow2, user_image
from vnetlab.backends.image import ImageError
from vnetlab.compose import parse_scenario
from vnetlab.model.typed_yaml import ValidationError

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")

SECRET = b"vnetlab-test-secret-7c1e0f3a\n"


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def secret_file(tmp_path: Path) -> Path:
    """A host file root can read and a guest must never see (1 MiB, the known secret at its start)."""
    path = tmp_path / "host-secret"
    path.write_bytes(SECRET + b"\0" * ((1 << 20) - len(SECRET)))
    path.chmod(0o600)
    return path


def with_data_file(tmp_path: Path, target: Path, *extra: str) -> Path:
    image = tmp_path / "cloud.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", ",".join([f"data_file={target}", *extra]), str(image), "1M")
    return image


def copied_nothing(cache: Path) -> bool:
    """No cache entry, and no file under the cache holding the secret (a qcow2 copy keeps the data as it is)."""
    if not cache.exists():
        return True
    return not any(cache.glob("file-*")) and not any(p.is_file() and SECRET.strip() in p.read_bytes() for p in cache.rglob("*"))


def test_a_qcow2_with_an_external_data_file_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    secret = secret_file(tmp_path)
    image = with_data_file(tmp_path, secret)
    cache = tmp_path / "cache"
    said: list[str] = []
    with pytest.raises(ImageError) as refused:
        user_image.import_image(image, cache, said.append)
    message = str(refused.value)
    assert str(image) in message  # the file
    assert "external data file" in message and str(secret) in message  # what was found
    assert "copy them into the guest's disk" in message  # why
    assert said == []  # no import was started
    assert copied_nothing(cache)


@pytest.mark.parametrize("case", ["data-file-raw", "backing-raw", "backing-qcow2", "backing-v2", "encrypted", "unknown-feature", "corrupt", "vmdk-extent", "qed"])
def test_every_way_of_reading_outside_the_file_is_refused(tmp_path: Path, case: str) -> None:
    secret = secret_file(tmp_path)
    image = tmp_path / "cloud.img"
    if case == "data-file-raw":
        image = with_data_file(tmp_path, secret, "data_file_raw=on")
        expected = "raw external data file"
    elif case == "backing-raw":
        qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(image), "1M")
        expected = "backing file"
    elif case == "backing-qcow2":
        qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"), "1M")
        qemu_img("create", "-q", "-f", "qcow2", "-b", str(tmp_path / "base.qcow2"), "-F", "qcow2", str(image), "1M")
        expected = "backing file"
    elif case == "backing-v2":
        qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", str(secret), "-F", "raw", str(image), "1M")
        expected = "backing file"
    elif case == "encrypted":  # crypt_method 1 (AES) written into the header: qemu-img's LUKS benchmark fails now and then here
        qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
        header = bytearray(image.read_bytes())
        header[32:36] = (1).to_bytes(4, "big")
        image.write_bytes(bytes(header))
        expected = "encryption"
    elif case in ("unknown-feature", "corrupt"):
        qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
        header = bytearray(image.read_bytes())
        header[79] |= 0x20 if case == "unknown-feature" else 0x02  # incompatible features: bit 5 (unknown), bit 1 (corrupt)
        image.write_bytes(bytes(header))
        expected = "unknown incompatible features" if case == "unknown-feature" else "corrupt"
    elif case == "vmdk-extent":  # a descriptor naming a host file as its extent; qemu's probe would follow it
        image.write_text(f'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "{secret}" 0\n')
        expected = "is vmdk, expected a qcow2 or raw"
    else:
        qemu_img("create", "-q", "-f", "qed", "-b", str(secret), "-F", "raw", str(image), "1M")
        expected = "is qed, expected a qcow2 or raw"
    with pytest.raises(ImageError, match=expected):
        user_image.import_image(image, tmp_path / "cache", lambda _: None)
    assert copied_nothing(tmp_path / "cache")


def test_the_refusal_is_a_validation_error_with_the_line(tmp_path: Path) -> None:
    with_data_file(tmp_path, secret_file(tmp_path))
    text = "name: evil\nbridges:\n  - {name: br0, subnet: 10.1.1.0/24}\nvms:\n  - name: a\n    image: {file: cloud.qcow2}\n    nics: [{bridge: br0, address: 10.1.1.2/24}]\n"
    with pytest.raises(ValidationError) as refused:
        parse_scenario(text, str(tmp_path / "lab.yaml"))
    problem = str(refused.value.problems[0])
    assert problem.startswith(f"{tmp_path / 'lab.yaml'}:6: vms[0].image.file: image file ") and "external data file" in problem


def test_a_clean_qcow2_is_checked_by_header_and_by_qemu_img(tmp_path: Path) -> None:
    image = tmp_path / "clean.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
    assert qcow2.outside_references(image) == []
    assert user_image.check_image_file(image) == "qcow2"
    # qemu-img's own view is read as well: a JSON naming a data file is refused even if the header looked clean
    assert "an external data file (format-specific.data.data-file: '/etc/shadow')" in qcow2._info_findings(
        {"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/etc/shadow"}}}
    )
    assert qcow2._info_findings({"format": "qcow2", "children": [{"name": "file"}, {"name": "data-file"}]}) == ["a child node 'data-file'"]


def test_the_format_comes_from_the_files_magic_never_from_qemus_probe(tmp_path: Path) -> None:
    image = tmp_path / "x"
    for head, fmt in ((b"QFI\xfb", "qcow2"), (b"KDMV", "vmdk"), (b"# Disk DescriptorFile\n", "vmdk"), (b"vhdxfile", "vhdx"), (b"LUKS\xba\xbe", "luks"), (b"\0" * 8, "raw")):
        image.write_bytes(head + b"\0" * 600)
        assert qcow2.probe_format(image) == fmt


def test_imports_and_the_cache_are_root_only(tmp_path: Path) -> None:
    disk = tmp_path / "cloud.img"
    with disk.open("wb") as f:
        f.truncate(1 << 20)
        f.seek(510)
        f.write(b"\x55\xaa")
    disk.chmod(0o644)
    cache = tmp_path / "cache"
    base = user_image.import_image(disk, cache, lambda _: None)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o711  # qemu's user passes through, nobody lists
    assert stat.S_IMODE(base.parent.stat().st_mode) == 0o711
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in base.parent.iterdir()} == {"base.qcow2": 0o600, "info.json": 0o600}


def test_an_entry_an_older_vnetlab_left_readable_is_narrowed_when_used(tmp_path: Path) -> None:
    with image_cache.building(tmp_path, "tiny", "abc") as build:
        (build / "vmlinux").write_bytes(b"kernel")
        entry = image_cache.publish(build, tmp_path, "tiny", "abc", {})
    os.chmod(tmp_path, 0o755)
    os.chmod(entry.path, 0o755)
    for p in entry.path.iterdir():
        os.chmod(p, 0o644)
    assert image_cache.cached(tmp_path, "tiny", "abc") is not None
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o711 and stat.S_IMODE(entry.path.stat().st_mode) == 0o711
    assert {stat.S_IMODE(p.stat().st_mode) for p in entry.path.iterdir()} == {0o600}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_what_a_lab_boots_is_granted_to_qemus_group_alone_and_stays_granted(tmp_path: Path) -> None:
    """libvirt does not hand a backing file to qemu's user: the base disk (and kernel, initramfs) a lab
    boots is made group-readable for qemu's group only, and a later use of the cache keeps it so."""
    with image_cache.building(tmp_path, "debian", "abc") as build:
        (build / "root.qcow2").write_bytes(b"disk")
        (build / "packages.lock").write_bytes(b"lock")
        entry = image_cache.publish(build, tmp_path, "debian", "abc", {})
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.write_bytes(b"not the cache's")
    qemu_gid = 64055
    image_cache.grant_to_qemu(tmp_path, [entry.path / "root.qcow2", outside], qemu_gid)

    def seen(path: Path) -> tuple[int, int]:
        st = path.stat()
        return stat.S_IMODE(st.st_mode), st.st_gid

    assert seen(tmp_path) == (0o710, qemu_gid) and seen(entry.path) == (0o710, qemu_gid)
    assert seen(entry.path / "root.qcow2") == (0o640, qemu_gid)
    assert seen(entry.path / "packages.lock") == (0o600, 0)  # not booted: root's alone
    assert seen(outside)[1] != qemu_gid  # only the cache's files are granted
    stray = tmp_path / "not-an-entry" / "vmlinux"  # a folder of the cache without info.json: not an image's
    stray.parent.mkdir()
    stray.write_bytes(b"x")
    image_cache.grant_to_qemu(tmp_path, [stray], qemu_gid)
    assert seen(stray)[1] != qemu_gid and seen(stray.parent)[1] != qemu_gid
    assert image_cache.cached(tmp_path, "debian", "abc") is not None  # another lab starting meanwhile
    assert seen(entry.path / "root.qcow2") == (0o640, qemu_gid) and seen(tmp_path) == (0o710, qemu_gid)
