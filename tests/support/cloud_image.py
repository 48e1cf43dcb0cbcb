"""A Debian 12 cloud image for tests, built once from Debian's packages and cached.

vnetlab must boot a user's own cloud image, configured only through a NoCloud seed. The tests
need such an image without downloading a prebuilt one, so this builds one the way the official
images look: a partitioned, BIOS-bootable disk with a stock kernel and initramfs, cloud-init,
OpenSSH and ifupdown (Debian 12's cloud-init renders network-config to /etc/network/interfaces
when ifupdown is installed), no SSH host keys and no machine-id, so every guest gets its own.

Recipe (each step measured on this kind of machine, see shared notes "real distribution images"):
mmdebstrap a minbase tree; `mkfs.ext4 -d` the tree into a separate file; copy it into a raw disk
that sfdisk partitioned; install extlinux through `losetup -o OFFSET` (partition devices of a
loop device do not appear here) and write syslinux's mbr.bin into the first 440 bytes; convert
to qcow2. Root is needed (mmdebstrap's root mode, losetup, mount).

Run `python tests/support/cloud_image.py [CACHE]` to build it ahead of the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/var/lib/vnetlab/test-images")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "netbase",
    "ifupdown",
    "iproute2",
    "iputils-ping",
    "openssh-server",
    "cloud-init",
)
# Documentation nobody reads in a test guest: leaving it out makes the tree smaller and faster to copy.
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*")
DISK_MIB = 3072  # virtual size; the qcow2 stores only what is written
PART_START_SECTOR = 2048  # 1 MiB, as every partitioning tool aligns
SECTOR = 512
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
KERNEL_ARGS = "ro console=ttyS0,115200n8"  # serial console so the console log tells what happened
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "extlinux": "extlinux",
    "qemu-img": "qemu-utils",
}
PREFIX = "debian12-cloud-"


@dataclass(frozen=True)
class Layout:
    """Where the root partition lives inside the raw disk."""

    disk_bytes: int
    part_offset: int
    part_bytes: int


def ensure_cloud_image(cache: Path = DEFAULT_CACHE) -> Path:
    """The cached qcow2 for this recipe, built first if missing (several minutes, needs root).

    The cache key is the hash of this file, so editing the recipe builds a new image. The build
    runs in a temporary folder inside `cache` and is renamed into place only when complete; a lock
    keeps two test processes from building at the same time.
    """
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    image = cache / f"{PREFIX}{key}.qcow2"
    if image.exists():
        return image
    _check_host()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".build.lock"):
        if image.exists():  # another process built it while we waited
            return image
        _remove_stale_builds(cache)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            work.chmod(0o755)  # apt downloads as its _apt user, which must reach the tree below
            built = _build(work)
            built.chmod(0o644)  # libvirt's qemu user reads the base through overlays
            os.replace(built, image)
        finally:
            _remove_build_dir(work)
        for old in cache.glob(f"{PREFIX}*.qcow2"):
            if old != image:
                old.unlink(missing_ok=True)
    _progress(f"ready: {image}")
    return image


def _build(work: Path) -> Path:
    started = time.monotonic()
    tree = work / "tree"
    _progress(f"mmdebstrap {SUITE} ({len(PACKAGES)} packages) into {tree}")
    _run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
            SUITE,
            str(tree),
            MIRROR,
        ]
    )
    _progress(f"tree done after {time.monotonic() - started:.0f} s")
    root_uuid = str(uuid.uuid4())
    _configure_tree(tree, root_uuid)

    layout = Layout(
        disk_bytes=DISK_MIB << 20,
        part_offset=PART_START_SECTOR * SECTOR,
        part_bytes=(DISK_MIB << 20) - PART_START_SECTOR * SECTOR,
    )
    rootfs = work / "root.ext4"
    _progress(f"mkfs.ext4 -d ({layout.part_bytes >> 20} MiB partition)")
    with open(rootfs, "wb") as file:
        file.truncate(layout.part_bytes)
    # No 64bit feature: syslinux reads ext4, but older releases refuse 64bit; the disk is small anyway.
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", root_uuid, "-O", "^64bit", "-d", str(tree), str(rootfs)])
    shutil.rmtree(tree)

    disk = work / "disk.raw"
    _progress("partitioning the raw disk and copying the root file system in")
    with open(disk, "wb") as file:
        file.truncate(layout.disk_bytes)
    table = f"label: dos\nunit: sectors\n\nstart={PART_START_SECTOR}, type=83, bootable\n"
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], stdin=table)
    _copy_sparse(rootfs, disk, layout.part_offset)
    rootfs.unlink()

    _progress("installing extlinux through a loop device at the partition's offset")
    _install_extlinux(disk, layout, work / "mnt")
    mbr = MBR_BIN.read_bytes()
    if len(mbr) != 440:
        raise RuntimeError(f"{MBR_BIN} is {len(mbr)} bytes, expected 440")
    with open(disk, "r+b") as file:
        file.write(mbr)  # boot code only: the partition table starts at byte 446

    image = work / "image.qcow2"
    _progress("qemu-img convert to qcow2")
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(image)])
    disk.unlink()
    _progress(f"built in {time.monotonic() - started:.0f} s ({image.stat().st_size >> 20} MiB qcow2)")
    return image


def _configure_tree(tree: Path, root_uuid: str) -> None:
    """What an image build does after installing packages: fstab, bootloader config, no identity."""
    (tree / "etc/fstab").write_text(f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n")
    # The identity of a guest is made at its first boot: cloud-init installs the seed's host key,
    # systemd makes a machine-id. Keys generated while installing openssh-server must not ship.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    interfaces = tree / "etc/network/interfaces"
    if not interfaces.exists():  # cloud-init's ifupdown renderer is only chosen when this file exists
        interfaces.write_text("source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n")
    kernel = _single(tree / "boot", "vmlinuz-*")
    initrd = _single(tree / "boot", "initrd.img-*")
    extlinux = tree / "boot/extlinux"
    extlinux.mkdir(parents=True, exist_ok=True)
    (extlinux / "extlinux.conf").write_text(
        "DEFAULT debian\nPROMPT 0\nTIMEOUT 1\n\n"
        "LABEL debian\n"
        f"  LINUX /boot/{kernel.name}\n"
        f"  INITRD /boot/{initrd.name}\n"
        f"  APPEND root=UUID={root_uuid} {KERNEL_ARGS}\n"
    )


def _install_extlinux(disk: Path, layout: Layout, mountpoint: Path) -> None:
    mountpoint.mkdir()
    loop = _run(
        [
            "losetup",
            "--find",
            "--show",
            "--offset",
            str(layout.part_offset),
            "--sizelimit",
            str(layout.part_bytes),
            str(disk),
        ],
        capture=True,
    ).strip()
    try:
        _run(["mount", "-t", "ext4", loop, str(mountpoint)])
        try:
            _run(["extlinux", "--install", str(mountpoint / "boot/extlinux")])
        finally:
            _run(["umount", str(mountpoint)])
    finally:
        _run(["losetup", "--detach", loop])


def _copy_sparse(source: Path, dest: Path, offset: int) -> None:
    """Copy the data regions of `source` into `dest` at `offset`, leaving holes as holes."""
    with open(source, "rb") as src, open(dest, "r+b") as dst:
        size = os.fstat(src.fileno()).st_size
        position = 0
        while position < size:
            try:
                start = os.lseek(src.fileno(), position, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole remains
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(offset + start)
            remaining = end - start
            while remaining:
                chunk = src.read(min(remaining, 8 << 20))
                dst.write(chunk)
                remaining -= len(chunk)
            position = end


def _remove_stale_builds(cache: Path) -> None:
    """Remove what a killed build left (its folder, a mount, a loop device); we hold the lock."""
    for stale in cache.glob(".build-*"):
        _progress(f"removing an interrupted build: {stale}")
        _remove_build_dir(stale)


def _remove_build_dir(work: Path) -> None:
    mountpoint = work / "mnt"
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", str(mountpoint)], check=False)
    disk = work / "disk.raw"
    if disk.exists():
        attached = subprocess.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(disk)], capture_output=True, text=True, check=False)
        for loop in attached.stdout.split():
            subprocess.run(["losetup", "--detach", loop], check=False)
    shutil.rmtree(work, ignore_errors=True)


def _check_host() -> None:
    if os.geteuid() != 0:
        raise PermissionError("building the test cloud image needs root (mmdebstrap, losetup, mount)")
    missing = sorted({package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not MBR_BIN.exists():
        missing.append("syslinux-common")
    if missing:
        raise RuntimeError(f"missing host packages for the test cloud image: apt-get install {' '.join(missing)}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _single(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"expected one {pattern} in {folder}, found {[p.name for p in found]}")
    return found[0]


def _run(argv: Sequence[str], stdin: str | None = None, capture: bool = False) -> str:
    result = subprocess.run(list(argv), input=stdin, text=True, stdout=subprocess.PIPE if capture else None, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed with exit status {result.returncode}: {' '.join(argv)}")
    return result.stdout or ""


def _progress(message: str) -> None:
    print(f"cloud-image: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    print(ensure_cloud_image(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
