"""Guests through libvirt-python on qemu:///system.

Every call that could block on a dead or wedged daemon is bounded, and every
failure is turned into a HypervisorError that says what to do about it.
"""

from __future__ import annotations

import concurrent.futures
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, TypeVar

import libvirt

DEFAULT_URI = "qemu:///system"
LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
QEMU_PID_DIR = Path("/run/libvirt/qemu")
CALL_TIMEOUT = 30.0

T = TypeVar("T")


class HypervisorError(Exception):
    pass


def _silence_default_handler() -> None:
    # libvirt prints every error to stderr by default; vnetlab reports them itself.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def bounded(what: str, fn: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
    """Run a libvirt call with a deadline: a wedged libvirtd must not hang a lab."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise HypervisorError(f"{what}: libvirtd did not answer within {timeout:.0f} s (is it wedged? `vnetlab doctor`)") from None
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"{what}: {exc.get_error_message()}") from None
    finally:
        pool.shutdown(wait=False)


def connect(uri: str = DEFAULT_URI) -> libvirt.virConnect:
    _silence_default_handler()
    if uri == DEFAULT_URI and not LIBVIRT_SOCKET.exists():
        raise HypervisorError(f"libvirtd is not running ({LIBVIRT_SOCKET} is missing): start it with `libvirtd -d`, or run `vnetlab doctor`")
    if uri == DEFAULT_URI and not VIRTLOGD_SOCKET.exists():
        raise HypervisorError(f"virtlogd is not running ({VIRTLOGD_SOCKET} is missing): guests cannot start without it; start it with `virtlogd -d`")
    return bounded(f"connecting to {uri}", lambda: libvirt.open(uri), timeout=15.0)


def define(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    return bounded("defining domain", lambda: conn.defineXML(xml))


def start_paused(dom: libvirt.virDomain) -> None:
    """Paused, so its taps can be moved into the lab namespace before the guest sends a frame."""
    bounded(f"starting {dom.name()}", lambda: dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED), timeout=60.0)


def resume(dom: libvirt.virDomain) -> None:
    bounded(f"resuming {dom.name()}", dom.resume)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return bounded(f"looking up {name}", lambda: conn.lookupByName(name))
    except HypervisorError as exc:
        if "not found" in str(exc).lower() or "no domain" in str(exc).lower():
            return None
        raise


def is_running(dom: libvirt.virDomain) -> bool:
    return bool(bounded(f"state of {dom.name()}", dom.isActive))


def remove(conn: libvirt.virConnect, name: str) -> bool:
    """Destroy and undefine; idempotent. Returns whether the domain existed."""
    dom = lookup(conn, name)
    if dom is None:
        return False
    if is_running(dom):
        try:
            bounded(f"destroying {name}", dom.destroy, timeout=60.0)
        except HypervisorError:
            if is_running(dom):
                raise
    try:
        bounded(f"undefining {name}", dom.undefine)
    except HypervisorError:
        if lookup(conn, name) is not None:
            raise
    return True


def qemu_pid(domain: str) -> int | None:
    try:
        pid = int((QEMU_PID_DIR / f"{domain}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def lab_of(dom: libvirt.virDomain, metadata_ns: str) -> str | None:
    """The lab a domain belongs to, from the metadata vnetlab wrote into it (never from its name)."""
    try:
        raw = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_ns)
    except libvirt.libvirtError:
        return None
    try:
        return ET.fromstring(raw).get("name")
    except ET.ParseError:
        return None


def domains_of_lab(conn: libvirt.virConnect, lab: str, metadata_ns: str) -> list[str]:
    doms = bounded("listing domains", conn.listAllDomains)
    return sorted(d.name() for d in doms if lab_of(d, metadata_ns) == lab)
