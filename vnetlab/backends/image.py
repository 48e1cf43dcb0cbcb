"""The tiny guest image: a PVH vmlinux plus a busybox initramfs, built from Debian packages.

Guests boot straight from a kernel and an initramfs (no disk image), so the whole guest is these
two files. The packages come from a Debian tree that mmdebstrap fetches into the cache (never the
host's installed packages), so the image builds the same on any host with mmdebstrap. It is built
once per recipe and cached; per-guest secrets go into a small cpio that qemu passes through
fw_cfg (write_guest_secrets), so a new guest never means a rebuild and all guests share one
initramfs. The same initramfs boots the disk guests (debian kind) through its second init,
/sbin/vnl-root. The recipe lives in images/.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import lzma
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from vnetlab.backends import debian_tree, image_cache
from vnetlab.backends.debian_tree import Tree, TreeError, find_in_tree, in_tree, tree_libraries
from vnetlab.backends.keys import write_secret
from vnetlab.errors import VnetlabError
from vnetlab.paths import RECIPE_DIR

DEFAULT_CACHE = Path("/var/lib/vnetlab/images")
KIND = "tiny"
GUEST_READY_MARKER = "VNETLAB-READY"
GUEST_FAILED_MARKER = "VNETLAB-FAILED"
KERNEL_PACKAGE = "linux-image-amd64"
KERNEL_MODULES = "modules.tar"  # kept in the entry: disk images take their kernel modules from it
# Module folders a lab guest has no hardware for (graphics, media, radios, sound): ~40% of the modules' size.
_UNUSED_MODULES = ("kernel/drivers/gpu", "kernel/drivers/media", "kernel/drivers/infiniband", "kernel/drivers/staging",
                   "kernel/drivers/net/wireless", "kernel/drivers/bluetooth", "kernel/net/wireless", "kernel/net/mac80211",
                   "kernel/net/bluetooth", "kernel/sound", "kernel/drivers/iio", "kernel/drivers/hid", "kernel/drivers/input")
DISK_INIT = "/sbin/vnl-root"  # the initramfs's init for guests whose root is a disk

# Fixed part of every guest command line: serial console with only errors on it (each console
# line costs time under TCG); reboot at once on panic (qemu -no-reboot then exits); no IPv6 unless
# the lab uses it (its neighbour discovery would fill an IPv4 lab's captures with noise); no crypto
# self-tests at boot (~0.4 s of the ~3 s TCG boot).
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer test can time out and panic
# ("IO-APIC + timer doesn't work!", seen here with several guests booting at once on 2 busy cores).
_BOOT_ARGS = ("console=ttyS0", "loglevel=3", "panic=-1")
NO_IPV6 = "ipv6.disable=1"
_BOOT_ARGS_AFTER = ("cryptomgr.notests", "no_timer_check")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_COMMAND_LINE_SIZE = 2048  # x86 limit, including the terminating NUL
_XEN_ELFNOTE_PHYS32_ENTRY = 18  # the ELF note that marks a PVH entry point


def console_says(text: str, marker: str, host: str) -> bool:
    """Whether the console holds `marker` for `host` (and perhaps a " reason=…") as a whole line: the
    serial log is written as the guest prints, so a read can end inside it ("host=v" of "host=vm1")."""
    return re.search(rf"{re.escape(marker)} host={re.escape(host)}(?: [^\n]*)?\r*\n", text) is not None


class ImageError(VnetlabError):
    """The guest image cannot be built; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path  # uncompressed PVH vmlinux (ELF)
    initrd: Path  # base initramfs, gzip'd newc cpio
    kernel_version: str  # e.g. "6.1.0-56-amd64"
    recipe_hash: str  # hash of the recipe and the package set; a change means a rebuild

    @property
    def entry(self) -> Path:
        return self.kernel.parent

    @property
    def kernel_modules(self) -> Path:
        return self.entry / KERNEL_MODULES


@dataclass(frozen=True)
class _Entry:
    """One member of a cpio archive; `mode` includes the file type bits."""

    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def recipe_binaries() -> list[tuple[str, str]]:
    """(guest path, Debian package) of every binary in images/binaries.txt."""
    return [(words[0], words[1]) for words in recipe_lines("binaries.txt", columns=2)]


def recipe_packages() -> list[str]:
    return sorted({KERNEL_PACKAGE, *(package for _path, package in recipe_binaries())})


def recipe_hash() -> str:
    """Hash of the recipe files, this builder, the suite and the package set.

    The exact versions a build used are in the entry's packages.lock; a new build of the same
    recipe (`image build --rebuild`) takes the mirror's current versions."""
    sources = {recipe_label(path): path for path in _recipe_files()}
    sources["vnetlab/image.py"] = Path(__file__)  # how the recipe is read is part of the recipe
    sources["vnetlab/debian_tree.py"] = Path(debian_tree.__file__)
    return hash_sources(sources, (debian_tree.SUITE, recipe_packages()))


def recipe_label(path: Path) -> str:
    """A recipe file's name in a hash: its path under images/ (two files of one name differ)."""
    return f"images/{path.relative_to(RECIPE_DIR).as_posix()}"


def hash_sources(sources: Mapping[str, Path], extra: object) -> str:
    """16 hex digits of sha256 over each labelled file (its content and executable bit) and `extra`'s repr:
    the cache key of an image kind."""
    digest = hashlib.sha256()
    for label, path in sources.items():
        content = path.read_bytes()
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{label}:{executable}:{len(content)}\n".encode())
        digest.update(content)
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:16]


def cached_image(cache: Path = DEFAULT_CACHE) -> GuestImage | None:
    """The current recipe's image if it is in the cache (never builds, never fetches)."""
    digest = recipe_hash()
    entry = image_cache.cached(cache, KIND, digest)
    if entry is None:
        return None
    return GuestImage(entry.path / "vmlinux", entry.path / "initrd.img", str(entry.info["kernel_version"]), digest)


def ensure_image(
    cache: Path = DEFAULT_CACHE,
    *,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GuestImage:
    """Return the cached image for the current recipe, building it first if it is missing.

    The packages are fetched by mmdebstrap (extract only: nothing of them runs) into the build
    folder; the build is renamed into the cache when complete. Files are 0600 in 0711 folders
    (backends/image_cache): libvirt hands a guest's kernel and initramfs to qemu's user while it runs.
    """
    say = progress or (lambda _message: None)
    image = None if rebuild else cached_image(cache)
    if image is not None:
        return image
    digest = recipe_hash()
    started = time.monotonic()
    say(f"building guest image {KIND}-{digest}")
    try:
        with image_cache.building(cache, KIND, digest) as build:
            tree = debian_tree.fetch_tree(build / "tree", recipe_packages(), variant="extract", say=say)
            kernel_version = _tree_kernel_version(tree)
            bzimage = in_tree(tree.root, f"/boot/vmlinuz-{kernel_version}")
            say(f"extracting the PVH vmlinux from {bzimage.name}")
            _write_private(build / "vmlinux", _vmlinux(bzimage))
            entries = _initramfs_entries(tree, kernel_version, say)
            say(f"packing the initramfs ({len(entries)} entries)")
            archive = gzip.compress(_newc(entries), compresslevel=6, mtime=0)
            _write_private(build / "initrd.img", archive)
            _write_private(build / "initrd.img.names", "".join(f"{name}\n" for name in entries).encode())
            _write_private(build / image_cache.LOCK, tree.lock_text().encode())
            _keep_modules(tree, kernel_version, build / KERNEL_MODULES, say)
            shutil.rmtree(tree.root)
            seconds = time.monotonic() - started
            entry = image_cache.publish(build, cache, KIND, digest, {
                "kernel_version": kernel_version, "seconds": round(seconds, 1), "suite": debian_tree.SUITE,
                "packages": recipe_packages(),
            })
    except TreeError as exc:
        raise ImageError(f"building the {KIND} image failed: {exc}") from None
    except OSError as exc:
        raise ImageError(f"building the {KIND} image failed: {exc}") from exc
    say(f"guest image ready in {seconds:.1f} s: {entry.path}")
    return GuestImage(entry.path / "vmlinux", entry.path / "initrd.img", kernel_version, digest)


SECRETS_FW_CFG = "opt/vnetlab/secrets"  # the fw_cfg file a guest's init unpacks (boot.sh: unpack_secrets)


def write_guest_secrets(image: GuestImage, dest: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Write a newc cpio holding `files` to `dest` (0600): what makes one guest differ from the next.

    qemu hands it to the guest as the fw_cfg file SECRETS_FW_CFG, and the guest's init unpacks it
    over its root, so every guest boots the image's one initramfs: qemu maps that file once for all
    guests instead of a copy per guest (8 MiB of memory each). `files` maps a path inside the
    guest to (content, permission bits). Only the parent folders the base image lacks are added
    (0755): repeating one would reset its mode, e.g. /root's.
    """
    present = _archive_names(image.initrd)
    entries: dict[str, _Entry] = {}
    for path, (content, mode) in files.items():
        name = _guest_name(path)
        entries[name] = _Entry(stat.S_IFREG | stat.S_IMODE(mode), content)
        for parent in PurePosixPath(name).parents[:-1]:
            if str(parent) not in present:
                entries.setdefault(str(parent), _Entry(stat.S_IFDIR | 0o755))
    write_secret(dest, _newc(entries))


def kernel_cmdline(hostname: str, mgmt_mac: str, mgmt_cidr: str, nics: Sequence[tuple[str, str]], *, disk_root: bool = False, ipv6: bool = False) -> str:
    """The guest's full kernel command line; images/guest/lib/vnetlab/boot.sh parses the vnl.* part.

    `nics` are (MAC, interface name) of the data NICs, which the guest renames but leaves down.
    `disk_root`: the initramfs runs /sbin/vnl-root, which switches to the root disk's systemd.
    `ipv6`: the lab uses IPv6, so the kernel keeps it (else `ipv6.disable=1`).
    """
    if not _HOSTNAME.fullmatch(hostname):
        raise ValueError(f"invalid guest hostname {hostname!r}: letters, digits, '-', '_', '.'; at most 63")
    try:
        mgmt = ipaddress.IPv4Interface(mgmt_cidr)
    except ValueError as exc:
        raise ValueError(f"invalid management address {mgmt_cidr!r}: {exc}") from None
    if "/" not in mgmt_cidr:
        raise ValueError(f"management address {mgmt_cidr!r} needs a prefix length, e.g. /24")
    macs = [_mac(mgmt_mac)]
    names = ["mgmt0"]
    for mac, name in nics:
        if not _IFNAME.fullmatch(name) or name == "lo":
            raise ValueError(f"invalid guest interface name {name!r}: at most 15 of letters, digits, '-', '_', '.'")
        macs.append(_mac(mac))
        names.append(name)
    for what, values in (("MAC", macs), ("interface name", names)):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"duplicate guest {what}: {', '.join(duplicates)}")

    args = [*_BOOT_ARGS, *([] if ipv6 else [NO_IPV6]), *_BOOT_ARGS_AFTER, *([f"rdinit={DISK_INIT}"] if disk_root else []), f"vnl.host={hostname}", f"vnl.mgmt={macs[0]},{mgmt.with_prefixlen}"]
    if nics:
        args.append("vnl.nics=" + ",".join(f"{mac}:{name}" for mac, name in zip(macs[1:], names[1:])))
    cmdline = " ".join(args)
    if len(cmdline) >= _COMMAND_LINE_SIZE:
        raise ValueError(f"kernel command line too long ({len(cmdline)} bytes, limit {_COMMAND_LINE_SIZE - 1})")
    return cmdline


def _mac(mac: str) -> str:
    if not _MAC.fullmatch(mac.lower()):
        raise ValueError(f"invalid MAC address {mac!r}")
    return mac.lower()


# --- the recipe ------------------------------------------------------------------------------


def recipe_lines(name: str, columns: int) -> list[list[str]]:
    """The non-comment lines of a recipe file, split into exactly `columns` words (0: any number)."""
    path = RECIPE_DIR / name
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ImageError(f"recipe file {path} is missing: vnetlab runs from its source tree") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if columns and len(words) != columns:
            raise ImageError(f"{path}:{number}: expected {columns} columns, got {line!r}")
        lines.append(words)
    return lines


def _recipe_files() -> list[Path]:
    guest = sorted(p for p in (RECIPE_DIR / "guest").rglob("*") if p.is_file())
    return [RECIPE_DIR / name for name in ("binaries.txt", "layout.txt", "modules.txt")] + guest


# --- the kernel ------------------------------------------------------------------------------


def _vmlinux(bzimage: Path) -> bytes:
    """The ELF kernel inside a bzImage. qemu boots it through its PVH entry point, which skips the
    real-mode setup and the self-decompression: about half the boot time under TCG."""
    data = bzimage.read_bytes()
    if data[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", data, 0x206)[0] < 0x208:
        raise ImageError(f"{bzimage} is not a bzImage (boot protocol 2.08 or later)")
    setup_sectors = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sectors + 1) * 512 + offset
    payload = data[start : start + length]
    if not payload.startswith(b"\xfd7zXZ\x00"):
        raise ImageError(f"{bzimage}: the kernel is not xz-compressed, which is the only kind supported")
    elf = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
    if not _has_pvh_note(elf):
        raise ImageError(f"{bzimage} has no PVH entry point (CONFIG_PVH), so qemu cannot boot it directly")
    return elf


def _has_pvh_note(elf: bytes) -> bool:
    if not elf.startswith(b"\x7fELF\x02\x01"):
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        position, end = p_offset, p_offset + p_filesz
        while position + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, position)
            if elf[position + 12 : position + 12 + namesz] == b"Xen\0" and note_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            position += 12 + _align4(namesz) + _align4(descsz)
    return False


# --- the initramfs ---------------------------------------------------------------------------


def _tree_kernel_version(tree: Tree) -> str:
    versions = sorted(p.name.removeprefix("vmlinuz-") for p in in_tree(tree.root, "/boot").glob("vmlinuz-*"))
    if len(versions) != 1:
        raise ImageError(f"expected one kernel in the fetched {KERNEL_PACKAGE}, found {versions or 'none'}")
    return versions[0]


def _keep_modules(tree: Tree, kernel_version: str, dest: Path, say: Callable[[str], None]) -> None:
    """The kernel's modules as a tar (lib/modules/<version>/...) for disk images, less what no lab uses."""
    say(f"keeping the modules of {kernel_version} for disk images")
    modules = in_tree(tree.root, f"/lib/modules/{kernel_version}")
    skip = {f"lib/modules/{kernel_version}/{folder}" for folder in _UNUSED_MODULES}
    with tarfile.open(dest, "w") as archive:
        archive.add(modules, arcname=f"lib/modules/{kernel_version}", filter=lambda info: None if info.name in skip else info)
    dest.chmod(image_cache.FILE_MODE)


def _initramfs_entries(tree: Tree, kernel_version: str, say: Callable[[str], None]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    guest = RECIPE_DIR / "guest"
    for path in _recipe_files():
        if path.is_relative_to(guest):
            mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            entries[path.relative_to(guest).as_posix()] = _Entry(stat.S_IFREG | mode, path.read_bytes())

    say("collecting binaries and their shared libraries")
    for binary, package in recipe_binaries():
        found = find_in_tree(tree.root, binary)
        if found is None:
            raise ImageError(f"{binary} is not in Debian package {package} (images/binaries.txt)")
        entries[_guest_name(binary)] = _Entry(stat.S_IFREG | 0o755, in_tree(tree.root, found).read_bytes())
        for library in tree_libraries(tree.root, found):
            entries[_guest_name(library)] = _Entry(stat.S_IFREG | 0o755, in_tree(tree.root, library).read_bytes())
        if PurePosixPath(binary).name == "busybox":
            for applet in _busybox_applets(in_tree(tree.root, found)):
                entries.setdefault(applet, _Entry(stat.S_IFLNK | 0o777, binary.encode()))
            data, renamed = rename_applet(entries[_guest_name(binary)].data, *WGET_RENAMED)
            entries[_guest_name(binary)] = _Entry(stat.S_IFREG | 0o755, data)
            if not renamed:
                say("warning: busybox has no applet named wget to rename: `wget -T` may crash in the guests")

    modules = [words[0] for words in recipe_lines("modules.txt", columns=1)]
    say(f"collecting kernel modules for {', '.join(modules)}")
    entries.update(_module_entries(in_tree(tree.root, f"/lib/modules/{kernel_version}"), kernel_version, modules))

    _apply_layout(entries)
    for name in list(entries):
        for parent in PurePosixPath(name).parents[:-1]:
            entries.setdefault(str(parent), _Entry(stat.S_IFDIR | 0o755))
    return entries


# Debian's busybox (busybox-static 1.35) is built without FEATURE_WGET_TIMEOUT, yet its option
# table keeps -T with a null place for the number: `wget -T 3 URL` writes through that null pointer
# and dies with SIGSEGV (exit 139). Its shell runs applets before looking at PATH
# (FEATURE_SH_STANDALONE), so no file named wget can stand in for the applet: the applet is renamed
# in the guest's copy of busybox (one byte of its sorted name table; the order stays) and
# images/guest/usr/bin/wget wraps it, taking -T as the whole transfer's timeout.
WGET_RENAMED = (b"wget", b"wgeT")


def rename_applet(busybox: bytes, name: bytes, new: bytes) -> tuple[bytes, bool]:
    """busybox with applet `name` called `new` (same length, same place in the sorted name table);
    unchanged, and False, unless the name table holds `name` exactly once between two neighbours that
    still sort around `new`."""
    needle = b"\0" + name + b"\0"
    if len(new) != len(name) or busybox.count(needle) != 1:
        return busybox, False
    at = busybox.index(needle)
    start, end = busybox.rfind(b"\0", 0, at), busybox.find(b"\0", at + len(needle))
    before, after = busybox[start + 1 : at], busybox[at + len(needle) : end]
    if start < 0 or end < 0 or not before < new < after:
        return busybox, False
    return busybox[: at + 1] + new + busybox[at + 1 + len(name) :], True


def _busybox_applets(busybox: Path) -> list[str]:
    """Every applet's full path (busybox --list-full); busybox is static, so it runs on any x86-64 host."""
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    return [name for name in listing.split() if name not in ("bin/busybox", "usr/bin/busybox")]


def _module_entries(root: Path, kernel_version: str, names: Sequence[str]) -> dict[str, _Entry]:
    """The modules `names` with their dependencies (read from each module's modinfo `depends`),
    gzip'd, and a modules.dep (etc.) made by depmod for just those."""
    by_name = {_module_name(p.name): p for p in root.rglob("*.ko*")}
    wanted: set[Path] = set()
    queue = list(names)
    while queue:
        name = queue.pop()
        module = by_name.get(_module_name(name))
        if module is None:
            raise ImageError(f"kernel module {name} (images/modules.txt) is not in {kernel_version}")
        if module in wanted:
            continue
        wanted.add(module)
        queue.extend(_module_depends(module))

    with tempfile.TemporaryDirectory(prefix="vnetlab-depmod-") as stage:
        stage_root = Path(stage) / "lib/modules" / kernel_version
        for source in [*sorted(wanted), root / "modules.builtin", root / "modules.builtin.modinfo"]:
            relative = source.relative_to(root)
            (stage_root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, stage_root / relative)
        depmod(Path(stage), kernel_version)
        entries: dict[str, _Entry] = {}
        for path in stage_root.rglob("*"):
            if not path.is_file() or path.suffix == ".bin":  # kmod's binary indexes: busybox's modprobe reads the text ones
                continue
            name, data = path.relative_to(stage).as_posix(), path.read_bytes()
            if name.endswith(".ko"):
                name, data = name + ".gz", gzip.compress(data, compresslevel=9, mtime=0)
            elif path.name == "modules.dep":
                data = _KO_PATH.sub(rb"\1.ko.gz", data)
            entries[name] = _Entry(stat.S_IFREG | 0o644, data)
        return entries


# A module's path in modules.dep ("kernel/net/8021q/8021q.ko:" and each dependency after it).
# The modules are stored gzip'd (busybox's modprobe and insmod unpack them): the unpacked
# initramfs stays in every guest's memory, and the modules are a quarter of it (5.4 → 1.6 MB).
_KO_PATH = re.compile(rb"(\S+)\.ko(?=[:\s])")


def _module_depends(module: Path) -> list[str]:
    """The `depends=` of a module's .modinfo section (plain .ko files: Debian 12 does not compress them)."""
    data = module.read_bytes()
    match = re.search(rb"\0depends=([^\0]*)\0", data)
    return [name for name in match.group(1).decode().split(",") if name] if match else []


def depmod(base: Path, kernel_version: str) -> None:
    """Index the modules under base/lib/modules/VERSION (modules.dep and friends) with the host's depmod."""
    try:
        subprocess.run(["depmod", "-b", str(base), kernel_version], capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise ImageError("depmod not found: run `vnetlab setup` (or apt-get install kmod)") from None
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"depmod failed: {exc.stderr.strip()}") from None


def _module_name(module: str) -> str:
    """'kernel/lib/crypto/libcurve25519-generic.ko' and 'libcurve25519_generic' → 'libcurve25519_generic'."""
    return PurePosixPath(module).name.removesuffix(".ko").replace("-", "_")


def _apply_layout(entries: dict[str, _Entry]) -> None:
    """Add the folders, symlinks and device nodes of images/layout.txt; apply its mode overrides."""
    for kind, path, *args in recipe_lines("layout.txt", columns=0):
        name = _guest_name(path)
        if kind == "dir" and len(args) == 1:
            entries[name] = _Entry(stat.S_IFDIR | int(args[0], 8))
        elif kind == "symlink" and len(args) == 1:
            entries[name] = _Entry(stat.S_IFLNK | 0o777, args[0].encode())
        elif kind == "chardev" and len(args) == 3:
            entries[name] = _Entry(stat.S_IFCHR | int(args[0], 8), rdev=(int(args[1]), int(args[2])))
        elif kind == "mode" and len(args) == 1 and name in entries:
            entries[name] = replace(entries[name], mode=stat.S_IFMT(entries[name].mode) | int(args[0], 8))
        else:
            raise ImageError(f"{RECIPE_DIR / 'layout.txt'}: cannot apply {' '.join([kind, path, *args])!r}")


# --- cpio (newc) -----------------------------------------------------------------------------


def _newc(entries: Mapping[str, _Entry]) -> bytes:
    """A newc cpio archive of `entries`, owned by root with mtime 0 (so builds are reproducible).

    Sorted names put every folder before its contents, as the kernel's unpacker needs.
    """
    archive = bytearray()
    for inode, (name, entry) in enumerate(sorted(entries.items()), start=1):
        _append_member(archive, name, entry, inode)
    _append_member(archive, "TRAILER!!!", _Entry(0), 0)
    return bytes(archive)


def _append_member(archive: bytearray, name: str, entry: _Entry, inode: int) -> None:
    encoded = name.encode() + b"\0"
    links = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (inode, entry.mode, 0, 0, links, 0, len(entry.data), 0, 0, *entry.rdev, len(encoded), 0)
    archive += b"070701" + "".join(f"{field:08x}" for field in fields).encode() + encoded
    archive += b"\0" * (-len(archive) % 4)
    archive += entry.data
    archive += b"\0" * (-len(archive) % 4)


def _names_file(initrd: Path) -> Path:
    return initrd.with_name(initrd.name + ".names")


def _archive_names(initrd: Path) -> frozenset[str]:
    """Every name in the base archive: from the list the build wrote beside it (reading that is
    ~0.07 s faster per lab than unpacking the archive), else from the gzip'd newc archive itself."""
    try:
        return frozenset(_names_file(initrd).read_text().splitlines())
    except FileNotFoundError:
        pass
    return frozenset(name for name, _, _ in archive_members(gzip.decompress(initrd.read_bytes())))


def archive_members(data: bytes) -> Iterator[tuple[str, int, bytes]]:
    """(name, mode, contents) of each member of a newc cpio archive, up to its trailer."""
    position = 0
    while data[position : position + 6] == b"070701":
        mode, size, name_size = (int(data[position + start : position + start + 8], 16) for start in (14, 54, 94))
        name = data[position + 110 : position + 110 + name_size - 1].decode()
        if name == "TRAILER!!!":
            break
        begin = _align4(position + 110 + name_size)
        yield name, mode, data[begin : begin + size]
        position = _align4(begin + size)


PROGRAM_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin")


def image_programs(initrd: Path) -> tuple[list[str], list[str]]:
    """What a tiny image's initramfs lets a lab run: busybox's applets (by name: the links to it),
    and the other programs by path (iputils' ping, dropbear, wg, …, and the image's own wrappers)."""
    applets, programs = set(), set()
    for name, mode, data in archive_members(gzip.decompress(initrd.read_bytes())):
        folder, _, base = name.rpartition("/")
        if folder not in PROGRAM_DIRS:
            continue
        if stat.S_ISLNK(mode) and data.rstrip(b"/").endswith(b"bin/busybox"):
            applets.add(base)
        elif stat.S_ISREG(mode) and mode & 0o111 and base != "busybox":
            programs.add("/" + name)
    return sorted(applets), sorted(programs)


def _guest_name(path: str) -> str:
    """'/etc/x' → 'etc/x', refusing paths that would leave the guest's root."""
    name = PurePosixPath("/", path).relative_to("/")
    if ".." in name.parts or not name.parts:
        raise ValueError(f"invalid path inside the guest: {path!r}")
    return name.as_posix()


def _align4(value: int) -> int:
    return (value + 3) & ~3


# --- files -----------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(image_cache.FILE_MODE)
