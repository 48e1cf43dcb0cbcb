"""The guest image recipe and builder, checked without root and without booting anything."""

from __future__ import annotations

import gzip
import lzma
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vnetlab.backends import image as image_module
from vnetlab.backends.image import (
    GUEST_FAILED_MARKER,
    GUEST_READY_MARKER,
    RECIPE_DIR,
    GuestImage,
    ImageError,
    kernel_cmdline,
    recipe_hash,
    write_guest_secrets,
)

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio to read archives independently")

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


def cpio_listing(archive: bytes) -> dict[str, str]:
    """name → `ls -l` style permission string, as GNU cpio reads the archive."""
    lines = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True).stdout.decode()
    members = (re.fullmatch(r"(\S+) .* (?:\d{4}|\d\d:\d\d) (\S+)(?: -> \S+)?", line) for line in lines.splitlines())
    return {member.group(2): member.group(1) for member in members if member}


def cpio_member(archive: bytes, name: str) -> bytes:
    return subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", name], input=archive, capture_output=True, check=True).stdout


# --- kernel command line ---------------------------------------------------------------------


def test_cmdline_has_the_boot_settings_and_the_guest_configuration() -> None:
    args = kernel_cmdline("vm1", "52:54:00:AA:00:01", "172.30.255.11/24", [(MAC2, "eth0"), (MAC3, "eth1")]).split()
    for fixed in ("console=ttyS0", "ipv6.disable=1", "panic=-1", "loglevel=3"):
        assert fixed in args
    assert "vnl.host=vm1" in args
    assert "vnl.mgmt=52:54:00:aa:00:01,172.30.255.11/24" in args  # MACs as the kernel prints them
    assert f"vnl.nics={MAC2}:eth0,{MAC3}:eth1" in args


def test_cmdline_without_data_nics_has_no_nics_parameter() -> None:
    assert "vnl.nics" not in kernel_cmdline("r1", MAC1, "10.0.0.2/30", [])


@pytest.mark.parametrize(
    ("hostname", "mac", "cidr", "nics", "complaint"),
    [
        ("vm 1", MAC1, "10.0.0.2/24", [], "hostname"),
        ("", MAC1, "10.0.0.2/24", [], "hostname"),
        ("vm1", "52:54:00:00:01", "10.0.0.2/24", [], "MAC"),
        ("vm1", MAC1, "10.0.0.2", [], "prefix length"),
        ("vm1", MAC1, "fd00::2/64", [], "management address"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC2, "mgmt0")], "duplicate guest interface name"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC2, "eth0"), (MAC3, "eth0")], "duplicate guest interface name"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC1, "eth0")], "duplicate guest MAC"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC2, "a-very-long-name0")], "interface name"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC2, "eth:0")], "interface name"),
        ("vm1", MAC1, "10.0.0.2/24", [(MAC2, "lo")], "interface name"),
    ],
)
def test_cmdline_rejects_what_the_guest_could_not_apply(hostname: str, mac: str, cidr: str, nics: list[tuple[str, str]], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        kernel_cmdline(hostname, mac, cidr, nics)


def test_cmdline_rejects_more_nics_than_the_kernel_line_holds() -> None:
    nics = [(f"52:54:00:00:{i // 256:02x}:{i % 256:02x}", f"eth{i}") for i in range(2, 102)]
    with pytest.raises(ValueError, match="too long"):
        kernel_cmdline("vm1", MAC1, "10.0.0.2/24", nics)


@given(st.lists(st.tuples(st.binary(min_size=6, max_size=6), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}", fullmatch=True)), max_size=8, unique_by=(lambda n: n[0], lambda n: n[1])))
def test_nics_split_back_the_way_rcs_splits_them(raw: list[tuple[bytes, str]]) -> None:
    nics = [(":".join(f"{b:02x}" for b in mac), name) for mac, name in raw if name not in ("lo", "mgmt0") and mac != bytes(6)]
    args = kernel_cmdline("vm1", "00:00:00:00:00:00", "10.0.0.2/24", nics).split()
    value = next((a.removeprefix("vnl.nics=") for a in args if a.startswith("vnl.nics=")), "")
    # rcS: entries split on ',', then MAC=${entry%:*} and name=${entry##*:}
    assert [tuple(entry.rsplit(":", 1)) for entry in value.split(",") if entry] == nics


# --- the recipe files ------------------------------------------------------------------------


def test_rcs_is_valid_shell_and_prints_the_markers_the_host_waits_for() -> None:
    rcs = RECIPE_DIR / "guest/etc/init.d/rcS"
    assert rcs.stat().st_mode & stat.S_IXUSR
    text = rcs.read_text()
    assert f'echo "{GUEST_READY_MARKER} host=$host" > /dev/ttyS0' in text
    assert f"{GUEST_FAILED_MARKER} host=" in text
    if shutil.which("busybox"):
        subprocess.run(["busybox", "sh", "-n", str(rcs)], check=True)


def test_inittab_runs_rcs_and_keeps_a_shell_on_the_serial_console() -> None:
    inittab = (RECIPE_DIR / "guest/etc/inittab").read_text().splitlines()
    assert "::sysinit:/etc/init.d/rcS" in inittab
    assert "ttyS0::respawn:-/bin/sh" in inittab


# --- the kernel ------------------------------------------------------------------------------


def _elf_with_note(name: bytes, note_type: int) -> bytes:
    """A minimal ELF64 whose only program header is a PT_NOTE holding one note."""
    desc = struct.pack("<I", 0x1000000)
    note = struct.pack("<III", len(name), len(desc), note_type) + name + b"\0" * (-len(name) % 4) + desc
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    program_header = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note), len(note), 4)
    return bytes(header) + program_header + note


def _bzimage(payload: bytes) -> bytes:
    """A bzImage shell: boot protocol 2.15 header, one setup sector, payload 16 bytes in."""
    setup = bytearray(2 * 512)
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 16, len(payload))
    return bytes(setup) + b"\0" * 16 + payload + struct.pack("<I", 12345)


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}])


def test_vmlinux_is_the_decompressed_payload(tmp_path: Path) -> None:
    elf = _elf_with_note(b"Xen\0", 18)
    (tmp_path / "vmlinuz").write_bytes(_bzimage(_xz(elf)))
    assert image_module._vmlinux(tmp_path / "vmlinuz") == elf


def test_a_kernel_without_pvh_entry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(_bzimage(_xz(_elf_with_note(b"GNU\0", 3))))
    with pytest.raises(ImageError, match="PVH"):
        image_module._vmlinux(tmp_path / "vmlinuz")


def test_a_kernel_compressed_otherwise_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(_bzimage(gzip.compress(_elf_with_note(b"Xen\0", 18))))
    with pytest.raises(ImageError, match="xz"):
        image_module._vmlinux(tmp_path / "vmlinuz")


# --- the recipe hash ---------------------------------------------------------------------------


def test_recipe_hash_follows_the_recipe_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = tmp_path / "images"
    shutil.copytree(RECIPE_DIR, recipe, ignore=shutil.ignore_patterns("out"))
    monkeypatch.setattr(image_module, "RECIPE_DIR", recipe)
    original = recipe_hash()
    assert recipe_hash() == original
    (recipe / "README.md").write_text("docs do not change the image\n")
    assert recipe_hash() == original
    rcs = recipe / "guest/etc/init.d/rcS"
    rcs.chmod(0o644)
    assert recipe_hash() != original
    rcs.chmod(0o755)
    with rcs.open("a") as script:
        script.write("# changed\n")
    assert recipe_hash() != original


def test_the_package_set_is_part_of_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    original = recipe_hash()
    monkeypatch.setattr(image_module, "KERNEL_PACKAGE", "linux-image-cloud-amd64")
    assert recipe_hash() != original


# --- building and per-guest archives (building itself: tests/root/test_image_build.py) ------


@needs_cpio
def test_guest_archive_adds_files_and_only_the_folders_the_base_lacks(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "root").mkdir(mode=0o700)
    (tree / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    base = gzip.compress(subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=b"etc\netc/passwd\nroot\n", capture_output=True, check=True).stdout)
    (tmp_path / "initrd.img").write_bytes(base)
    image = GuestImage(tmp_path / "vmlinux", tmp_path / "initrd.img", "6.1.0-test", "0" * 16)
    dest = tmp_path / "guest" / "secrets.cpio"
    dest.parent.mkdir()

    write_guest_secrets(image, dest, {"/root/.ssh/authorized_keys": (b"ssh-ed25519 AAAA\n", 0o600), "etc/dropbear/key": (b"\x00\x01", 0o600)})

    archive = dest.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert (tmp_path / "initrd.img").read_bytes() == base  # the image's initramfs, shared by every guest, is untouched
    assert cpio_listing(archive) == {
        "etc/dropbear": "drwxr-xr-x",
        "etc/dropbear/key": "-rw-------",
        "root/.ssh": "drwxr-xr-x",
        "root/.ssh/authorized_keys": "-rw-------",
    }  # no "root" or "etc": repeating them would reset the base image's modes
    assert cpio_member(archive, "root/.ssh/authorized_keys") == b"ssh-ed25519 AAAA\n"
    assert cpio_member(archive, "etc/dropbear/key") == b"\x00\x01"


def test_guest_paths_cannot_leave_the_guest_root(tmp_path: Path) -> None:
    (tmp_path / "initrd.img").write_bytes(gzip.compress(b""))
    image = GuestImage(tmp_path / "vmlinux", tmp_path / "initrd.img", "6.1.0-test", "0" * 16)
    with pytest.raises(ValueError, match="invalid path"):
        write_guest_secrets(image, tmp_path / "out", {"/etc/../../x": (b"", 0o600)})


def test_a_rebuild_is_swapped_in_before_the_old_entry_goes(tmp_path, monkeypatch):
    """`image build --rebuild`: the cache entry is never missing, the new files replace the old at once."""
    from vnetlab.backends import image_cache

    target, build = tmp_path / "tiny-abc", tmp_path / ".tiny-abc.x"
    target.mkdir()
    (target / "vmlinux").write_text("old")
    build.mkdir()
    (build / "vmlinux").write_text("new")
    seen_during_delete = []
    real_rmtree = image_cache.shutil.rmtree

    def watching_rmtree(path, *a, **k):
        seen_during_delete.append((target / "vmlinux").read_text())
        real_rmtree(path, *a, **k)

    monkeypatch.setattr(image_cache.shutil, "rmtree", watching_rmtree)
    image_cache.publish(build, tmp_path, "tiny", "abc", {})
    assert (target / "vmlinux").read_text() == "new" and (target / "info.json").is_file()
    assert seen_during_delete == ["new"]  # the old entry was deleted only after the new one was in place
