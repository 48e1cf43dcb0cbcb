"""The NoCloud seed: what cloud-init will read, field by field, and the ISO it reads it from.

The documents are parsed back with yaml (what cloud-init does), and the ISO is read back with
pycdlib through each of its three name spaces: cloud-init mounts it with the kernel's iso9660
driver, which shows the Rock Ridge names (or Joliet, without Rock Ridge).
"""

from __future__ import annotations

import dataclasses
import io
import stat
from pathlib import Path

import pycdlib
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from vnetlab.backends.cloud_seed import CloudSeed, instance_id, meta_data, network_config, user_data, write_seed_iso
from vnetlab.backends.keys import generate_client_key

MGMT_MAC = "52:54:00:99:00:02"
DATA_NICS = (("52:54:00:99:01:02", "eth1"), ("52:54:00:99:02:02", "uplink-b"))


@pytest.fixture(scope="module")
def keys() -> tuple[str, str, str]:
    client = generate_client_key("vnetlab lab 'quoted': # not a comment")
    host = Ed25519PrivateKey.generate()
    private = host.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = host.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return client.public_line, private, public


@pytest.fixture
def seed(keys: tuple[str, str, str]) -> CloudSeed:
    authorized, private, public = keys
    return CloudSeed("vm-a1", authorized, private, public, MGMT_MAC, "10.99.0.2/24", DATA_NICS)


def _cloud_config(seed: CloudSeed) -> dict:
    text = user_data(seed)
    assert text.startswith("#cloud-config\n")  # cloud-init picks the handler by this first line
    return yaml.safe_load(text)


def test_user_data_logs_root_in_by_key_only(seed: CloudSeed) -> None:
    config = _cloud_config(seed)
    assert config["hostname"] == "vm-a1"
    assert config["preserve_hostname"] is False
    assert config["manage_etc_hosts"] is True
    assert config["disable_root"] is False
    assert config["ssh_pwauth"] is False
    assert config["users"] == [{"name": "root", "lock_passwd": True, "ssh_authorized_keys": [seed.authorized_key]}]


def test_user_data_installs_the_pinned_host_key_and_generates_none(seed: CloudSeed) -> None:
    config = _cloud_config(seed)
    assert config["ssh_deletekeys"] is True
    assert config["ssh_keys"] == {"ed25519_private": seed.host_key_private, "ed25519_public": seed.host_key_public}
    assert config["ssh_keys"]["ed25519_private"].endswith("-----END OPENSSH PRIVATE KEY-----\n")
    assert config["ssh_genkeytypes"] == ["ed25519"]  # that file exists already, so nothing is generated
    assert config["ssh"] == {"emit_keys_to_console": False}


def test_user_data_switches_off_slow_first_boot_work(seed: CloudSeed) -> None:
    config = _cloud_config(seed)
    assert config["package_update"] is False
    assert config["package_upgrade"] is False
    assert config["package_reboot_if_required"] is False
    assert config["locale"] == "false"  # a string (the schema's type) that cc_locale reads as false
    assert config["grub_dpkg"] == {"enabled": False}
    expected = {
        "hostname", "preserve_hostname", "manage_etc_hosts", "disable_root", "ssh_pwauth", "users", "ssh_deletekeys",
        "ssh_keys", "ssh_genkeytypes", "ssh", "package_update", "package_upgrade", "package_reboot_if_required",
        "locale", "grub_dpkg",
    }  # fmt: skip
    assert set(config) == expected


def test_a_private_key_without_final_newline_gets_one(seed: CloudSeed) -> None:
    trimmed = dataclasses.replace(seed, host_key_private=seed.host_key_private.rstrip("\n"))
    assert _cloud_config(trimmed)["ssh_keys"]["ed25519_private"] == seed.host_key_private


def test_meta_data_names_the_instance(seed: CloudSeed) -> None:
    meta = yaml.safe_load(meta_data(seed))
    assert meta == {"instance-id": instance_id(seed), "local-hostname": "vm-a1"}
    assert meta["instance-id"].startswith("vm-a1-")
    assert len(meta["instance-id"]) == len("vm-a1-") + 16


def test_instance_id_is_stable_for_a_seed_and_new_for_a_new_lab(seed: CloudSeed, keys: tuple[str, str, str]) -> None:
    assert instance_id(seed) == instance_id(dataclasses.replace(seed))
    other_host = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    changes = [
        {"host_key_public": other_host},
        {"authorized_key": generate_client_key("other").public_line},
        {"mgmt_cidr": "10.99.0.3/24"},
        {"mgmt_mac": "52:54:00:99:00:03"},
        {"nics": DATA_NICS[:1]},
        {"hostname": "vm-b"},
    ]
    ids = {instance_id(dataclasses.replace(seed, **change)) for change in changes}
    assert instance_id(seed) not in ids and len(ids) == len(changes)


def test_network_config_renames_every_nic_by_mac_and_addresses_only_mgmt0(seed: CloudSeed) -> None:
    config = yaml.safe_load(network_config(seed))
    assert config == {
        "version": 2,
        "ethernets": {
            "mgmt0": {"match": {"macaddress": MGMT_MAC}, "set-name": "mgmt0", "dhcp4": False, "addresses": ["10.99.0.2/24"]},
            "eth1": {"match": {"macaddress": "52:54:00:99:01:02"}, "set-name": "eth1", "dhcp4": False},
            "uplink-b": {"match": {"macaddress": "52:54:00:99:02:02"}, "set-name": "uplink-b", "dhcp4": False},
        },
    }


def test_macs_are_written_lowercase_and_a_netmask_becomes_a_prefix(seed: CloudSeed) -> None:
    upper = dataclasses.replace(seed, mgmt_mac=MGMT_MAC.upper(), mgmt_cidr="10.99.0.2/255.255.255.0", nics=(("52:54:00:AB:CD:EF", "eth1"),))
    mgmt = yaml.safe_load(network_config(upper))["ethernets"]
    assert mgmt["mgmt0"]["match"]["macaddress"] == MGMT_MAC
    assert mgmt["mgmt0"]["addresses"] == ["10.99.0.2/24"]
    assert mgmt["eth1"]["match"]["macaddress"] == "52:54:00:ab:cd:ef"


def test_no_data_nics_and_an_ipv6_management_address(seed: CloudSeed) -> None:
    config = yaml.safe_load(network_config(dataclasses.replace(seed, nics=(), mgmt_cidr="fd00:99::2/64")))
    assert list(config["ethernets"]) == ["mgmt0"]
    assert config["ethernets"]["mgmt0"]["addresses"] == ["fd00:99::2/64"]


def _read(iso: pycdlib.PyCdlib, **path: str) -> str:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue().decode()


def test_the_iso_holds_the_three_documents_under_every_name(tmp_path: Path, seed: CloudSeed) -> None:
    dest = tmp_path / "seed.iso"
    write_seed_iso(dest, seed)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # the guest's private host key is inside
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # no temporary file left
    expected = {"user-data": user_data(seed), "meta-data": meta_data(seed), "network-config": network_config(seed)}
    short = {"user-data": "/USERDATA.;1", "meta-data": "/METADATA.;1", "network-config": "/NETWORKC.;1"}
    iso = pycdlib.PyCdlib()
    iso.open(str(dest))
    try:
        assert iso.pvd.volume_identifier.decode().rstrip() == "cidata"
        assert iso.has_joliet() and iso.has_rock_ridge()
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == "cidata"
        rock_ridge_names = {child.rock_ridge.name().decode() for child in iso.list_children(rr_path="/") if child.rock_ridge and child.is_file()}
        joliet_names = {child.file_identifier().decode("utf-16-be") for child in iso.list_children(joliet_path="/") if child.is_file()}
        assert rock_ridge_names == joliet_names == set(expected)
        for name, text in expected.items():
            assert _read(iso, rr_path=f"/{name}") == text
            assert _read(iso, joliet_path=f"/{name}") == text
            assert _read(iso, iso_path=short[name]) == text
    finally:
        iso.close()


def test_writing_again_replaces_the_iso(tmp_path: Path, seed: CloudSeed) -> None:
    dest = tmp_path / "seed.iso"
    write_seed_iso(dest, seed)
    renamed = dataclasses.replace(seed, hostname="vm-b")
    write_seed_iso(dest, renamed)
    iso = pycdlib.PyCdlib()
    iso.open(str(dest))
    try:
        assert _read(iso, rr_path="/meta-data") == meta_data(renamed)
    finally:
        iso.close()
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]


BAD = [
    ("hostname", "", "hostname"),
    ("hostname", "VM1", "hostname"),
    ("hostname", "-vm", "hostname"),
    ("hostname", "vm-", "hostname"),
    ("hostname", "vm_1", "hostname"),
    ("hostname", "vm.lab", "hostname"),
    ("hostname", "a" * 64, "hostname"),
    ("hostname", "vm\nruncmd: [reboot]", "hostname"),
    ("mgmt_mac", "", "MAC"),
    ("mgmt_mac", "52:54:00:99:00", "MAC"),
    ("mgmt_mac", "52-54-00-99-00-02", "MAC"),
    ("mgmt_mac", "52:54:00:99:00:0g", "MAC"),
    ("mgmt_mac", "01:00:5e:00:00:01", "multicast"),
    ("mgmt_cidr", "10.99.0.2", "prefix length"),
    ("mgmt_cidr", "10.99.0.2/33", "mgmt_cidr"),
    ("mgmt_cidr", "10.99.0.300/24", "mgmt_cidr"),
    ("mgmt_cidr", "10.99.0.0/24", "network or broadcast"),
    ("mgmt_cidr", "10.99.0.255/24", "network or broadcast"),
    ("mgmt_cidr", "127.0.0.2/8", "unicast"),
    ("mgmt_cidr", "mgmt/24", "mgmt_cidr"),
    ("nics", (("52:54:00:99:01:02", "Eth1"),), "interface name"),
    ("nics", (("52:54:00:99:01:02", "1eth"),), "interface name"),
    ("nics", (("52:54:00:99:01:02", "eth 1"),), "interface name"),
    ("nics", (("52:54:00:99:01:02", "eth/1"),), "interface name"),
    ("nics", (("52:54:00:99:01:02", "a" * 16),), "interface name"),
    ("nics", (("52:54:00:99:01:02", ""),), "interface name"),
    ("nics", (("52:54:00:99:01:02", "mgmt0"),), "reserved"),
    ("nics", (("52:54:00:99:01:02", "lo"),), "reserved"),
    ("nics", (("52:54:00:99:01:02", "eth1"), ("52:54:00:99:01:03", "eth1")), "used twice"),
    ("nics", (("52:54:00:99:01:02", "eth1"), ("52:54:00:99:01:02", "eth2")), "more than one NIC"),
    ("nics", ((MGMT_MAC, "eth1"),), "more than one NIC"),
    ("nics", (("52:54:00:99:01:02",),), "pair"),
    ("nics", [("52:54:00:99:01:02", "eth1")], "tuple"),
    ("nics", (("zz:54:00:99:01:02", "eth1"),), "MAC"),
    ("authorized_key", "", "authorized_key"),
    ("authorized_key", "not a key", "authorized_key"),
    ("authorized_key", "ssh-ed25519 AAAA lab\nssh-ed25519 BBBB intruder", "authorized_key"),
    ("host_key_public", "ssh-rsa AAAAB3NzaC1yc2E", "host_key_public"),
    ("host_key_public", "", "host_key_public"),
    ("host_key_private", "ssh-ed25519 AAAA", "host_key_private"),
    ("host_key_private", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "host_key_private"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v!r}"[:60] for f, v, _ in BAD])
def test_bad_input_is_refused_with_a_clear_message(tmp_path: Path, seed: CloudSeed, field: str, value: object, message: str) -> None:
    bad = dataclasses.replace(seed, **{field: value})
    for render in (user_data, meta_data, network_config):
        with pytest.raises(ValueError, match=message):
            render(bad)
    with pytest.raises(ValueError, match=message):
        write_seed_iso(tmp_path / "seed.iso", bad)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_the_seed_is_frozen(seed: CloudSeed) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        seed.hostname = "other"  # type: ignore[misc]


def test_the_warm_seed_writes_the_warm_start_into_the_guest_and_starts_it(seed: CloudSeed) -> None:
    """A cloud image's warm boot (run/warm.py): the usual first boot, plus the agent that waits for each
    restored guest's identity, boot.sh's functions, its unit and sshd's drop-in; no address anywhere."""
    from vnetlab.backends.cloud_seed import network_config, warm_recipe_hash, warm_user_data
    from vnetlab.paths import RECIPE_DIR

    text = warm_user_data(seed)
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    files = {f["path"]: f for f in config["write_files"]}
    assert sorted(files) == [
        "/etc/systemd/system/ssh.service.d/vnetlab.conf", "/etc/systemd/system/vnetlab-warm.service",
        "/usr/local/lib/vnetlab/boot.sh", "/usr/local/lib/vnetlab/warm",
    ]
    assert files["/usr/local/lib/vnetlab/boot.sh"]["content"] == (RECIPE_DIR / "guest/lib/vnetlab/boot.sh").read_text()
    assert files["/usr/local/lib/vnetlab/warm"]["permissions"] == "0755" and files["/usr/local/lib/vnetlab/boot.sh"]["permissions"] == "0644"
    assert config["runcmd"] == [["systemctl", "daemon-reload"], ["systemctl", "start", "--no-block", "vnetlab-warm.service"]]
    assert config["ssh_keys"]["ed25519_public"] == seed.host_key_public  # otherwise the first boot's own
    network = yaml.safe_load(network_config(seed, addressed=False))
    assert all("addresses" not in nic for nic in network["ethernets"].values()), network
    assert len(warm_recipe_hash()) == 16
