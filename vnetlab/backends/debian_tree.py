"""A Debian tree fetched by mmdebstrap into vnetlab's cache: where every guest file comes from.

Guests never copy anything out of the host's installed packages, so an image builds the same on
any host that has mmdebstrap (Debian 12/13, Ubuntu) and reaches a Debian mirror. The versions of
the packages that went into a tree are recorded as a lock (one `name version arch` line each).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vnetlab import procfs
from vnetlab.errors import VnetlabError

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "VNETLAB_DEBIAN_MIRROR"  # a closer mirror or an apt proxy, e.g. http://apt-cacher:3142/debian
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_OUTPUT_KEEP = 40  # lines of mmdebstrap's output kept for an error message


class TreeError(VnetlabError):
    """mmdebstrap could not make the tree; the message carries apt's own words."""


@dataclass(frozen=True)
class Tree:
    root: Path
    lock: tuple[tuple[str, str, str], ...]  # (package, version, architecture), sorted
    seconds: float

    def lock_text(self) -> str:
        return "".join(f"{name} {version} {arch}\n" for name, version, arch in self.lock)

    def version(self, package: str) -> str | None:
        return next((v for n, v, _a in self.lock if n == package), None)


def mirror() -> str:
    return os.environ.get(MIRROR_ENV, "").strip() or DEFAULT_MIRROR


def check_packages(packages: Sequence[str]) -> list[str]:
    """Names that cannot be Debian package names (checked before any download)."""
    return [p for p in packages if not PACKAGE_NAME.fullmatch(p)]


def fetch_tree(
    dest: Path,
    packages: Sequence[str],
    *,
    variant: str,
    say: Callable[[str], None],
    dpkg_excludes: Sequence[str] = (),
) -> Tree:
    """Run mmdebstrap for `packages` into the empty folder `dest` and read back the lock.

    `variant` "extract" only unpacks (no maintainer scripts, a few seconds: enough to take files
    out); "minbase" installs a bootable system. apt's downloaded .debs name the exact versions
    used; they are read for the lock and then deleted.
    """
    bad = check_packages(packages)
    if bad:
        raise TreeError(f"not a Debian package name: {', '.join(bad)}")
    if shutil.which("mmdebstrap") is None:
        raise TreeError("mmdebstrap is not installed: run `vnetlab setup` (or apt-get install mmdebstrap)")
    command = [
        "mmdebstrap",
        f"--variant={variant}",
        "--include=" + ",".join(packages),
        "--skip=cleanup/apt/cache",
        "--aptopt=Acquire::Retries 3",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in dpkg_excludes),
        SUITE,
        str(dest),
        mirror(),
    ]
    started = time.monotonic()
    say(f"mmdebstrap {variant}: {len(packages)} packages from {mirror()} ({SUITE})")
    output: list[str] = []
    # In a process group of its own, so that an interrupted run can be ended with all it started.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.rstrip()
                output = (output + [line])[-_OUTPUT_KEEP:]
                if line.startswith(("I: ", "E: ")):
                    say(line[3:])
        except BaseException:
            _stop(proc)  # stopped (Ctrl-C, an error in `say`)
            raise
        returncode = proc.wait()
    if returncode != 0:
        errors = [
            line for line in output
            if line.startswith(("E:", "Err:")) and "apt-get -o" not in line and "failed to run" not in line
        ] or output[-10:]
        raise TreeError(f"mmdebstrap failed (exit {returncode}):\n" + "\n".join(errors))
    archives = dest / "var/cache/apt/archives"
    lock = tuple(sorted(_lock_entry(deb.name) for deb in archives.glob("*.deb")))
    shutil.rmtree(archives, ignore_errors=True)
    archives.mkdir(parents=True, exist_ok=True)
    return Tree(dest, lock, time.monotonic() - started)


def _stop(proc: subprocess.Popen, group_grace: float = 10.0) -> None:
    """End an interrupted mmdebstrap: SIGTERM, on which it unmounts what it mounted, then whatever
    of its process group outlives it. mmdebstrap 1.5 (Debian 13) exits with the processes that
    unpack packages still writing into the tree for a moment, and the tree's removal raced them:
    an interrupted build left empty folders in the cache (mmdebstrap 1.3 of Debian 12 did not)."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + group_grace
    while procfs.group_alive(proc.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


def _lock_entry(filename: str) -> tuple[str, str, str]:
    """'busybox-static_1%3a1.35.0-4_amd64.deb' → ('busybox-static', '1:1.35.0-4', 'amd64')."""
    name, version, arch = filename.removesuffix(".deb").split("_")
    return name, version.replace("%3a", ":"), arch


def in_tree(root: Path, path: str | Path) -> Path:
    """`path` of the tree as a host path, following symlinks the way the guest would (an absolute
    target stays inside the tree), so nothing of the host is ever read by mistake."""
    current = root
    parts = list(Path("/", path).relative_to("/").parts)
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise TreeError(f"too many symlinks resolving {path} in the tree")
            target = Path(os.readlink(candidate))
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
            current = root if target.is_absolute() else current
            continue
        current = candidate
    return current


def find_in_tree(root: Path, path: str) -> str | None:
    """`path`, or its merged-/usr twin (/bin/ping ↔ /usr/bin/ping), whichever the tree has."""
    twin = path.removeprefix("/usr") if path.startswith("/usr/") else "/usr" + path
    return next((p for p in (path, twin) if in_tree(root, p).is_file()), None)


_LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib")


def tree_libraries(root: Path, binary: str) -> list[str]:
    """The guest paths of the dynamic loader and every shared library `binary` needs, transitively,
    read from the ELF headers (PT_INTERP, DT_NEEDED) and found in the tree's library folders.

    Nothing is run: this works on any host, whatever its own libc."""
    wanted: list[str] = []
    queue = [binary]
    while queue:
        current = queue.pop()
        interpreter, needed = elf_dependencies(in_tree(root, current).read_bytes())
        if interpreter and interpreter not in wanted:
            wanted.append(interpreter)
        for soname in needed:
            found = next((f"{d}/{soname}" for d in _LIBRARY_DIRS if in_tree(root, f"{d}/{soname}").is_file()), None)
            if found is None:
                raise TreeError(f"{binary} needs {soname}, which is not in the tree")
            if found not in wanted:
                wanted.append(found)
                queue.append(found)
    return sorted(wanted)


def elf_dependencies(elf: bytes) -> tuple[str | None, list[str]]:
    """(PT_INTERP, DT_NEEDED names) of a little-endian ELF64 file; (None, []) for a static binary."""
    if not elf.startswith(b"\x7fELF\x02\x01"):
        raise TreeError("not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    loads: list[tuple[int, int, int]] = []
    interpreter, dynamic = None, None
    for index in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if p_type == 1:  # PT_LOAD
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
        elif p_type == 3:  # PT_INTERP
            interpreter = elf[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return interpreter, []
    strtab, needed_offsets = 0, []
    for position in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", elf, position)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            needed_offsets.append(value)
        elif tag == 5:  # DT_STRTAB (an address: mapped to a file offset through PT_LOAD)
            strtab = next((off + value - vaddr for vaddr, off, size in loads if vaddr <= value < vaddr + size), 0)
    names = []
    for offset in needed_offsets:
        end = elf.index(b"\0", strtab + offset)
        names.append(elf[strtab + offset : end].decode())
    return interpreter, names
