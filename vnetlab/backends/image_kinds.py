"""Image kinds: what a scenario's `image:` names, what each kind needs, and how it is made ready.

- tiny: the busybox initramfs (backends/image.py), booted straight from the PVH kernel. Default.
- debian: a Debian 12 root disk with systemd and OpenSSH (backends/debian_image.py), booted by
  the same kernel and initramfs; each guest writes its own qcow2 overlay.
- file: a user's own BIOS-bootable cloud image (backends/user_image.py), booted by its own
  bootloader and configured by cloud-init from a NoCloud seed (backends/cloud_seed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vnetlab.backends import debian_image, image, user_image

TINY, DEBIAN, FILE = "tiny", "debian", "file"


@dataclass(frozen=True)
class KindInfo:
    name: str
    min_memory: int  # MiB below which the guest does not come up
    default_memory: int  # MiB when the scenario gives none
    boots_kernel: bool  # vnetlab's PVH kernel + initramfs (else the image's own bootloader)
    has_disk: bool  # a per-guest qcow2 overlay of a base disk
    ready_on_console: bool  # prints VNETLAB-READY (else: ready when SSH answers with the pinned key)
    summary: str
    # MiB of qemu's TCG translation cache: when the code a guest runs no longer fits, qemu throws
    # every translation away and translates again. 32 MiB holds a tiny guest's; a debian guest's
    # restored path (systemd, sshd, bash, ip) refilled it every ~0.7 s (10 flushes before its NICs
    # were addressed, `virsh qemu-monitor-command DOMAIN --hmp "info jit"`) and needs ~80 MiB.
    # Host memory is used only as far as the cache fills.
    tb_cache: int = 32
    # Kernel command line words under TCG only: `norandmaps` (no address space layout
    # randomisation), because qemu keys each translation by the virtual address of the code, so a
    # library mapped at another address in every process is translated again for each one (ten
    # `ip -V` took 0.8 s with randomisation, 0.23-0.39 s without, in a restored debian guest).
    tcg_boot_args: tuple[str, ...] = ()


KINDS = {
    TINY: KindInfo(TINY, 64, 128, True, False, True, "busybox initramfs: ~3 s to SSH under TCG"),
    DEBIAN: KindInfo(
        DEBIAN, debian_image.MIN_MEMORY, 256, True, True, True, "Debian 12 with systemd and OpenSSH on a qcow2 overlay",
        tb_cache=128, tcg_boot_args=("norandmaps",),
    ),
    FILE: KindInfo(FILE, 256, 512, False, True, False, "your own cloud image, configured by cloud-init (NoCloud)"),
}


@dataclass(frozen=True)
class ImageRef:
    """One image a lab needs: a kind, plus extra packages (debian) or a file's absolute path (file)."""

    kind: str
    packages: tuple[str, ...] = ()
    file: str = ""

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    def label(self) -> str:
        if self.kind == FILE:
            return f"file {self.file}"
        return self.kind + (f" + {', '.join(self.packages)}" if self.packages else "")


@dataclass(frozen=True)
class ResolvedImage:
    """The files a guest of this image boots from; `disk` is the base its overlay points at."""

    ref: ImageRef
    kernel: Path | None = None
    initrd: Path | None = None
    disk: Path | None = None


def placeholder(ref: ImageRef, kernel: Path) -> ResolvedImage:
    """Where an image would be, for plans made without building anything (`vnetlab plan`, golden files)."""
    cache = kernel.parent.parent
    if ref.kind == TINY:
        return ResolvedImage(ref, kernel, kernel.parent / "initrd.img")
    if ref.kind == DEBIAN:
        name = "-".join([DEBIAN, *ref.packages])
        return ResolvedImage(ref, kernel, kernel.parent / "initrd.img", cache / name / debian_image.ROOT_FILE)
    return ResolvedImage(ref, disk=Path(ref.file))


def ensure_images(
    refs: Iterable[ImageRef],
    cache: Path,
    say: Callable[[str], None],
    *,
    rebuild: bool = False,
) -> tuple[image.GuestImage, dict[ImageRef, ResolvedImage]]:
    """Build (or find in the cache) every image in `refs`; the tiny image always, since the
    debian kind boots with its kernel and the KVM probe uses it."""
    tiny = image.ensure_image(cache, rebuild=rebuild, progress=say)
    resolved: dict[ImageRef, ResolvedImage] = {}
    for ref in dict.fromkeys(refs):
        if ref.kind == TINY:
            resolved[ref] = ResolvedImage(ref, tiny.kernel, tiny.initrd)
        elif ref.kind == DEBIAN:
            disk = debian_image.ensure_disk(tiny, ref.packages, cache, rebuild=rebuild, progress=say)
            resolved[ref] = ResolvedImage(ref, tiny.kernel, tiny.initrd, disk.disk)
        else:
            resolved[ref] = ResolvedImage(ref, disk=user_image.import_image(Path(ref.file), cache, say))
    return tiny, resolved
