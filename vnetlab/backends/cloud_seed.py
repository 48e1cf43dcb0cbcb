"""NoCloud seed ISOs: how vnetlab configures a stock cloud image without changing it.

cloud-init's NoCloud data source finds a file system labelled `cidata` and reads `user-data`,
`meta-data` and `network-config` from its root. The ISO is written with pycdlib (no external
tool), with Joliet and Rock Ridge so the lowercase names are what the guest's mount sees.

What the seed does in the guest, and why:
- root logs in with the lab's client key only (no password, no other user is created);
- the guest's SSH host key is the one vnetlab made and pinned, so the very first connection is
  verified (no trust on first use) and no key is generated on an emulated CPU;
- the management NIC, found by MAC, is renamed mgmt0 and given its static address; data NICs
  are renamed by MAC and left unaddressed: vnetlab addresses them over SSH later — except those
  that ask their bridge's DHCP server, which the guest's own network configuration does at boot;
- work that only slows a first boot under TCG is switched off (package updates, locale).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import yaml

from vnetlab.backends.image import hash_sources
from vnetlab.backends.keys import write_secret
from vnetlab.paths import RECIPE_DIR

VOLUME_ID = "cidata"  # the label cloud-init's NoCloud data source looks for
MGMT_NAME = "mgmt0"
# (name in the guest, ISO9660 level-1 name): the 8.3 name is only for readers without Joliet/Rock Ridge.
SEED_FILES = (("user-data", "USERDATA.;1"), ("meta-data", "METADATA.;1"), ("network-config", "NETWORKC.;1"))

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # one RFC 1123 label
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[a-z][a-z0-9_-]{0,14}")  # IFNAMSIZ - 1; nothing ifupdown or udev rules would misread
_RESERVED_NAMES = {"lo", MGMT_NAME}
_NO_FOLDING = 1 << 16  # keep each key on one line, as an operator reading the seed expects
_KEY_LINE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?")


@dataclass(frozen=True)
class CloudSeed:
    """Everything one guest needs at first boot.

    nics: (MAC, interface name) of each data NIC. mgmt_cidr: the management address with its
    prefix length, e.g. "10.99.0.2/24" (no gateway: management traffic stays on its subnet).
    dhcp: the names of the data NICs that ask for their IPv4 address by DHCP.
    """

    hostname: str
    authorized_key: str
    host_key_private: str
    host_key_public: str
    mgmt_mac: str
    mgmt_cidr: str
    nics: tuple[tuple[str, str], ...] = ()
    dhcp: tuple[str, ...] = ()


def user_data(seed: CloudSeed) -> str:
    """The #cloud-config document: root login by key, the pinned host key, a fast first boot."""
    return "#cloud-config\n" + yaml.safe_dump(_cloud_config(seed), sort_keys=False, default_flow_style=False, width=_NO_FOLDING)


def _cloud_config(seed: CloudSeed) -> dict[str, object]:
    _validate(seed)
    return {
        "hostname": seed.hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": True,  # the hostname resolves without DNS (there is none in a lab)
        "disable_root": False,
        "ssh_pwauth": False,
        "users": [{"name": "root", "lock_passwd": True, "ssh_authorized_keys": [seed.authorized_key.strip()]}],
        "ssh_deletekeys": True,  # host keys baked into an image must not survive
        "ssh_keys": {"ed25519_private": _with_newline(seed.host_key_private), "ed25519_public": seed.host_key_public.strip()},
        # Given ssh_keys, cloud-init generates nothing; were it to, the ed25519 file already exists and
        # is kept. (An empty list would do the same, but the schema wants one item, and schema errors
        # make newer cloud-init report a degraded status.)
        "ssh_genkeytypes": ["ed25519"],
        "ssh": {"emit_keys_to_console": False},  # vnetlab already knows the key; ~1 s under TCG
        "package_update": False,
        "package_upgrade": False,
        "package_reboot_if_required": False,
        # cc_locale skips when the value reads as false (the schema wants a string): generating a
        # locale costs seconds under TCG and a minimal image has no locales package to do it.
        "locale": "false",
        "grub_dpkg": {"enabled": False},  # only records grub's install device for debconf; ~1.5 s under TCG
    }


def meta_data(seed: CloudSeed) -> str:
    """instance-id and local-hostname; a new seed is a new instance, so cloud-init runs again."""
    _validate(seed)
    return yaml.safe_dump({"instance-id": instance_id(seed), "local-hostname": seed.hostname}, sort_keys=False)


def network_config(seed: CloudSeed, *, addressed: bool = True) -> str:
    """Network config version 2: every NIC matched by MAC and renamed; mgmt0 addressed and the DHCP
    NICs asking (neither with `addressed` false: a warm image's guest, whose NICs take their
    addresses once restored)."""
    _validate(seed)
    ethernets: dict[str, dict[str, object]] = {
        MGMT_NAME: {
            "match": {"macaddress": _mac(seed.mgmt_mac)},
            "set-name": MGMT_NAME,
            "dhcp4": False,
            **({"addresses": [str(ipaddress.ip_interface(seed.mgmt_cidr))]} if addressed else {}),
        }
    }
    for mac, name in seed.nics:
        ethernets[name] = {"match": {"macaddress": _mac(mac)}, "set-name": name, "dhcp4": addressed and name in seed.dhcp}
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=False)


def instance_id(seed: CloudSeed) -> str:
    """hostname plus a hash of the seed's public parts (the private key stays out of the hash input)."""
    public = {key: value for key, value in asdict(seed).items() if key != "host_key_private"}
    digest = hashlib.sha256(json.dumps(public, sort_keys=True).encode()).hexdigest()[:16]
    return f"{seed.hostname}-{digest}"


def write_seed_iso(dest: Path, seed: CloudSeed) -> None:
    """Write the seed ISO to `dest`, mode 0600, atomically (it holds the guest's private host key)."""
    _write_iso(dest, {"user-data": user_data(seed), "meta-data": meta_data(seed), "network-config": network_config(seed)})


# --- warm start -------------------------------------------------------------------------------

WARM_FILES = RECIPE_DIR / "cloud"  # what the warm seed writes into the guest (images/cloud/README.md)
GUEST_FUNCTIONS = RECIPE_DIR / "guest/lib/vnetlab/boot.sh"
WARM_SERVICE = "vnetlab-warm.service"


def _warm_files() -> dict[str, Path]:
    """Path in the guest → the recipe file written there."""
    files = {"/" + p.relative_to(WARM_FILES).as_posix(): p for p in sorted(WARM_FILES.rglob("*")) if p.is_file() and p.name != "README.md"}
    files["/usr/local/lib/vnetlab/boot.sh"] = GUEST_FUNCTIONS
    return files


def warm_recipe_hash() -> str:
    """What a cloud image's warm guest runs beyond the image: part of its warm image's key."""
    sources = {path: file for path, file in _warm_files().items()}
    sources["vnetlab/cloud_seed.py"] = Path(__file__)
    return hash_sources(sources, WARM_SERVICE)


def warm_user_data(seed: CloudSeed) -> str:
    """The warm boot's #cloud-config: `seed`'s (throw-away keys nobody holds), plus the files of the
    warm start and a runcmd that starts it once cloud-init's last stage runs."""
    config = _cloud_config(seed)
    config["write_files"] = [
        {"path": path, "permissions": "0755" if file.stat().st_mode & 0o100 else "0644", "owner": "root:root", "content": file.read_text()}
        for path, file in _warm_files().items()
    ]
    config["runcmd"] = [["systemctl", "daemon-reload"], ["systemctl", "start", "--no-block", WARM_SERVICE]]
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=_NO_FOLDING)


def write_warm_seed_iso(dest: Path, seed: CloudSeed) -> None:
    """The seed of a cloud image's warm boot: no address on any NIC (they are the warm image's, and
    go down before it is saved)."""
    _write_iso(dest, {"user-data": warm_user_data(seed), "meta-data": meta_data(seed), "network-config": network_config(seed, addressed=False)})


def _write_iso(dest: Path, documents: dict[str, str]) -> None:
    import pycdlib  # here, not at the top: 40 ms of every run's start-up, and only cloud images need it

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
    try:
        for name, iso_name in SEED_FILES:
            data = documents[name].encode()
            iso.add_fp(BytesIO(data), len(data), f"/{iso_name}", rr_name=name, joliet_path=f"/{name}")
        image = BytesIO()
        iso.write_fp(image)
        write_secret(dest, image.getvalue())  # a few hundred KiB
    finally:
        iso.close()


def _validate(seed: CloudSeed) -> None:
    if not isinstance(seed.hostname, str) or not _HOSTNAME.fullmatch(seed.hostname):
        raise ValueError(f"invalid hostname {seed.hostname!r}: use 1-63 lowercase letters, digits and inner hyphens")
    if not isinstance(seed.authorized_key, str) or not _KEY_LINE.fullmatch(seed.authorized_key.strip()):
        raise ValueError("invalid authorized_key: expected one OpenSSH public key line (type, base64 key, optional comment)")
    public = seed.host_key_public.strip() if isinstance(seed.host_key_public, str) else ""
    if not public.startswith("ssh-ed25519 ") or not _KEY_LINE.fullmatch(public):
        raise ValueError("invalid host_key_public: expected an 'ssh-ed25519 AAAA...' line")
    private = seed.host_key_private.strip() if isinstance(seed.host_key_private, str) else ""
    if not (private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and private.endswith("-----END OPENSSH PRIVATE KEY-----")):
        raise ValueError("invalid host_key_private: expected an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)")
    macs = [_mac(seed.mgmt_mac)]
    _cidr(seed.mgmt_cidr)
    if not isinstance(seed.nics, tuple):
        raise ValueError(f"invalid nics {seed.nics!r}: expected a tuple of (MAC, interface name) pairs")
    names: set[str] = set()
    for entry in seed.nics:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ValueError(f"invalid NIC {entry!r}: expected a (MAC, interface name) pair")
        mac, name = entry
        macs.append(_mac(mac))
        if not isinstance(name, str) or not _IFNAME.fullmatch(name):
            raise ValueError(f"invalid interface name {name!r}: 1-15 characters, a lowercase letter first, then lowercase letters, digits, '_' or '-'")
        if name in _RESERVED_NAMES:
            raise ValueError(f"invalid interface name {name!r}: reserved (loopback or the management NIC)")
        if name in names:
            raise ValueError(f"interface name {name!r} is used twice")
        names.add(name)
    if not isinstance(seed.dhcp, tuple) or not set(seed.dhcp) <= names:
        raise ValueError(f"invalid dhcp {seed.dhcp!r}: expected a tuple of data NIC names")
    duplicates = sorted({mac for mac in macs if macs.count(mac) > 1})
    if duplicates:
        raise ValueError(f"MAC address used by more than one NIC: {', '.join(duplicates)}")


def _mac(value: object) -> str:
    """The MAC in lowercase colon form; a unicast address, as a NIC must have."""
    mac = value.lower() if isinstance(value, str) else ""
    if not _MAC.fullmatch(mac):
        raise ValueError(f"invalid MAC address {value!r}: expected six colon-separated hex bytes, e.g. 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"invalid MAC address {value!r}: a multicast address cannot be a NIC's address")
    return mac


def _cidr(value: object) -> None:
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"invalid mgmt_cidr {value!r}: expected an address with its prefix length, e.g. 10.99.0.2/24")
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError as error:
        raise ValueError(f"invalid mgmt_cidr {value!r}: {error}") from None
    network = interface.network
    if interface.version == 4 and network.prefixlen <= 30 and interface.ip in (network.network_address, network.broadcast_address):
        raise ValueError(f"invalid mgmt_cidr {value!r}: that is the subnet's network or broadcast address, not a host's")
    if interface.ip.is_multicast or interface.ip.is_unspecified or interface.ip.is_loopback:
        raise ValueError(f"invalid mgmt_cidr {value!r}: not a unicast host address")


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
