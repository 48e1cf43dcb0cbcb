"""Image kinds without building or booting: the model's `image:`, the plan and domain XML of each
kind, the debian recipe, the file kind's checks, the cache's bookkeeping, and ELF reading."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from vnetlab import procfs
from vnetlab.backends import image_cache, user_image
from vnetlab.backends.debian_image import RECIPE as DEBIAN_RECIPE
from vnetlab.backends.debian_image import base_packages
from vnetlab.backends.debian_tree import elf_dependencies, find_in_tree, in_tree, tree_libraries
from vnetlab.backends.image import ImageError
from vnetlab.backends.image_kinds import ImageRef
from vnetlab.compose import parse_scenario
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.model.validate import vm_image, vm_memory
from vnetlab.paths import RECIPE_DIR
from vnetlab.plan.planner import PlanOptions, make_plan

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")


def lab(vms: str, top: str = "") -> str:
    return f"name: kinds\n{top}bridges:\n  - {{name: br0, subnet: 10.1.1.0/24}}\nvms:\n{vms}"


def vm(name: str, address: str, extra: str = "") -> str:
    return f"  - name: {name}\n{extra}    nics: [{{bridge: br0, address: {address}}}]\n"


def bootable_raw(path: Path) -> Path:
    """A 1 MiB raw 'disk' with an MBR boot signature: qemu-img calls it raw, vnetlab accepts it."""
    with path.open("wb") as f:
        f.truncate(1 << 20)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


# --- the model ------------------------------------------------------------------------------


def test_vms_take_the_scenarios_image_unless_they_name_their_own(tmp_path: Path) -> None:
    disk = bootable_raw(tmp_path / "cloud.img")
    text = lab(
        vm("a", "10.1.1.2/24") + vm("b", "10.1.1.3/24", "    image: tiny\n") + vm("c", "10.1.1.4/24", "    image: {kind: debian, packages: [frr, bird2, frr]}\n")
        + vm("d", "10.1.1.5/24", "    image: {file: cloud.img}\n"),
        top="image: debian\n",
    )
    (tmp_path / "lab.yaml").write_text(text)
    s = parse_scenario(text, str(tmp_path / "lab.yaml"))
    refs = [vm_image(s, v) for v in s.vms]
    assert refs == [ImageRef("debian"), ImageRef("tiny"), ImageRef("debian", ("bird2", "frr")), ImageRef("file", file=str(disk))]
    assert [vm_memory(s, v) for v in s.vms] == [256, 128, 256, 512]


def test_an_unknown_kind_is_refused_by_the_loader_with_its_line() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_scenario(lab(vm("a", "10.1.1.2/24", "    image: ubuntu\n")), "x.yaml")
    assert [(p.line, p.field, p.message) for p in raised.value.problems] == [(6, "vms[0].image", "expected one of: tiny, debian or a mapping, got 'ubuntu'")]


def test_memory_is_checked_against_the_kind_only_when_given() -> None:
    s = parse_scenario(lab(vm("a", "10.1.1.2/24", "    image: debian\n    memory: 256\n")), "x.yaml")
    assert vm_memory(s, s.vms[0]) == 256
    with pytest.raises(ValidationError, match="100 MiB is too little for a debian guest: at least 256"):
        parse_scenario(lab(vm("a", "10.1.1.2/24", "    image: debian\n    memory: 100\n")), "x.yaml")


# --- plans and domain XML of each kind --------------------------------------------------------


def test_each_kind_boots_its_way(tmp_path: Path) -> None:
    bootable_raw(tmp_path / "cloud.img")
    text = lab(vm("t", "10.1.1.2/24") + vm("d", "10.1.1.3/24", "    image: debian\n") + vm("f", "10.1.1.4/24", "    image: {file: cloud.img}\n"))
    plan = make_plan(parse_scenario(text, str(tmp_path / "lab.yaml")), "kinds", PlanOptions(kernel=KERNEL))
    tiny, debian, cloud = plan.vms
    assert "rdinit" not in tiny.cmdline and tiny.disk is None and tiny.seed is None and "<disk" not in tiny.xml
    assert "rdinit=/sbin/vnl-root" in debian.cmdline and debian.disk == plan.lab_dir / "guests/d/disk.qcow2"
    assert f"<kernel>{KERNEL}</kernel>" in debian.xml and "<target dev='vda' bus='virtio'/>" in debian.xml
    assert "<seclabel model='dac' relabel='no'/>" in debian.xml  # the shared base is never relabelled
    assert cloud.cmdline == "" and "<kernel>" not in cloud.xml and "<boot dev='hd'/>" in cloud.xml
    assert cloud.seed == plan.lab_dir / "guests/f/seed.iso" and f"<source file='{cloud.seed}'/>" in cloud.xml
    assert cloud.xml.count("<readonly/>") == 1 and cloud.memory == 512
    assert not cloud.image.info.ready_on_console and debian.image.info.ready_on_console


def test_built_images_replace_the_placeholders(tmp_path: Path) -> None:
    from vnetlab.backends.image_kinds import ResolvedImage

    ref = ImageRef("debian")
    built = ResolvedImage(ref, tmp_path / "k", tmp_path / "i", tmp_path / "debian-x/root.qcow2")
    plan = make_plan(parse_scenario(lab(vm("d", "10.1.1.3/24", "    image: debian\n")), "x.yaml"), "k", PlanOptions(kernel=KERNEL, images={ref: built}))
    assert f"<source file='{tmp_path}/debian-x/root.qcow2'>" in plan.vms[0].xml and f"<kernel>{tmp_path}/k</kernel>" in plan.vms[0].xml


# --- the debian recipe ------------------------------------------------------------------------


def test_the_debian_recipe_has_sshd_and_the_readiness_unit() -> None:
    assert {"systemd-sysv", "openssh-server", "iproute2", "iputils-ping", "tcpdump"} <= set(base_packages())
    unit = (DEBIAN_RECIPE / "etc/systemd/system/vnetlab-ready.service").read_text()
    assert "After=ssh.service" in unit and "ExecStart=/usr/local/lib/vnetlab/ready" in unit
    ready = DEBIAN_RECIPE / "usr/local/lib/vnetlab/ready"
    assert os.access(ready, os.X_OK) and "VNETLAB-READY host=$host" in ready.read_text()
    sshd = (DEBIAN_RECIPE / "etc/ssh/sshd_config.d/vnetlab.conf").read_text()
    assert "PasswordAuthentication no" in sshd and "HostKey /etc/ssh/ssh_host_ed25519_key" in sshd


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox to parse the scripts")
@pytest.mark.parametrize("script", ["guest/sbin/vnl-root", "guest/etc/init.d/rcS", "guest/lib/vnetlab/boot.sh", "debian/usr/local/lib/vnetlab/ready"])
def test_guest_scripts_are_valid_shell(script: str) -> None:
    subprocess.run(["busybox", "sh", "-n", str(RECIPE_DIR / script)], check=True)


def test_vnl_root_installs_this_guests_keys_then_switches_to_systemd() -> None:
    text = (RECIPE_DIR / "guest/sbin/vnl-root").read_text()
    assert text.index("mount -t ext4") < text.index("authorized_keys") < text.index("exec switch_root /newroot /sbin/init")
    assert "/etc/vnetlab/ssh_host_ed25519_key" in text


# --- the file kind ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_only_qcow2_and_bootable_raw_files_are_accepted(tmp_path: Path) -> None:
    assert user_image.check_image_file(bootable_raw(tmp_path / "a.img")) == "raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "b.qcow2"), "1M"], check=True)
    assert user_image.check_image_file(tmp_path / "b.qcow2") == "qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(tmp_path / "c.vmdk"), "1M"], check=True)
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "folder").mkdir()
    for name, complaint in (("c.vmdk", "is vmdk, expected a qcow2 or raw"), ("notes.txt", "no MBR boot signature"), ("folder", "not a regular file"), ("nope", "does not exist")):
        with pytest.raises(ImageError, match=complaint):
            user_image.check_image_file(tmp_path / name)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_a_file_is_imported_once_and_again_when_it_changes(tmp_path: Path) -> None:
    disk = bootable_raw(tmp_path / "cloud.img")
    before = disk.stat()
    said: list[str] = []
    first = user_image.import_image(disk, tmp_path / "cache", said.append)
    assert first.name == "base.qcow2" and json.loads((first.parent / "info.json").read_text())["format"] == "raw"
    assert user_image.import_image(disk, tmp_path / "cache", said.append) == first and len(said) == 1
    assert (disk.stat().st_mtime_ns, disk.stat().st_mode, disk.stat().st_uid) == (before.st_mtime_ns, before.st_mode, before.st_uid)  # only read
    time.sleep(0.01)
    disk.write_bytes(disk.read_bytes())
    assert user_image.import_image(disk, tmp_path / "cache", said.append) != first


# --- the cache --------------------------------------------------------------------------------


def test_prune_keeps_what_is_asked_and_removes_legacy_and_stale_builds(tmp_path: Path) -> None:
    with image_cache.building(tmp_path, "tiny", "aaa") as build:
        keep = image_cache.publish(build, tmp_path, "tiny", "aaa", {})
    with image_cache.building(tmp_path, "tiny", "bbb") as build:
        old = image_cache.publish(build, tmp_path, "tiny", "bbb", {})
    (tmp_path / "0123456789abcdef").mkdir()  # an entry of an older vnetlab
    stale = tmp_path / ".debian-ccc.x"
    stale.mkdir()
    os.utime(stale, (0, 0))
    fresh = tmp_path / ".debian-ddd.y"  # a build running right now
    fresh.mkdir()
    assert [e.kind for e in image_cache.entries(tmp_path)] == ["legacy", "tiny", "tiny"]
    removed = image_cache.prune(tmp_path, {keep.path})
    assert set(removed) == {old.path, tmp_path / "0123456789abcdef", stale}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".debian-ddd.y", "tiny-aaa"]


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with image_cache.building(tmp_path, "debian", "eee") as build:
            (build / "half.qcow2").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


# --- reading ELF files and trees without running anything --------------------------------------


def _elf(interp: bytes | None, needed: list[bytes]) -> bytes:
    """A minimal ELF64: one PT_LOAD mapping the whole file at 0x400000, PT_INTERP, PT_DYNAMIC."""
    base = 0x400000
    strtab = b"\0" + b"".join(n + b"\0" for n in needed)
    offsets, position = [], 1
    for n in needed:
        offsets.append(position)
        position += len(n) + 1
    headers = 3 if interp else 2
    phoff, data_start = 64, 64 + 56 * headers
    interp_blob = (interp + b"\0") if interp else b""
    strtab_off = data_start + len(interp_blob)
    dynamic_off = strtab_off + len(strtab) + (-(strtab_off + len(strtab)) % 8)
    dynamic = b"".join(struct.pack("<qQ", 1, o) for o in offsets) + struct.pack("<qQ", 5, base + strtab_off) + struct.pack("<qQ", 0, 0)
    size = dynamic_off + len(dynamic)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, headers)
    phs = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    if interp:
        phs += struct.pack("<IIQQQQQQ", 3, 4, data_start, base + data_start, base + data_start, len(interp_blob), len(interp_blob), 1)
    phs += struct.pack("<IIQQQQQQ", 2, 6, dynamic_off, base + dynamic_off, base + dynamic_off, len(dynamic), len(dynamic), 8)
    body = bytes(header) + phs + interp_blob + strtab
    return body + b"\0" * (dynamic_off - len(body)) + dynamic


def test_elf_dependencies_reads_the_interpreter_and_needed_libraries() -> None:
    assert elf_dependencies(_elf(b"/lib64/ld-linux-x86-64.so.2", [b"libc.so.6", b"libz.so.1"])) == ("/lib64/ld-linux-x86-64.so.2", ["libc.so.6", "libz.so.1"])
    assert elf_dependencies(_elf(None, [])) == (None, [])


def test_tree_paths_never_resolve_to_the_hosts_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib64").mkdir()
    os.symlink("usr/lib", root / "lib")  # merged /usr, relative
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")  # absolute: must stay in the tree
    (root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(_elf(None, []))
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1").write_bytes(_elf(None, [b"libc.so.6"]))
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(_elf(None, []))
    (root / "usr/bin").mkdir()
    (root / "usr/bin/tool").write_bytes(_elf(b"/lib64/ld-linux-x86-64.so.2", [b"libz.so.1"]))
    assert in_tree(root, "/lib64/ld-linux-x86-64.so.2") == root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert find_in_tree(root, "/bin/tool") == "/usr/bin/tool"
    assert tree_libraries(root, "/usr/bin/tool") == ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"]


def test_an_interrupted_fetch_ends_what_mmdebstrap_left_running() -> None:
    """mmdebstrap 1.5 (Debian 13) exits on SIGTERM while processes it started still write into the
    tree: ending the fetch ends its whole process group, so the tree's removal does not race them."""
    from vnetlab.backends.debian_tree import _stop

    # The leader dies on SIGTERM; the helper it started ignores SIGTERM and would write on.
    script = "(trap '' TERM; while :; do sleep 0.05; done) & echo started; exec sleep 60"
    with subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        started = time.monotonic()
        _stop(proc)
        assert time.monotonic() - started < 5
    assert procfs.group_alive(proc.pid) == []  # nothing of its group runs on (a zombie may wait for PID 1)
