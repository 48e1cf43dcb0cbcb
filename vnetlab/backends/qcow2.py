"""Disk images through qemu-img: what a file is, conversion into the cache, per-guest overlays.

A guest never writes its base image: it gets a qcow2 overlay whose backing file is the base, in
the lab's folder, removed with the lab.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from vnetlab.errors import VnetlabError

QEMU_IMG_TIMEOUT = 600.0  # s: converting a multi-GB image on a slow disk


class DiskError(VnetlabError):
    pass


def _qemu_img(*args: str) -> str:
    try:
        done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT, check=False)
    except FileNotFoundError:
        raise DiskError("qemu-img not found: run `vnetlab setup` (or apt-get install qemu-utils)") from None
    except subprocess.TimeoutExpired:
        raise DiskError(f"qemu-img {args[0]} took longer than {QEMU_IMG_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise DiskError(f"qemu-img {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def disk_format(path: Path) -> str:
    """The format qemu-img sees in `path` ("qcow2", "raw", …), refusing images with a backing file of their own."""
    info = json.loads(_qemu_img("info", "--output=json", str(path)))
    if info.get("backing-filename") and info.get("format") == "qcow2":
        return "qcow2+backing"
    return str(info.get("format", "unknown"))


def convert_to_qcow2(source: Path, source_format: str, dest: Path) -> None:
    """A standalone qcow2 copy of `source` (a backing chain is flattened); `source` is only read."""
    _qemu_img("convert", "-f", source_format, "-O", "qcow2", str(source), str(dest))
    dest.chmod(0o644)


def create_overlay(base: Path, dest: Path) -> None:
    """A new qcow2 at `dest` whose backing file is the qcow2 `base` (the base is never written)."""
    _qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(dest))
