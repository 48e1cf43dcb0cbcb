"""Building images from Debian packages for real (mmdebstrap from the mirror, no host packages),
into a throw-away cache: what the tiny image holds, that it is cached, and that a failed build
leaves nothing behind."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared golden helper

from vnetlab.backends import debian_image, image_cache
from vnetlab.backends.debian_tree import TreeError, fetch_tree
from vnetlab.backends.image import GuestImage, ImageError, ensure_image, recipe_hash

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="needs mmdebstrap (vnetlab setup installs it)"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[GuestImage, list[str]]:
    messages: list[str] = []
    return ensure_image(tmp_path_factory.mktemp("cache"), progress=messages.append), messages


def _members(archive: bytes) -> dict[str, str]:
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True).stdout.decode()
    return {line.split()[-1] if " -> " not in line else line.split(" -> ")[0].split()[-1]: line.split()[0] for line in listing.splitlines()}


def test_the_tiny_image_is_built_from_fetched_packages_and_cached(built: tuple[GuestImage, list[str]]) -> None:
    image, messages = built
    assert messages[-1].startswith("guest image ready")
    assert any(m.startswith("mmdebstrap extract") for m in messages)
    entry = image.entry
    assert entry.name == f"tiny-{recipe_hash()}"
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no build folder left behind
    info = json.loads((entry / image_cache.INFO).read_text())
    assert info["kind"] == "tiny" and info["kernel_version"] == image.kernel_version
    lock = dict((line.split()[0], line.split()[1]) for line in (entry / image_cache.LOCK).read_text().splitlines())
    for package in ("busybox-static", "dropbear-bin", "wireguard-tools", "iperf3", "iputils-ping", f"linux-image-{image.kernel_version}"):
        assert package in lock, package
    assert image.kernel.read_bytes()[:4] == b"\x7fELF"
    # root's alone (issue 23): a lab grants qemu's group what it boots when it starts, nothing more
    assert stat.S_IMODE(entry.stat().st_mode) == image_cache.FOLDER_MODE == 0o711
    for path in (image.kernel, image.initrd, image.kernel_modules, entry / image_cache.LOCK):
        assert stat.S_IMODE(path.stat().st_mode) == image_cache.FILE_MODE == 0o600
    again: list[str] = []
    assert ensure_image(entry.parent, progress=again.append) == image and again == []


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio to read archives independently")
def test_the_initramfs_holds_both_inits_tools_libraries_and_modules(built: tuple[GuestImage, list[str]]) -> None:
    image, _ = built
    archive = gzip.decompress(image.initrd.read_bytes())
    listing = _members(archive)
    assert listing["init"].startswith("l") and listing["dev/console"].startswith("c")
    assert listing["root"] == "drwx------" and listing["etc/shadow"] == "-rw-------"
    for script in ("etc/init.d/rcS", "sbin/vnl-root"):
        assert listing[script] == "-rwxr-xr-x", script
    for binary in ("usr/sbin/dropbear", "usr/bin/wg", "usr/bin/iperf3", "usr/bin/ping", "lib64/ld-linux-x86-64.so.2"):
        assert listing[binary] == "-rwxr-xr-x", binary
    for applet in ("sbin/init", "bin/sh", "sbin/ip", "sbin/switch_root"):
        assert listing[applet].startswith("l"), applet
    modules = f"lib/modules/{image.kernel_version}/kernel"
    for module in ("drivers/net/wireguard/wireguard.ko", "fs/ext4/ext4.ko", "drivers/block/virtio_blk.ko", "crypto/crc32c_generic.ko"):
        assert f"{modules}/{module}.gz" in listing, module  # gzip'd: busybox's modprobe unpacks them
    assert not [name for name in listing if name.endswith(".ko")]
    assert set(image.initrd.with_name("initrd.img.names").read_text().splitlines()) == set(listing)


def test_an_unknown_package_fails_with_apts_words_and_caches_nothing(built: tuple[GuestImage, list[str]], tmp_path: Path) -> None:
    image, _ = built
    cache = tmp_path / "cache"
    with pytest.raises(ImageError, match="Unable to locate package vnetlab-no-such-package"):
        debian_image.ensure_disk(image, ["vnetlab-no-such-package"], cache)
    assert list(cache.iterdir()) == []  # neither an entry nor a build folder


def test_an_interrupted_fetch_leaves_no_mount_and_no_folder(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_at_extraction(message: str) -> None:
        if "extracting" in message or "installing" in message:
            raise Stop

    with pytest.raises(Stop):
        with image_cache.building(tmp_path, "debian", "test") as build:
            fetch_tree(build / "tree", ["iproute2"], variant="minbase", say=stop_at_extraction)
    assert list(tmp_path.iterdir()) == []
    assert not image_cache._mounts_under(tmp_path)


def test_bad_package_names_are_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="not a Debian package name: Bad_Name"):
        fetch_tree(tmp_path / "tree", ["Bad_Name"], variant="extract", say=lambda _m: None)
    assert not (tmp_path / "tree").exists()


# -- what the tiny image carries, as docs/images.md says ------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images.md"
BEGIN, END = "<!-- tiny-contents: begin -->", "<!-- tiny-contents: end -->"
OWN = {"/usr/bin/wget": "vnetlab's wrapper of busybox's wget: `-T SEC` works (images/guest/usr/bin/wget)", "/sbin/vnl-root": "vnetlab's init of the debian kind's initramfs (images/guest)"}
ABOUT = {  # by path: what each program of binaries.txt is for in a lab
    "/usr/bin/ping": "iputils' ping: `-M do` (path MTU), `-D` (timestamps: `measure: recovery`); plain `ping` is busybox's, first in PATH",
    "/usr/bin/iperf3": "throughput (`perf` checks)",
    "/usr/bin/wg": "WireGuard's tool",
    "/usr/sbin/tc": "iproute2's tc: netem inside the guest (busybox's tc has none)",
    "/usr/sbin/radvd": "router advertisements from a guest (`ra: {from: VM}`): SLAAC on a lab bridge",
    "/usr/sbin/bridge": "iproute2's bridge: VLANs in a switch guest",
    "/usr/sbin/dropbear": "the SSH server",
}


def contents_markdown(applets: list[str], programs: list[str]) -> str:
    """The section of docs/images.md between the markers, from the image itself."""
    from vnetlab.backends.image import recipe_binaries

    packages = {binary: package for binary, package in recipe_binaries()}
    rows = [f"| `{p}` | {packages.get(p, 'vnetlab')} | {ABOUT.get(p) or OWN.get(p, '')} |" for p in programs]
    words, line, lines = [f"`{a}`" for a in applets], "", []
    for word in words:
        if line and len(line) + 1 + len(word) > 100:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join([
        BEGIN,
        "Generated from the built image by tests/root/test_image_build.py (`VNETLAB_UPDATE_GOLDEN=1` rewrites it).",
        "",
        "| program | from | what for |",
        "| --- | --- | --- |",
        *rows,
        "",
        f"busybox (busybox-static) with {len(applets)} applets, each a link in /bin, /sbin, /usr/bin or /usr/sbin:",
        "",
        *lines,
        END,
    ])


def test_the_docs_list_what_the_tiny_image_carries(built: tuple[GuestImage, list[str]]) -> None:
    from goldens import update_mode

    from vnetlab.backends.image import image_programs

    image, _ = built
    applets, programs = image_programs(image.initrd)
    assert "wget" not in applets and "/usr/bin/wget" in programs  # the wrapper, not the applet that dies on -T
    text = DOCS.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    wanted = contents_markdown(applets, programs)
    if update_mode():
        DOCS.write_text(text[:start] + wanted + text[end:])
        pytest.fail("docs/images.md rewritten; review the diff and run again without VNETLAB_UPDATE_GOLDEN", pytrace=False)
    assert text[start:end] == wanted, "docs/images.md does not list what the tiny image carries: run this test with VNETLAB_UPDATE_GOLDEN=1"
