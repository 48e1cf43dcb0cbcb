"""`vnetlab image list|build|prune`: what the image cache holds, what is current, what can go."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetlab.backends import debian_image, image_cache, user_image, warm_image
from vnetlab.backends.image import KIND as TINY
from vnetlab.backends.image import GuestImage, cached_image
from vnetlab.backends.image_kinds import DEBIAN, FILE, ImageRef, ResolvedImage, ensure_images


@dataclass(frozen=True)
class ImageRow:
    name: str
    kind: str
    current: bool  # made from the current recipe (a file import: of the file as it is now)
    size: int  # bytes on disk
    built: str
    seconds: float | None
    detail: str  # packages, kernel, or the imported file
    locked: int  # packages in its lock file

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "current": self.current, "size_bytes": self.size,
            "built": self.built, "build_seconds": self.seconds, "detail": self.detail, "locked_packages": self.locked,
        }


@dataclass(frozen=True)
class _Now:
    """What decides whether a cache entry is current: the tiny image of the current recipe (if
    built), every entry by name (a warm image's base), and the QEMU and libvirt installed."""

    tiny: GuestImage | None
    entries: dict[str, image_cache.CacheEntry]
    versions: str | None


def _now(cache: Path) -> _Now:
    try:
        versions = warm_image.host_versions()
    except warm_image.WarmError:
        versions = None
    return _Now(cached_image(cache), {e.path.name: e for e in image_cache.entries(cache)}, versions)


def _current(entry: image_cache.CacheEntry, now: _Now) -> bool:
    """Whether the current recipe or file still makes this entry; a warm image: whether the image it
    was booted from is current and the QEMU and libvirt that saved it are the ones installed."""
    info, tiny = entry.info, now.tiny
    if entry.kind == warm_image.KIND:
        base = now.entries.get(str(info.get("base", "")))
        return base is not None and base.kind != warm_image.KIND and _current(base, now) and info.get("versions") == now.versions
    if entry.kind == TINY:
        return tiny is not None and entry.path == tiny.entry
    if entry.kind == DEBIAN:
        return tiny is not None and info.get("tiny") == tiny.recipe_hash and info.get("hash") == debian_image.image_hash(tiny, info.get("packages", []))
    if entry.kind == FILE:
        source = Path(str(info.get("source", "")))
        try:
            return user_image.import_key(source) == info.get("hash")
        except OSError:
            return False
    return False


def list_images(cache: Path) -> list[ImageRow]:
    now = _now(cache)
    rows = []
    for entry in now.entries.values():
        info = entry.info
        lock = entry.path / image_cache.LOCK
        if entry.kind == TINY:
            detail = f"kernel {info.get('kernel_version', '?')}"
        elif entry.kind == DEBIAN:
            detail = ", ".join(info.get("packages", [])) or "(recipe packages only)"
        elif entry.kind == FILE:
            detail = str(info.get("source", ""))
        elif entry.kind == warm_image.KIND:
            detail = (f"warm start: {info.get('image', '?')}, {info.get('memory_mib', '?')} MiB, {info.get('vcpus', '?')} vCPU, "
                      f"{info.get('nics', '?')} NIC(s), booted from {info.get('base', '?')} ({info.get('versions', '?')})")
        else:
            detail = "left by an older vnetlab (prune removes it)"
        rows.append(ImageRow(
            entry.path.name, entry.kind, _current(entry, now), entry.size(), str(info.get("built", "")),
            info.get("seconds"), detail, len(lock.read_text().splitlines()) if lock.is_file() else 0,
        ))
    return rows


def prune_images(cache: Path, *, everything: bool = False) -> list[Path]:
    """Remove every entry that is not current (all of them with `everything`): a warm image goes
    with the image it was booted from."""
    now = _now(cache)
    keep = set() if everything else {e.path for e in now.entries.values() if _current(e, now)}
    return image_cache.prune(cache, keep)


def build_images(refs: Iterable[ImageRef], cache: Path, say: Callable[[str], None], *, rebuild: bool) -> list[ResolvedImage]:
    _tiny, resolved = ensure_images(refs, cache, say, rebuild=rebuild)
    return list(resolved.values())
