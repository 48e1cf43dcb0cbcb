"""Disk images through qemu-img: what a file is, conversion into the cache, per-guest overlays.

A guest never writes its base image: it gets a qcow2 overlay whose backing file is the base, in
the lab's folder, removed with the lab.

A user's image is untrusted input read by root. A qcow2 may name other files that qemu then
opens and reads — an external data file (`qemu-img create -o data_file=/etc/shadow`), a backing
file — and qemu's format probing would open vmdk descriptors' extents or vhdx/qed/luks images
the same way. So the format is decided here from the file's magic, never by qemu's probe; every
qemu-img call names it with `-f`; and a qcow2 is accepted only when both its header (read here,
before qemu opens anything) and `qemu-img info` say it reads nothing but itself.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

from vnetlab.errors import VnetlabError

QEMU_IMG_TIMEOUT = 600.0  # s: converting a multi-GB image on a slow disk
QEMU_IMG_INFO_TIMEOUT = 30.0  # s: info reads one header
QCOW2, RAW = "qcow2", "raw"

QCOW2_MAGIC = b"QFI\xfb"
# Other formats' magic numbers at offset 0, only to name them in the refusal (each can reach other files or
# needs a key: vmdk descriptors list extents, qed and vhdx have backing files, luks needs a secret).
_OTHER_MAGIC = (
    (b"KDMV", "vmdk"), (b"COWD", "vmdk"), (b"# Disk DescriptorFile", "vmdk"), (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"), (b"QED\0", "qed"), (b"LUKS\xba\xbe", "luks"), (b"<<< ", "vdi"),
    (b"WithoutFreeSpace", "parallels"), (b"WithouFreSpacExt", "parallels"), (b"Bochs Virtual HD Image", "bochs"),
    (b"QEVM", "qcow (version 1)"), (b"#!/bin/sh\n#V2.0 Format", "cloop"),
)
_HEADER_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # magic … snapshots_offset: 72 bytes
_HEADER_V3 = struct.Struct(">QQQII")  # incompatible, compatible, autoclear features, refcount_order, header_length
# Incompatible feature bits qemu knows (docs/interop/qcow2.txt): 0 dirty, 1 corrupt, 2 external data file,
# 3 compression type, 4 extended L2 entries. Any other bit is a feature this check cannot vouch for.
_INCOMPATIBLE_KNOWN = 0b11111
_INCOMPATIBLE_CORRUPT, _INCOMPATIBLE_DATA_FILE = 1 << 1, 1 << 2
_AUTOCLEAR_DATA_FILE_RAW = 1 << 1
_EXT_END, _EXT_DATA_FILE, _EXT_ENCRYPTION = 0, 0x44415441, 0x0537BE77


class DiskError(VnetlabError):
    pass


def _qemu_img(*args: str, timeout: float = QEMU_IMG_TIMEOUT) -> str:
    try:
        done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DiskError("qemu-img not found: run `vnetlab setup` (or apt-get install qemu-utils)") from None
    except subprocess.TimeoutExpired:
        raise DiskError(f"qemu-img {args[0]} took longer than {timeout:g} s") from None
    if done.returncode != 0:
        raise DiskError(f"qemu-img {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def probe_format(path: Path) -> str:
    """"qcow2", the name of another image format, or "raw" (no known magic): read here, not by qemu."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(QCOW2_MAGIC):
        return QCOW2
    return next((name for magic, name in _OTHER_MAGIC if head.startswith(magic)), RAW)


def _header_findings(path: Path) -> list[str]:
    """What a qcow2 header says it reads besides its own file (or cannot vouch for), before qemu opens it."""
    with path.open("rb") as f:
        head = f.read(_HEADER_V2.size + _HEADER_V3.size)
        if len(head) < _HEADER_V2.size:
            return ["a qcow2 header cut short"]
        _magic, version, backing_offset, backing_size, cluster_bits, _size, crypt, *_ = _HEADER_V2.unpack_from(head)
        found = []
        if version not in (2, 3):
            return [f"qcow2 version {version} (only 2 and 3 are known)"]
        if backing_offset or backing_size:
            f.seek(backing_offset)
            name = f.read(min(backing_size, 1023)).decode(errors="replace")
            found.append(f"a backing file {name!r}")
        if crypt:
            found.append(f"encryption (method {crypt}): it needs a secret, and its header may name other files")
        extensions_at = _HEADER_V2.size
        if version == 3:
            if len(head) < _HEADER_V2.size + _HEADER_V3.size:
                return ["a qcow2 version 3 header cut short"]
            incompatible, _compatible, autoclear, _refcount_order, header_length = _HEADER_V3.unpack_from(head, _HEADER_V2.size)
            if incompatible & _INCOMPATIBLE_DATA_FILE:
                found.append("the external data file feature")
            if autoclear & _AUTOCLEAR_DATA_FILE_RAW:
                found.append("a raw external data file (data-file-raw)")
            if incompatible & _INCOMPATIBLE_CORRUPT:
                found.append("the corrupt flag")
            if incompatible & ~_INCOMPATIBLE_KNOWN:
                found.append(f"unknown incompatible features (bits {incompatible & ~_INCOMPATIBLE_KNOWN:#x})")
            extensions_at = header_length
        if not 9 <= cluster_bits <= 21:
            return found + [f"a cluster size of 2^{cluster_bits} bytes (qemu allows 2^9 to 2^21)"]
        f.seek(extensions_at)
        area = f.read(max(0, (1 << cluster_bits) - extensions_at))
    position = 0
    while position + 8 <= len(area):
        kind, length = struct.unpack_from(">II", area, position)
        if kind == _EXT_END:
            break
        data = area[position + 8 : position + 8 + length]
        if kind == _EXT_DATA_FILE:
            found.append(f"an external data file {data.decode(errors='replace')!r}")
        elif kind == _EXT_ENCRYPTION:
            found.append("a full disk encryption header")
        position += 8 + ((length + 7) & ~7)
    return found


def _info_findings(info: dict[str, Any]) -> list[str]:
    """What `qemu-img info --output=json -f qcow2` says the image reads besides its own file."""
    found = []
    if info.get("format") != QCOW2:
        found.append(f"format {info.get('format')!r} (expected qcow2)")
    for key in ("backing-filename", "full-backing-filename", "backing-filename-format"):
        if info.get(key):
            found.append(f"a backing file ({key}: {info[key]!r})")
    if info.get("encrypted"):
        found.append("encryption (encrypted: true)")
    specific = info.get("format-specific") or {}
    data = specific.get("data") or {}
    if specific.get("type") not in (None, QCOW2):
        found.append(f"format-specific.type {specific.get('type')!r}")
    if data.get("data-file"):
        found.append(f"an external data file (format-specific.data.data-file: {data['data-file']!r})")
    if data.get("data-file-raw"):
        found.append("a raw external data file (format-specific.data.data-file-raw: true)")
    if data.get("encrypt"):
        found.append("encryption (format-specific.data.encrypt)")
    if data.get("corrupt"):
        found.append("the corrupt flag (format-specific.data.corrupt: true)")
    for child in info.get("children") or []:  # qemu 8 and later: the nodes it opened; only its own file is expected
        if isinstance(child, dict) and child.get("name") != "file":
            found.append(f"a child node {child.get('name')!r}")
    return found


def outside_references(path: Path) -> list[str]:
    """Everything a qcow2 would read besides its own file (or that cannot be vouched for); empty when
    self-contained. qemu opens the file only once its header has been found clean."""
    found = _header_findings(path)
    if found:
        return found
    try:
        info = json.loads(_qemu_img("info", "--output=json", "-f", QCOW2, str(path), timeout=QEMU_IMG_INFO_TIMEOUT))
    except ValueError as exc:
        raise DiskError(f"qemu-img info gave no JSON: {exc}") from None
    return _info_findings(info if isinstance(info, dict) else {})


def convert_to_qcow2(source: Path, source_format: str, dest: Path) -> None:
    """A standalone qcow2 copy of `source` (read as `source_format`, never probed), private to root."""
    _qemu_img("convert", "-f", source_format, "-O", QCOW2, str(source), str(dest))
    dest.chmod(0o600)


def create_overlay(base: Path, dest: Path) -> None:
    """A new qcow2 at `dest` whose backing file is the qcow2 `base` (the base is never written)."""
    _qemu_img("create", "-q", "-f", QCOW2, "-F", QCOW2, "-b", str(base), str(dest))
