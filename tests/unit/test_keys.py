"""Key material must load where it is used: the host key in dropbear, the client key in paramiko."""

from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vnetlab.backends.keys import generate_client_key, generate_host_key, load_client_key, write_secret


def _ssh_strings(blob: bytes) -> list[bytes]:
    strings = []
    while blob:
        (length,) = struct.unpack_from(">I", blob)
        strings.append(blob[4 : 4 + length])
        blob = blob[4 + length :]
    return strings


@pytest.mark.skipif(shutil.which("dropbearkey") is None, reason="needs dropbearkey (dropbear-bin)")
def test_dropbear_reads_the_host_key_and_prints_the_pinned_public_key(tmp_path: Path) -> None:
    host = generate_host_key()
    key_file = tmp_path / "dropbear_ed25519_host_key"
    key_file.write_bytes(host.dropbear_blob)
    printed = subprocess.run(["dropbearkey", "-y", "-f", str(key_file)], capture_output=True, text=True, check=True).stdout
    public = next(line for line in printed.splitlines() if line.startswith("ssh-ed25519 "))
    assert public.split()[:2] == host.public_line.split()


def test_host_key_blob_holds_a_seed_that_derives_its_public_half() -> None:
    # dropbearkey -y only echoes the stored public half; check the private half matches it too.
    host = generate_host_key()
    name, key = _ssh_strings(host.dropbear_blob)
    assert name == b"ssh-ed25519" and len(key) == 64
    derived = Ed25519PrivateKey.from_private_bytes(key[:32]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert derived == key[32:]
    assert _ssh_strings(base64.b64decode(host.public_line.split()[1])) == [b"ssh-ed25519", key[32:]]


def test_paramiko_loads_the_client_key_and_it_matches_the_authorized_keys_line() -> None:
    client = generate_client_key("vnetlab-test lab")
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(client.private_openssh.decode()))
    key_type, data, comment = client.public_line.split(" ", 2)
    assert (key_type, data, comment) == ("ssh-ed25519", key.get_base64(), "vnetlab-test lab")


def test_each_call_makes_a_new_key() -> None:
    assert generate_client_key("a").public_line != generate_client_key("a").public_line
    assert generate_host_key().public_line != generate_host_key().public_line


def test_a_comment_cannot_break_the_authorized_keys_line() -> None:
    with pytest.raises(ValueError):
        generate_client_key("one\nssh-ed25519 AAAA injected")


def test_load_client_key_reads_what_write_secret_wrote(tmp_path: Path) -> None:
    client = generate_client_key("c")
    path = tmp_path / "id_ed25519"
    write_secret(path, client.private_openssh)
    assert load_client_key(path).get_base64() == client.public_line.split()[1]


def test_write_secret_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secret"
    old_umask = os.umask(0)
    try:
        write_secret(path, b"first")
        write_secret(path, b"second")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret"]  # no temporary file left
