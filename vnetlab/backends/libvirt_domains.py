"""Guests through libvirt-python on qemu:///system.

Every call that could block on a dead or wedged daemon is bounded, and every
failure is turned into a HypervisorError that says what to do about it.
"""

from __future__ import annotations

import os
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, TypeVar

import libvirt

from vnetlab.errors import VnetlabError

DEFAULT_URI = "qemu:///system"
LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
QEMU_PID_DIR = Path("/run/libvirt/qemu")
CALL_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0

T = TypeVar("T")


def version_text(number: int, parts: int = 2) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + micro) as "11.3" (or "11.3.0")."""
    return ".".join(str(n) for n in (number // 1_000_000, number // 1000 % 1000, number % 1000)[:parts])


class HypervisorError(VnetlabError):
    """`code`: libvirt's error code (libvirt.VIR_ERR_*) when libvirt raised it, else None.

    Decisions are taken on the code, never on the message: libvirt translates its messages."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class ForeignDomain(HypervisorError):
    """A domain of the looked-up name exists, but its metadata names another lab (or none)."""

    def __init__(self, message: str, owner: str | None):
        super().__init__(message)
        self.owner = owner


def is_gone(exc: BaseException) -> bool:
    """Whether a failure says the domain does not exist (libvirt's VIR_ERR_NO_DOMAIN)."""
    return isinstance(exc, HypervisorError) and exc.code == libvirt.VIR_ERR_NO_DOMAIN


def _silence_default_handler() -> None:
    # libvirt prints every error to stderr by default; vnetlab reports them itself.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def bounded(what: str, fn: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
    """Run a libvirt call with a deadline: a wedged libvirtd must not hang a lab.

    The call runs in a daemon thread: if libvirtd never answers, the thread is
    abandoned and cannot keep the process from exiting (a pool thread would be
    joined at exit, turning the bounded wait into an unbounded one).
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def body() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=body, name=f"libvirt: {what}", daemon=True).start()
    if not done.wait(timeout):
        raise HypervisorError(f"{what}: libvirtd did not answer within {timeout:g} s (is it wedged? `vnetlab doctor`)")
    error = outcome.get("error")
    if isinstance(error, libvirt.libvirtError):
        raise HypervisorError(f"{what}: {error.get_error_message()}", error.get_error_code()) from error
    if error is not None:
        raise error  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def connect(uri: str = DEFAULT_URI, timeout: float = CONNECT_TIMEOUT) -> libvirt.virConnect:
    _silence_default_handler()
    if uri == DEFAULT_URI and not LIBVIRT_SOCKET.exists():
        raise HypervisorError(f"libvirtd is not running ({LIBVIRT_SOCKET} is missing): start it with `libvirtd -d`, or run `vnetlab doctor`")
    if uri == DEFAULT_URI and not VIRTLOGD_SOCKET.exists():
        raise HypervisorError(f"virtlogd is not running ({VIRTLOGD_SOCKET} is missing): guests cannot start without it; start it with `virtlogd -d`")
    return bounded(f"connecting to {uri}", lambda: libvirt.open(uri), timeout=timeout)


def define(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    return bounded("defining domain", lambda: conn.defineXML(xml))


# The kernel refuses a bpf() program load with EAGAIN now and then (libbpf retries it; libvirt 9.0,
# loading the cgroup device filter of every domain it starts, does not): the domain start failed
# with "failed to load cgroup BPF prog: Resource temporarily unavailable" once in a day of make test.
TRANSIENT_START_ERROR = "Resource temporarily unavailable"
START_ATTEMPTS = 3


def start_paused(dom: libvirt.virDomain, pause: float = 0.2) -> None:
    """Paused, so its taps can be moved into the lab namespace before the guest sends a frame. A
    start the kernel refused for the moment (EAGAIN) is tried again: libvirt has already stopped
    the half-started qemu, and the domain stays defined."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            bounded(f"starting {dom.name()}", lambda: dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED), timeout=60.0)
            return
        except HypervisorError as exc:
            if attempt == START_ATTEMPTS or TRANSIENT_START_ERROR not in str(exc):
                raise
        time.sleep(pause)


def restore_paused(conn: libvirt.virConnect, save_image: Path, name: str, timeout: float = 120.0) -> None:
    """Restore the domain a save image's header describes (backends/save_image.py), paused: its taps
    are moved into the lab namespace before it runs again."""
    bounded(f"restoring {name}", lambda: conn.restoreFlags(str(save_image), None, libvirt.VIR_DOMAIN_SAVE_PAUSED), timeout=timeout)


def resume(dom: libvirt.virDomain) -> None:
    bounded(f"resuming {dom.name()}", dom.resume)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain named `name`, None when libvirt has none (VIR_ERR_NO_DOMAIN); any other failure raises."""
    try:
        return bounded(f"looking up {name}", lambda: conn.lookupByName(name))
    except HypervisorError as exc:
        if is_gone(exc):
            return None
        raise


def lookup_of_lab(conn: libvirt.virConnect, name: str, lab: str, metadata_ns: str) -> libvirt.virDomain | None:
    """The domain `name` of lab `lab`: None when there is no such domain; ForeignDomain when a domain of
    that name exists but its metadata does not name `lab` (never act on it: it is not this lab's)."""
    dom = lookup(conn, name)
    if dom is None:
        return None
    try:
        owner = lab_of(dom, metadata_ns)
    except HypervisorError as exc:
        if is_gone(exc):  # undefined between the two calls
            return None
        raise
    if owner != lab:
        whose = f"lab {owner!r}" if owner is not None else "no vnetlab lab"
        raise ForeignDomain(f"libvirt domain {name!r} does not belong to lab {lab!r}: its metadata names {whose}; left alone", owner)
    return dom


def is_running(dom: libvirt.virDomain) -> bool:
    return bool(bounded(f"state of {dom.name()}", dom.isActive))


def remove(conn: libvirt.virConnect, name: str, dom: libvirt.virDomain | None = None) -> bool:
    """Destroy and undefine; idempotent. Returns whether the domain existed.

    `dom`: the domain already looked up (and its owner checked), so the one removed is that one."""
    dom = dom if dom is not None else lookup(conn, name)
    if dom is None:
        return False
    try:
        if is_running(dom):
            try:
                bounded(f"destroying {name}", dom.destroy, timeout=60.0)
            except HypervisorError as exc:
                if is_gone(exc) or is_running(dom):
                    raise
        bounded(f"undefining {name}", dom.undefine)
    except HypervisorError as exc:
        if not is_gone(exc) and lookup(conn, name) is not None:
            raise
    return True


def qemu_pid(domain: str) -> int | None:
    try:
        pid = int((QEMU_PID_DIR / f"{domain}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def qemu_memory_kib(pid: int) -> dict[str, int] | None:
    """Pss and Rss (KiB) of a qemu process from /proc/PID/smaps_rollup; None when it is gone.
    Pss shares the pages several qemus map (libraries, the kernel file) among them: the fair figure."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    figures = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Pss", "Rss") and value.strip().endswith("kB"):
            figures[key.lower()] = int(value.split()[0])
    return figures if len(figures) == 2 else None


def qemu_group(conn: libvirt.virConnect, domain_type: str) -> int | None:
    """The group libvirt's DAC driver runs qemu as for `domain_type`, from the host capabilities.

    None when libvirt does no DAC relabelling (qemu then runs as root and needs no grant).
    """
    caps = ET.fromstring(bounded("reading host capabilities", conn.getCapabilities))
    for model in caps.iter("secmodel"):
        if model.findtext("model") != "dac":
            continue
        for label in model.findall("baselabel"):
            if label.get("type") == domain_type and label.text and ":" in label.text:
                return int(label.text.strip().split(":")[1].lstrip("+"))
    return None


def lab_of(dom: libvirt.virDomain, metadata_ns: str) -> str | None:
    """The lab a domain belongs to, from the metadata vnetlab wrote into it (never from its name).

    None only when the domain has no metadata in vnetlab's namespace (VIR_ERR_NO_DOMAIN_METADATA):
    it is not a lab's. Any other failure (libvirtd restarting, a timeout, the domain gone) raises a
    HypervisorError: "could not tell" must never be taken for "not ours", or a running guest would
    be skipped by teardown and forgotten with the state file."""
    try:
        raw = bounded(f"reading the lab metadata of {dom.name()}", lambda: dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_ns))
    except HypervisorError as exc:
        if exc.code == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    try:
        return ET.fromstring(raw).get("name")
    except ET.ParseError:
        return None


def domains_of_lab(conn: libvirt.virConnect, lab: str, metadata_ns: str) -> list[str]:
    doms = bounded("listing domains", conn.listAllDomains)
    return sorted(d.name() for d in doms if lab_of(d, metadata_ns) == lab)


LINK_STATES = ("up", "down")


def _interface(dom: libvirt.virDomain, mac: str) -> ET.Element:
    """The running domain's <interface> with this MAC (its live definition: libvirt compares the rest)."""
    live = ET.fromstring(bounded(f"reading the definition of {dom.name()}", lambda: dom.XMLDesc(0)))
    for iface in live.iter("interface"):
        found = iface.find("mac")
        if found is not None and (found.get("address") or "").lower() == mac.lower():
            return iface
    raise HypervisorError(f"{dom.name()} has no interface with MAC {mac}")


def link_state(dom: libvirt.virDomain, mac: str) -> str:
    """'up' or 'down': whether the guest's NIC has its carrier (`virsh domif-getlink`); no <link> element means up."""
    link = _interface(dom, mac).find("link")
    return "down" if link is not None and link.get("state") == "down" else "up"


def set_link_state(dom: libvirt.virDomain, mac: str, state: str) -> str:
    """Give or take the carrier of the guest's NIC, as a cable plugged or pulled (`virsh domif-setlink`):
    the live interface with <link state='…'/>, through virDomainUpdateDeviceFlags. Returns the state
    read back from the live definition."""
    if state not in LINK_STATES:
        raise ValueError(f"link state {state!r}: expected up or down")
    iface = _interface(dom, mac)
    link = iface.find("link")
    if link is None:
        link = ET.SubElement(iface, "link")
    link.set("state", state)
    xml = ET.tostring(iface, encoding="unicode")
    bounded(f"setting the link of {dom.name()} {mac} {state}", lambda: dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    return link_state(dom, mac)
