"""SSH key material: the client key vnetlab logs in with, and a host key per guest.

Host keys are made here rather than in the guest so that each guest's identity is known before it
boots: the first connection is already verified against a pinned key (no trust on first use), and
no slow key generation runs on an emulated CPU.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from vnetlab.lazy import LazyModule

paramiko = LazyModule("paramiko")  # imported at the first SSH use, or while the guests boot (vnetlab.lazy)


@dataclass(frozen=True)
class ClientKey:
    private_openssh: bytes  # OpenSSH-format PEM, as paramiko and ssh(1) read it
    public_line: str  # "ssh-ed25519 AAAA... comment" for authorized_keys


@dataclass(frozen=True)
class HostKey:
    dropbear_blob: bytes  # dropbear's ed25519 key file: string "ssh-ed25519", string priv32 || pub32
    public_line: str  # "ssh-ed25519 AAAA..." to pin
    openssh_private: bytes = b""  # the same key as OpenSSH's sshd and cloud-init read it


def generate_client_key(comment: str) -> ClientKey:
    """A new ed25519 client key pair; `comment` ends the authorized_keys line."""
    if "\n" in comment or "\r" in comment:
        raise ValueError(f"key comment must be one line: {comment!r}")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    return ClientKey(private, f"{_public_line(key)} {comment}".rstrip())


def generate_host_key() -> HostKey:
    """A new ed25519 host key, in dropbear's file format (loaded with -r) and in OpenSSH's."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    openssh = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    return HostKey(_ssh_string(b"ssh-ed25519") + _ssh_string(seed + public), _public_line(key), openssh)


def load_client_key(path: Path) -> paramiko.PKey:
    """The unencrypted private key at `path`, whatever its type."""
    return paramiko.PKey.from_path(path)


def write_secret(path: Path, data: bytes) -> None:
    """Write `data` to `path` so no other user can read it at any moment.

    Missing parent folders are created 0700; the file is written 0600 under a temporary name in
    the same folder and renamed into place, so readers never see a partial file.
    """
    make_dirs(path.parent, 0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _public_line(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def make_dirs(path: Path, mode: int) -> None:
    """Create `path` and its missing parents with exactly `mode`, whatever the umask."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        folder.chmod(mode)
