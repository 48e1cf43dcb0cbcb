"""Warm images: a guest booted once to the point before it is any particular guest, saved by libvirt.

A warm image is kept in the image cache beside the image it was booted from (`warm-<key>`): the
save image libvirt wrote (`warm.save`), and for a disk guest the disk as the warm guest left it
(an overlay of the base image, never written again), and for a cloud image the NoCloud seed
of its warm boot. The cache is root's (backends/image_cache.py): the disk and the seed are granted
to qemu's group when a lab restores from them, the save image stays root's alone. Its key is a hash of the guest's domain XML
with everything that is not guest ABI taken out (names, taps, MACs, file paths, the kernel
command line's identity), of QEMU's and libvirt's versions and of the warm start's own format:
guests of one image kind, package set, memory, vCPU and NIC count share one, and anything that
changes what QEMU restores makes another.

Each lab guest restored from it is its own domain: its XML is the warm image's XML as libvirt
saved it (its PCI addresses, machine type, CPU) with the host-side parts and the identity taken
from the guest's own planned XML (restore_xml). libvirt would refuse those changes in a
replacement XML (docs/architecture.md, "Warm start"), so each guest gets a save image of its own
(backends/save_image.py), and what libvirt would have compared is kept here: only the parts
listed in `HostSide` differ. The guest finds its identity (keys, hostname, MACs, addresses) in
a fixed-size fw_cfg file (identity_archive), which the warm guest polls (images/guest/lib/vnetlab/boot.sh).
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt

from vnetlab.backends import image_cache
from vnetlab.backends.libvirt_domains import version_text
from vnetlab.backends.image import SECRETS_FW_CFG, kernel_cmdline
from vnetlab.errors import VnetlabError

KIND = "warm"
SAVE_FILE = "warm.save"  # libvirt's save image of the warm guest
DISK_FILE = "disk.qcow2"  # a disk guest's disk as the warm guest left it (an overlay of the base image)
SEED_FILE = "seed.iso"  # a cloud image's NoCloud seed of the warm boot
WARM_MARKER = "VNETLAB-WARM"  # the warm guest's console line: it waits for an identity, save it now
IDENTITY_SIZE = 8192  # bytes of every guest's fw_cfg identity file (the warm guest's: all zeros)
IDENTITY_FILE = "/etc/vnetlab/identity"  # the identity's words, as the kernel command line would give them
# What a warm guest does before its marker, beyond the image recipes (whose hashes are in the XML's
# file paths): raise it when that changes, so old warm images are no longer used.
FORMAT = 1
_WARM_MAC = "52:54:00:ff:ff:{:02x}"  # the warm image's NICs: never on the wire (a guest changes them before its NICs are up)
_PLACEHOLDER = "@"
_DOMAIN_PARTS_NOT_RESTORED = ("title", "metadata", "uuid", "genid")
_UNSUPPORTED_DEVICES = ("filesystem", "hostdev", "channel", "redirdev", "smartcard", "shmem")


EMULATOR = "/usr/bin/qemu-system-x86_64"  # the domains' <emulator> (templates/domain.xml.j2)


class WarmError(VnetlabError):
    pass


def host_versions() -> str:
    """What a warm image is only good for: the QEMU and libvirt that saved it (a new QEMU may not
    restore an older one's stream, and its machine type or devices may differ)."""
    try:
        done = subprocess.run([EMULATOR, "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise WarmError(f"cannot read QEMU's version from {EMULATOR} --version: {exc}") from None
    qemu = re.search(r"version (\d+\.\d+\.\d+)", done.stdout)
    if qemu is None:
        raise WarmError(f"cannot read QEMU's version in {done.stdout.strip()!r}")
    return f"qemu {qemu[1]}, libvirt {version_text(libvirt.getVersion(), 3)}"


WARM_LIBVIRT = 9  # the libvirt major version whose restore of vnetlab's save images was proven first (Debian 12's 9.0)
REOPENING_LIBVIRT = 11_002_000  # from this libvirt on a restore opens the save image twice, reading its header each time (backends/save_image.py)


def header_reads(version: int) -> int:
    """How many times libvirt `version` (packed) reads a save image's header in one restore: once
    up to 11.1 (qemuSaveImageOpen reads it and hands the descriptor to QEMU), twice from 11.2 on,
    where the mapped-ram work split that into qemuSaveImageGetMetadata (open, read, close) and
    qemuSaveImageOpen (open, read again, hand over)."""
    return 2 if version >= REOPENING_LIBVIRT else 1


def warm_refused() -> str | None:
    """Why this host's libvirt cannot restore vnetlab's save images, or None. Proven on libvirt 9.0
    (one header read) and on Debian 13's 11.3 (two: header_reads); the releases between them were
    never run here, so their guests boot, saying why."""
    version = libvirt.getVersion()
    if version // 1_000_000 <= WARM_LIBVIRT or version >= REOPENING_LIBVIRT:
        return None
    return (
        f"warm start restores on libvirt {WARM_LIBVIRT} and on {version_text(REOPENING_LIBVIRT)} and later (proven on 9.0 and 11.3); "
        f"libvirt {version_text(version)} was never run with it"
    )


@dataclass(frozen=True)
class WarmImage:
    path: Path  # the cache entry
    key: str
    info: Mapping[str, object]

    @property
    def save(self) -> Path:
        return self.path / SAVE_FILE

    @property
    def disk(self) -> Path:
        return self.path / DISK_FILE

    @property
    def seed(self) -> Path:
        return self.path / SEED_FILE

    def read_by_qemu(self) -> list[Path]:
        """What each restored guest's qemu opens itself (granted to qemu's group when a lab restores
        from it): a disk guest's disk, backing the guest's own overlay, and a cloud image's seed.
        The save image is read by vnetlab and libvirt, as root, never by qemu."""
        return [f for f in (self.disk, self.seed) if f.is_file()]


@dataclass(frozen=True)
class HostSide:
    """What a domain's XML says of this machine and of the guest's identity rather than of the
    guest's ABI: names, taps, MACs and the files it is started with. `backing`: the disk's
    backing chain, nearest first."""

    name: str
    taps: tuple[str, ...]
    macs: tuple[str, ...]
    console: str
    fw_cfg: str | None = None
    disk: str | None = None
    backing: tuple[str, ...] = ()
    seed: str | None = None


def warm_mac(index: int) -> str:
    return _WARM_MAC.format(index)


def warm_cmdline(cmdline: str) -> str:
    """The warm guest's kernel command line: the guest's without its identity (the vnl.* words), with vnl.warm."""
    words = [w for w in cmdline.split() if not w.startswith("vnl.")]
    return " ".join([*words, "vnl.warm"]) if words else ""


def identity_words(hostname: str, mgmt_mac: str, mgmt_cidr: str, nics: Sequence[tuple[str, str]]) -> str:
    """What a restored guest reads in IDENTITY_FILE: the vnl.* words of its kernel command line
    (validated alike), and vnl.macs, which of the warm image's NICs takes which of its MACs."""
    words = [w for w in kernel_cmdline(hostname, mgmt_mac, mgmt_cidr, nics).split() if w.startswith("vnl.")]
    macs = [mgmt_mac.lower(), *(mac.lower() for mac, _name in nics)]
    return " ".join([*words, "vnl.macs=" + ",".join(f"{warm_mac(i)}>{mac}" for i, mac in enumerate(macs))]) + "\n"


def identity_archive(files: Mapping[str, tuple[bytes, int]], folders: Mapping[str, int] | None = None) -> bytes:
    """A tar archive of `files` (path in the guest → (content, mode)) and `folders` (path → mode),
    owned by root, padded with zeros to IDENTITY_SIZE: the size the warm guest saw at boot, which
    Linux keeps for the fw_cfg file (tar's own end is zero blocks, so the padding reads as its end)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for path, mode in (folders or {}).items():
            info = tarfile.TarInfo(_in_guest(path))
            info.type, info.mode = tarfile.DIRTYPE, mode
            archive.addfile(info)
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(_in_guest(path))
            info.size, info.mode = len(content), mode
            archive.addfile(info, io.BytesIO(content))
        end = archive.offset + 2 * tarfile.BLOCKSIZE  # the two zero blocks close() writes; the rest is record padding
    data = out.getvalue()[:end]
    if len(data) > IDENTITY_SIZE:
        raise WarmError(f"a guest's identity takes {len(data)} bytes, more than the {IDENTITY_SIZE} of its fw_cfg file")
    return data + b"\0" * (IDENTITY_SIZE - len(data))


def _in_guest(path: str) -> str:
    name = path.lstrip("/")
    if not name or ".." in name.split("/"):
        raise ValueError(f"invalid path inside the guest: {path!r}")
    return name


# --- domain XML -------------------------------------------------------------------------------


def warm_domain_xml(guest_xml: str, host: HostSide, metadata: str | None = None) -> str:
    """The XML that boots a warm image's guest, from a lab guest's planned XML: its identity and
    host-side parts replaced by `host`'s, the kernel told vnl.warm, and a vmgenid device, which
    tells every restored guest's kernel to reseed its random number generator. `metadata`: the
    <metadata> of the domain (the lab that boots it records it); none when None."""
    root = _parse(guest_xml)
    for name in ("title", "metadata", "uuid", "genid"):
        for element in root.findall(name):
            root.remove(element)
    root.find("name").text = host.name  # type: ignore[union-attr]
    root.insert(1, _indented(ET.Element("genid")))
    if metadata is not None:
        root.insert(2, _indented(ET.fromstring(metadata)))
    cmdline = root.find("os/cmdline")
    if cmdline is not None:
        cmdline.text = warm_cmdline(cmdline.text or "")
    if root.find("sysinfo[@type='fwcfg']/entry") is None:  # a guest booted by its own bootloader: its identity comes the same way
        sysinfo = ET.Element("sysinfo", type="fwcfg")
        ET.SubElement(sysinfo, "entry", name=SECRETS_FW_CFG)
        root.insert(list(root).index(root.find("os")), _indented(sysinfo))  # type: ignore[arg-type]
    _set_host_side(root, host)
    return ET.tostring(root, encoding="unicode") + "\n"


def warm_key(guest_xml: str, versions: str) -> str:
    """16 hex digits naming the warm image a guest restores from: its XML with everything that is
    not guest ABI made the same for all guests, `versions` (QEMU's and libvirt's) and FORMAT."""
    nics = len(_parse(guest_xml).findall("devices/interface"))
    placeholder = HostSide(
        _PLACEHOLDER, (_PLACEHOLDER,) * nics, tuple(warm_mac(i) for i in range(nics)), _PLACEHOLDER,
        fw_cfg=_PLACEHOLDER, disk=_PLACEHOLDER, backing=(_PLACEHOLDER,), seed=_PLACEHOLDER,
    )
    normal = warm_domain_xml(guest_xml, placeholder)
    base = [source.get("file") for source in _parse(guest_xml).iterfind("devices/disk/backingStore/source")]
    digest = hashlib.sha256(f"{FORMAT}\n{versions}\n{base}\n{normal}".encode())
    return digest.hexdigest()[:16]


WARM_IMAGE_ATTRIBUTE = "warm-image"  # on the guest's metadata element: the warm image it was restored from


def restore_xml(saved_xml: str, guest_xml: str, host: HostSide, uuid: str | None = None, warm_image: str | None = None) -> str:
    """A lab guest's own XML to restore from the warm image: libvirt's saved XML of the warm guest
    with the guest's name, title and metadata (from its planned XML; `warm_image` marked on its
    metadata element, which `vnetlab inspect` reads back), its UUID (that of the domain defined
    for it, or none: libvirt makes one) and `host`'s host-side parts."""
    root = _parse(saved_xml)
    guest = _parse(guest_xml)
    for name in _DOMAIN_PARTS_NOT_RESTORED:
        for element in root.findall(name):
            root.remove(element)
    root.find("name").text = host.name  # type: ignore[union-attr]
    position = 1
    if uuid is not None:
        element = ET.Element("uuid")
        element.text = uuid
        root.insert(position, _indented(element))
        position += 1
    root.insert(position, _indented(ET.Element("genid")))  # libvirt gives each restore a new one; the kernel reseeds on it
    for name in ("title", "metadata"):
        for element in guest.findall(name):
            position += 1
            root.insert(position, _indented(element))
            if name == "metadata" and warm_image is not None and len(element):
                element[0].set(WARM_IMAGE_ATTRIBUTE, warm_image)
    saved_nics = root.findall("devices/interface")
    guest_nics = guest.findall("devices/interface")
    if len(saved_nics) != len(guest_nics):
        raise WarmError(f"the warm image has {len(saved_nics)} NIC(s), the guest {len(guest_nics)}")
    for saved, planned in zip(saved_nics, guest_nics):
        if _model(saved) != _model(planned):
            raise WarmError(f"the warm image's NIC model {_model(saved)} is not the guest's {_model(planned)}")
    _set_host_side(root, host, shared_seed=True)
    return ET.tostring(root, encoding="unicode") + "\n"


def _indented(element: ET.Element) -> ET.Element:
    """An element inserted among <domain>'s children, on its own line as theirs are."""
    element.tail = "\n  "
    return element


def _model(interface: ET.Element) -> str | None:
    model = interface.find("model")
    return model.get("type") if model is not None else None


def _parse(xml: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise WarmError(f"unreadable domain XML: {exc}") from None
    if root.tag != "domain" or root.find("name") is None:
        raise WarmError("not a libvirt domain XML (no <domain> with a <name>)")
    return root


def _set_host_side(root: ET.Element, host: HostSide, *, shared_seed: bool = False) -> None:
    """`shared_seed`: the seed disk is the warm image's, which every restored guest reads: never relabelled."""
    devices = root.find("devices")
    if devices is None:
        raise WarmError("the domain XML has no <devices>")
    unsupported = sorted({d.tag for d in devices if d.tag in _UNSUPPORTED_DEVICES})
    if unsupported:
        raise WarmError(f"a guest with {', '.join(unsupported)} devices is not restored from a warm image")
    entry = root.find("sysinfo[@type='fwcfg']/entry")
    if entry is not None:
        if host.fw_cfg is None:
            raise WarmError("the guest has a fw_cfg file, but no identity file was given")
        entry.set("file", host.fw_cfg)
    interfaces = devices.findall("interface")
    if len(interfaces) != len(host.taps) or len(interfaces) != len(host.macs):
        raise WarmError(f"{len(interfaces)} NIC(s) in the XML, {len(host.taps)} tap(s) and {len(host.macs)} MAC(s) given")
    for interface, tap, mac in zip(interfaces, host.taps, host.macs):
        _child(interface, "mac").set("address", mac)
        _child(interface, "target").set("dev", tap)
    for log in devices.iterfind("*/log"):  # the serial port's, and libvirt's copy under <console>
        log.set("file", host.console)
    for disk in devices.findall("disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev == "vda":
            if host.disk is None:
                raise WarmError("the guest has a disk, but no disk file was given")
            _set_disk(disk, host.disk, host.backing)
        elif dev == "vdb":
            if host.seed is None:
                raise WarmError("the guest has a seed disk, but no seed file was given")
            _set_disk(disk, host.seed, (), shared=shared_seed)
        else:
            raise WarmError(f"a guest with disk {dev!r} is not restored from a warm image")


def _child(parent: ET.Element, tag: str) -> ET.Element:
    child = parent.find(tag)
    if child is None:
        child = ET.SubElement(parent, tag)
    return child


def _set_disk(disk: ET.Element, path: str, backing: Sequence[str], *, shared: bool = False) -> None:
    """The disk's file (`shared`: read by every guest, never relabelled), and its backing chain
    written out (each never relabelled: the files are shared by every guest of the image, read only)."""
    source = _child(disk, "source")
    source.attrib.clear()
    for child in list(source):
        source.remove(child)
    source.set("file", path)
    if shared:
        ET.SubElement(source, "seclabel", model="dac", relabel="no")
    for old in disk.findall("backingStore"):
        disk.remove(old)
    if not backing:
        return
    parent = disk
    position = list(disk).index(source) + 1
    for file in backing:
        store = ET.Element("backingStore", type="file")
        ET.SubElement(store, "format", type="qcow2")
        store_source = ET.SubElement(store, "source", file=file)
        ET.SubElement(store_source, "seclabel", model="dac", relabel="no")
        parent.insert(position, store)
        parent, position = store, len(store)
    parent.insert(position, ET.Element("backingStore"))


# --- the cache --------------------------------------------------------------------------------


def cached(cache: Path, key: str) -> WarmImage | None:
    entry = image_cache.cached(cache, KIND, key)
    if entry is None or not (entry.path / SAVE_FILE).is_file():
        return None
    return WarmImage(entry.path, key, entry.info)
