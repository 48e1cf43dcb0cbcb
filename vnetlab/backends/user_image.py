"""The file image kind: a user's own disk image, imported once into the cache as a qcow2.

Importing (rather than pointing the overlay at the user's file) means the file is only ever read,
keeps its owner and mode (libvirt would otherwise relabel a backing file for qemu's user), and may
live where qemu's user cannot reach (e.g. under /root). The import is keyed by the file's path,
size, modification time and inode: a changed file is imported again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from vnetlab.backends import image_cache, qcow2
from vnetlab.backends.image import ImageError

KIND = "file"
BASE_FILE = "base.qcow2"
_MBR_SIGNATURE = b"\x55\xaa"


def import_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()).hexdigest()[:16]


def check_image_file(path: Path) -> str:
    """The file's format ("qcow2" or "raw"), or ImageError saying why it cannot be a guest's disk.

    The image is untrusted: a qcow2 that names any other file (an external data file, a backing
    file) is refused, since importing it as root would copy that file into the guest's disk."""
    if not path.exists():
        raise ImageError(f"image file {path} does not exist")
    if not path.is_file():
        raise ImageError(f"image file {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ImageError(f"image file {path} is not readable")
    try:
        fmt = qcow2.probe_format(path)
        outside = qcow2.outside_references(path) if fmt == qcow2.QCOW2 else []
    except (OSError, qcow2.DiskError) as exc:
        raise ImageError(f"image file {path}: {exc}") from None
    if outside:
        raise ImageError(
            f"image file {path} is refused: found {'; '.join(outside)}. A qcow2 that reads other files would have root "
            "copy them into the guest's disk: only self-contained qcow2 images are imported (no external data file, "
            "no backing file, no encryption); make one with `qemu-img convert -O qcow2 IN OUT` where you trust what IN points at"
        )
    if fmt == qcow2.RAW:
        with path.open("rb") as f:
            f.seek(510)
            if f.read(2) != _MBR_SIGNATURE:
                raise ImageError(f"image file {path} is neither qcow2 nor a bootable raw disk (no MBR boot signature)")
    elif fmt != qcow2.QCOW2:
        raise ImageError(f"image file {path} is {fmt}, expected a qcow2 or raw disk image (convert it: `qemu-img convert -O qcow2 IN OUT`)")
    return fmt


def import_image(path: Path, cache: Path, say: Callable[[str], None]) -> Path:
    """The cached qcow2 copy of `path`, made first if the file is new or changed."""
    fmt = check_image_file(path)
    digest = import_key(path)
    entry = image_cache.cached(cache, KIND, digest)
    if entry is not None:
        return entry.path / BASE_FILE
    started = time.monotonic()
    say(f"importing {path} ({fmt}) into the image cache")
    with image_cache.building(cache, KIND, digest) as build:
        try:
            qcow2.convert_to_qcow2(path, fmt, build / BASE_FILE)
        except qcow2.DiskError as exc:
            raise ImageError(f"cannot import {path}: {exc}") from None
        entry = image_cache.publish(build, cache, KIND, digest, {"source": str(path.resolve()), "format": fmt, "seconds": round(time.monotonic() - started, 1)})
    return entry.path / BASE_FILE
