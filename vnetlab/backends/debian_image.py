"""The debian image kind: a Debian 12 root disk (systemd, OpenSSH, the usual network tools).

It boots like the tiny guest — the same PVH kernel, the same initramfs, whose second init
(/sbin/vnl-root) sets up the NICs, mounts the guest's qcow2 overlay of this disk and switches to
systemd — so no bootloader, no initramfs-tools and no disk scan cost boot time, and the kernel's
modules on the disk are those of the kernel that boots. The disk is made without mounting
anything: mmdebstrap fills a folder, `mkfs.ext4 -d` turns it into a file system, qemu-img into qcow2.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vnetlab.backends import debian_tree, image_cache, qcow2
from vnetlab.backends.debian_tree import TreeError, in_tree
from vnetlab.backends.image import DEFAULT_CACHE, GuestImage, ImageError, depmod, hash_sources, recipe_label, recipe_lines
from vnetlab.paths import RECIPE_DIR

KIND = "debian"
MIN_MEMORY = 256  # MiB: systemd, journald and sshd under 256 MiB get killed by the OOM killer
DISK_SIZE = "4G"  # virtual size of the root disk; qcow2 stores only what is written
ROOT_FILE = "root.qcow2"
RECIPE = RECIPE_DIR / "debian"
# Left out of the disk: documentation, manual pages and translations (a third of a minbase tree).
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_NOT_COPIED = ("packages.txt", "masked.txt")


@dataclass(frozen=True)
class DiskImage:
    disk: Path  # the base qcow2, never written by a guest
    digest: str
    packages: tuple[str, ...]  # the extra packages on top of the recipe's


def base_packages() -> list[str]:
    return _recipe_words("packages.txt")


def image_hash(tiny: GuestImage, extra: Sequence[str]) -> str:
    """Recipe files, this builder, the tiny image it boots with (its kernel and modules) and the extra packages."""
    sources = {recipe_label(path): path for path in sorted(p for p in RECIPE.rglob("*") if p.is_file())}
    sources["vnetlab/debian_image.py"] = Path(__file__)
    return hash_sources(sources, (tiny.recipe_hash, debian_tree.SUITE, sorted(set(extra))))


def cached_disk(tiny: GuestImage, extra: Sequence[str], cache: Path = DEFAULT_CACHE) -> DiskImage | None:
    digest = image_hash(tiny, extra)
    entry = image_cache.cached(cache, KIND, digest)
    return DiskImage(entry.path / ROOT_FILE, digest, tuple(sorted(set(extra)))) if entry else None


def ensure_disk(
    tiny: GuestImage,
    extra: Sequence[str] = (),
    cache: Path = DEFAULT_CACHE,
    *,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DiskImage:
    """The cached debian disk for this recipe and extra package set, built first if missing."""
    say = progress or (lambda _message: None)
    found = None if rebuild else cached_disk(tiny, extra, cache)
    if found is not None:
        return found
    packages = tuple(sorted(set(extra)))
    digest = image_hash(tiny, packages)
    started = time.monotonic()
    say(f"building guest image {KIND}-{digest}" + (f" with {', '.join(packages)}" if packages else ""))
    try:
        with image_cache.building(cache, KIND, digest) as build:
            tree = debian_tree.fetch_tree(
                build / "tree", [*base_packages(), *packages], variant="minbase", say=say, dpkg_excludes=DPKG_EXCLUDES
            )
            _install_modules(tree.root, tiny, build, say)
            _apply_recipe(tree.root)
            raw = build / "root.raw"
            say(f"making the ext4 file system ({DISK_SIZE} virtual) from the tree")
            _mkfs(tree.root, raw)
            shutil.rmtree(tree.root)
            say("converting it to qcow2")
            qcow2.convert_to_qcow2(raw, "raw", build / ROOT_FILE)
            raw.unlink()
            (build / image_cache.LOCK).write_text(tree.lock_text())
            (build / image_cache.LOCK).chmod(image_cache.FILE_MODE)
            seconds = time.monotonic() - started
            entry = image_cache.publish(build, cache, KIND, digest, {
                "kernel_version": tiny.kernel_version, "tiny": tiny.recipe_hash, "seconds": round(seconds, 1),
                "suite": debian_tree.SUITE, "packages": list(packages),
            })
    except (TreeError, qcow2.DiskError) as exc:
        raise ImageError(f"building the {KIND} image failed: {exc}") from None
    except OSError as exc:
        raise ImageError(f"building the {KIND} image failed: {exc}") from exc
    say(f"{KIND} image ready in {seconds:.1f} s: {entry.path}")
    return DiskImage(entry.path / ROOT_FILE, digest, packages)


def _recipe_words(name: str) -> list[str]:
    """The one word per line of images/debian/NAME (packages, masked units)."""
    return [words[0] for words in recipe_lines(f"debian/{name}", columns=1)]


def _install_modules(root: Path, tiny: GuestImage, build: Path, say: Callable[[str], None]) -> None:
    """The booting kernel's modules onto the disk (from the tiny image), indexed by depmod."""
    say(f"adding the modules of kernel {tiny.kernel_version}")
    unpacked = build / "modules"
    with tarfile.open(tiny.kernel_modules) as archive:
        archive.extractall(unpacked, filter="tar")
    target = in_tree(root, "/lib/modules")
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(unpacked / "lib/modules" / tiny.kernel_version, target / tiny.kernel_version)
    shutil.rmtree(unpacked)
    depmod(root, tiny.kernel_version)


# The initramfs's shell functions, also on the disk: a restored guest's identity steps run there
# (images/debian/usr/local/lib/vnetlab/warm).
GUEST_FUNCTIONS = (RECIPE_DIR / "guest/lib/vnetlab/boot.sh", "/usr/local/lib/vnetlab/boot.sh")


def _apply_recipe(root: Path) -> None:
    """The recipe's files, the readiness and warm-start units enabled, the boot-time-only units
    masked, and no shared SSH host keys (each guest gets its own from the initramfs, or a restored
    one from its identity)."""
    for source in sorted(p for p in RECIPE.rglob("*") if p.is_file() and p.name not in _NOT_COPIED):
        relative = source.relative_to(RECIPE).as_posix()
        dest = in_tree(root, "/" + relative)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
        dest.chmod(0o755 if source.stat().st_mode & stat.S_IXUSR else 0o644)
    units = in_tree(root, "/etc/systemd/system")
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("vnetlab-ready.service", "vnetlab-warm.service"):
        _symlink(f"/etc/systemd/system/{unit}", wants / unit)
    source, dest = GUEST_FUNCTIONS
    in_tree(root, dest).write_bytes(source.read_bytes())
    in_tree(root, dest).chmod(0o644)
    for unit in _recipe_words("masked.txt"):
        _symlink("/dev/null", units / unit)
    for key in in_tree(root, "/etc/ssh").glob("ssh_host_*"):
        key.unlink()


def _symlink(target: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def _mkfs(tree: Path, raw: Path) -> None:
    command = ["mkfs.ext4", "-q", "-F", "-L", "vnetlab-root", "-E", "root_owner=0:0", "-d", str(tree), str(raw), DISK_SIZE]
    try:
        subprocess.run(command, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise ImageError("mkfs.ext4 not found: run `vnetlab setup` (or apt-get install e2fsprogs)") from None
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"mkfs.ext4 -d failed: {exc.stderr.strip()}") from None
