"""The image cache: one folder per built image, `<kind>-<hash>`, complete or absent.

A build happens in a hidden temporary folder beside its entry and is renamed into place once
everything (including info.json, written last) is there, so a reader never sees half an image and
an interrupted build leaves nothing but a hidden folder that the next build or `prune` removes.

The cache is root's: entries are built 0600 in 0711 folders, and nothing in it is ever readable by
others. libvirt's qemu user reads a guest's base disk through the guest's overlay (libvirt does not
hand backing files to it as it does the overlay), so what a lab's guests boot from is granted to
qemu's group when the lab starts (`grant_to_qemu`): 0640 root:<qemu group> below 0710 root:<qemu
group> folders, the way the lab folders are made. A warm image's disk and seed, which every guest
restored from it reads through its own overlay or shared, are granted the same way when a lab
restores from it; while a warm image is made, its guest passes through its build folder
(`open_build_to_qemu`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab.backends.keys import make_dirs
from vnetlab.errors import VnetlabError

INFO = "info.json"
LOCK = "packages.lock"
STALE_BUILD_SECONDS = 24 * 3600  # a hidden build folder this old belongs to no running build
FOLDER_MODE, FILE_MODE = 0o711, 0o600  # as built
_FOLDER_MASK = 0o711  # at most: nobody lists a folder; qemu's group (or anyone, 0711) passes through
_GRANTED_MASK = 0o640  # a file granted to qemu's group (grant_to_qemu); any other file is root's alone (0600)


class CacheError(VnetlabError):
    pass


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    info: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.info.get("kind", "?"))

    def size(self) -> int:
        """Bytes the entry takes on disk (allocated blocks: qcow2 and sparse files count as stored)."""
        return sum(p.lstat().st_blocks * 512 for p in self.path.rglob("*") if p.is_file())


def entry_path(cache: Path, kind: str, digest: str) -> Path:
    return cache / f"{kind}-{digest}"


def cached(cache: Path, kind: str, digest: str) -> CacheEntry | None:
    path = entry_path(cache, kind, digest)
    try:
        entry = CacheEntry(path, json.loads((path / INFO).read_text()))
    except (OSError, ValueError):
        return None
    make_private(cache, [path])  # an entry an older vnetlab left readable by all
    return entry


def make_private(cache: Path, entries: list[Path]) -> None:
    """The cache folder and these entries as the cache keeps them: nothing for others, at most
    group passage (folders) and group read (files, for qemu's group), only ever narrowed. Symbolic
    links are left alone: a cache entry has none, and chmod would follow them."""
    _narrow(cache, _FOLDER_MASK)
    for entry in entries:
        _narrow(entry, _FOLDER_MASK)
        for path in entry.rglob("*"):
            if not path.is_symlink():
                _narrow(path, _FOLDER_MASK if path.is_dir() else None)


def _narrow(path: Path, mask: int | None) -> None:
    """chmod to at most `mask` (None: a file's, by its group: granted to a group, or root's alone)."""
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    mask = mask if mask is not None else _GRANTED_MASK if st.st_gid != 0 else FILE_MODE
    if mode & ~mask:
        os.chmod(path, mode & mask)


def grant_to_qemu(cache: Path, files: list[Path], gid: int) -> None:
    """Let qemu's group read these files of the cache (a lab's kernels, initramfs, base disks), and
    pass through to them: files 0640 root:<gid>, their entry and the cache folder 0710 root:<gid>.
    Anything but a file of a complete entry (one with its info.json) is left alone."""
    root = cache.resolve()
    for file in files:
        try:
            entry = file.resolve().relative_to(root).parts
        except ValueError:
            continue
        if root == Path("/") or len(entry) != 2 or not (root / entry[0] / INFO).is_file():
            continue
        for path, mode in ((root, 0o710), (root / entry[0], 0o710), (file, 0o640)):
            _grant(path, mode, gid)


def open_build_to_qemu(build: Path, gid: int) -> None:
    """Let qemu's user pass through a build folder (and the cache folder) to the files libvirt hands
    it while the build boots a guest (a warm image's: its top disk, its fw_cfg file, its seed): 0710
    root:<gid>, as grant_to_qemu leaves an entry. Its files stay root's until granted once published."""
    for path in (build.parent, build):
        _grant(path, 0o710, gid)


def _grant(path: Path, mode: int, gid: int) -> None:
    """Group <gid> and `mode`; the owner is left as it is: while a guest runs, libvirt's DAC driver
    has its file owned by qemu's user (and remembers root), and refuses to start another guest on
    a file in use whose owner changed under it ("Setting different DAC user or group ... already
    in use"): two labs starting at once on one kernel."""
    st = path.stat()
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


@contextlib.contextmanager
def building(cache: Path, kind: str, digest: str) -> Iterator[Path]:
    """A fresh temporary folder (0700) to build an entry in; removed on the way out, whatever happens."""
    try:
        make_dirs(cache, FOLDER_MODE)
        make_private(cache, [])
        build = Path(tempfile.mkdtemp(prefix=f".{kind}-{digest}.", dir=cache))  # 0700
    except OSError as exc:
        raise CacheError(f"cannot write the image cache {cache}: {exc.strerror}") from exc
    try:
        yield build
    finally:
        remove_build(build)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # octal escapes such as \040
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_build(build: Path) -> None:
    """Remove a build folder, after unmounting what an interrupted mmdebstrap may have left mounted
    in its tree (proc, sys, dev): deleting through a mount would reach the host's own files."""
    if not build.exists():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for point in _mounts_under(build):
        libc.umount2(os.fsencode(point), _MNT_DETACH)
    left = _mounts_under(build)
    if left:
        raise CacheError(f"cannot remove {build}: still mounted there: {', '.join(left)} (unmount them, then `vnetlab image prune`)")
    shutil.rmtree(build, ignore_errors=True)


def publish(build: Path, cache: Path, kind: str, digest: str, info: dict[str, Any]) -> CacheEntry:
    """Write info.json (the mark of a complete entry) and rename the build into its entry."""
    info = {"kind": kind, "hash": digest, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
    (build / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (build / INFO).chmod(FILE_MODE)
    build.chmod(FOLDER_MODE)  # from mkdtemp's 0700: qemu's user passes through to the files
    make_private(cache, [build])
    target = entry_path(cache, kind, digest)
    _replace(build, target)
    return CacheEntry(target, info)


def entries(cache: Path) -> list[CacheEntry]:
    """The complete entries, oldest first."""
    found = []
    for path in sorted(cache.glob("*")) if cache.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            found.append(CacheEntry(path, json.loads((path / INFO).read_text())))
        except (OSError, ValueError):
            found.append(CacheEntry(path, {"kind": "legacy"}))  # an older vnetlab's entry, or a damaged one
    return sorted(found, key=lambda e: str(e.info.get("built", "")))


def prune(cache: Path, keep: set[Path]) -> list[Path]:
    """Remove every entry not in `keep`, and abandoned build folders; return what was removed."""
    removed = []
    for entry in entries(cache):
        if entry.path not in keep:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    now = time.time()
    for hidden in cache.glob(".*") if cache.is_dir() else []:
        if hidden.is_dir() and now - hidden.stat().st_mtime > STALE_BUILD_SECONDS:
            remove_build(hidden)
            removed.append(hidden)
    return removed


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>
_MNT_DETACH = 2  # <sys/mount.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE): nobody ever sees neither. False if unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _replace(build: Path, target: Path) -> None:
    """Rename the finished build to its entry, replacing an old entry of the same hash.

    A rebuild swaps the new entry in before the old one is deleted: a lab starting meanwhile
    finds one complete image or the other, never none."""
    if target.exists():
        if _exchange(build, target):
            shutil.rmtree(build)  # now the old entry
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.rename(target, old / target.name)
        try:
            os.rename(build, target)
        finally:
            shutil.rmtree(old)
        return
    try:
        os.rename(build, target)
    except OSError:
        # Another process published the same recipe meanwhile; its entry is just as complete.
        if not target.is_dir():
            raise
