"""Private files: written whole, 0600 whatever the umask, and (atomic) never seen half-written.

Lab folders, run folders and exercise state hold keys, captures and students' work: nobody but
root reads them, and a file a crash interrupts is either the old one or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, *, atomic: bool = False) -> None:
    """Write `data` to `path` (mode 0600). With `atomic`, through a temporary file fsync'd and
    renamed over it, so a reader (or a process killed mid-write) sees the old or the new content."""
    target = path.with_name(path.name + ".tmp") if atomic else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if atomic:
            os.fsync(fd)
    finally:
        os.close(fd)
    if atomic:
        os.replace(target, path)
