"""Named network namespaces (/run/netns/<name>), compatible with `ip netns`.

Python 3.11 has no os.setns, so namespace switches go through libc via ctypes.
A network namespace is a per-thread attribute: every switch happens in a
short-lived helper thread, so the caller's thread (and every other thread of
the process) stays in the namespace it started in. Sockets keep the namespace
they were created in, which is how the rest of vnetlab talks into a lab.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute

from vnetlab import procfs
from vnetlab.errors import VnetlabError

T = TypeVar("T")

NETNS_DIR = "/run/netns"

_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_BIND = 0x1000
_MS_SHARED = 1 << 20
_MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(VnetlabError):
    """A namespace could not be created, entered, changed or removed."""


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name or len(name) > 255:
        raise NamespaceError(f"invalid namespace name {name!r}")


def namespace_path(name: str) -> str:
    """The bind-mount file of namespace `name` (open it to get a namespace fd)."""
    _check_name(name)
    return os.path.join(NETNS_DIR, name)


def _libc_call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread and hand back its result or exception.

    The thread dies afterwards, taking whatever namespace it switched to with it.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def body() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=body, name="vnetlab-netns", daemon=True).start()
    try:
        done.wait()
    except BaseException:
        # Ctrl-C or SIGTERM (raised here by vnetlab.run.lab's handler) while fn runs: let fn finish
        # (a netlink call is short) so it does not go on beside the teardown, or die half-way
        # when the interpreter exits; then pass the interruption on. (An Event, not join():
        # Python 3.11 marks a thread stopped when a signal interrupts join().)
        done.wait()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _write_sysctl(key: str, value: str) -> None:
    """Write a net.* sysctl in the calling thread's network namespace.

    Only net.* keys are namespaced; refusing the others keeps a lab from ever
    changing a host-wide setting. Keys may use '/' separators (as sysctl(8) does)
    when a component such as an interface name contains a dot.
    """
    parts = key.split("/") if "/" in key else key.split(".")
    if parts[0] != "net" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise NamespaceError(f"refusing sysctl {key!r}: only net.* keys are per-namespace")
    with open(os.path.join("/proc/sys", *parts), "w", encoding="ascii") as fh:
        fh.write(value)


def _make_run_dir_shared() -> None:
    """Make /run/netns a shared mount, as iproute2 does.

    Then unmounting a namespace file also unmounts the copies held by other
    mount namespaces (for instance processes started with `ip netns exec`),
    so deleted namespaces are really freed.
    """
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    run_dir = NETNS_DIR.encode()
    if _libc.mount(b"none", run_dir, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    err = ctypes.get_errno()
    if err != errno.EINVAL:  # EINVAL: not a mount point yet, so bind it onto itself first
        raise OSError(err, f"mount --make-rshared {NETNS_DIR}: {os.strerror(err)}")
    _libc_call(_libc.mount(run_dir, run_dir, b"none", _MS_BIND | _MS_REC, None), f"bind {NETNS_DIR}")
    _libc_call(_libc.mount(b"none", run_dir, None, _MS_SHARED | _MS_REC, None), f"mount --make-rshared {NETNS_DIR}")


def create_namespace(name: str) -> None:
    """Create /run/netns/<name> with lo up and IPv6 disabled (no ICMPv6 noise in captures)."""
    path = namespace_path(name)
    try:
        _make_run_dir_shared()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        raise NamespaceError(f"namespace {name!r} already exists") from None
    except OSError as exc:
        raise NamespaceError(f"cannot create namespace {name!r}: {exc}") from exc

    def setup() -> None:
        _libc_call(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _libc_call(
            _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None),
            f"bind mount {path}",
        )
        if os.path.isdir("/proc/sys/net/ipv6"):  # absent when the kernel runs with ipv6.disable=1
            _write_sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            _write_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    try:
        _in_thread(setup)
    except Exception as exc:
        delete_namespace(name)
        raise NamespaceError(f"cannot create namespace {name!r}: {exc}") from exc


def delete_namespace(name: str) -> None:
    """Unmount and remove the namespace file; absent is fine.

    The kernel frees the namespace (and destroys its virtual links) once no
    process, socket or mount refers to it any more.
    """
    path = namespace_path(name)
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        err = ctypes.get_errno()
        raise NamespaceError(f"cannot unmount {path}: {os.strerror(err)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NamespaceError(f"cannot remove {path}: {exc}") from exc


END_GRACE = 2.0  # s a process in a namespace being removed has to end on SIGTERM before SIGKILL


def processes_in(name: str) -> list[int]:
    """The processes living in namespace `name` (none when it does not exist)."""
    return procfs.net_namespace_members(namespace_path(name))


def _pidfds_in(name: str) -> dict[int, int]:
    """A pidfd for each process in the namespace (not this one), each checked again once held:
    signals sent through it reach that process, never one that got its PID since."""
    path = namespace_path(name)
    held: dict[int, int] = {}
    for pid in processes_in(name):
        if pid == os.getpid():
            continue
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        if _same_namespace(pid, path):
            held[pid] = fd
        else:
            os.close(fd)
    return held


def _same_namespace(pid: int, path: str) -> bool:
    try:
        a, b = os.stat(f"/proc/{pid}/ns/net"), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def end_processes(name: str, grace: float = END_GRACE) -> list[int]:
    """End every process in namespace `name`, before the namespace is deleted: one left there (a
    command a scenario started in the background, a daemon) would keep running as root in a
    namespace nobody can reach any more. SIGTERM, then SIGKILL to what is left after `grace`
    seconds, until none is left; returns the PIDs signalled."""
    ended: set[int] = set()
    start = time.monotonic()
    while True:
        held = _pidfds_in(name)
        if not held:
            return sorted(ended)
        waited = time.monotonic() - start
        if waited > 2 * grace + 5.0:
            for fd in held.values():
                os.close(fd)
            raise NamespaceError(f"processes {', '.join(map(str, sorted(held)))} in namespace {name!r} did not end within {waited:.0f} s of SIGKILL")
        sig = signal.SIGTERM if waited < grace else signal.SIGKILL
        try:
            for pid, fd in held.items():
                try:
                    signal.pidfd_send_signal(fd, sig)
                    ended.add(pid)
                except ProcessLookupError:
                    pass
            _wait_for_exits(list(held.values()), min(0.5, max(0.05, grace - waited)) if sig == signal.SIGTERM else 0.5)
        finally:
            for fd in held.values():
                os.close(fd)


def _wait_for_exits(pidfds: list[int], timeout: float) -> None:
    """Until every pidfd says its process has exited (readable), or `timeout` seconds."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    left, deadline = set(pidfds), time.monotonic() + timeout
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for fd, _ in poller.poll(remaining * 1000):
            left.discard(fd)
            poller.unregister(fd)


def namespace_exists(name: str) -> bool:
    return os.path.exists(namespace_path(name))


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def run_in_namespace(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call fn(*args, **kwargs) in a helper thread that has entered namespace `name`.

    Sockets fn creates stay in that namespace after it returns; threads fn
    starts inherit it. /proc/sys/net follows the thread's namespace, but
    /sys/class/net and /proc/net (= /proc/self/net) do not: use netlink there.
    """
    path = namespace_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"namespace {name!r} does not exist") from None
    except OSError as exc:
        raise NamespaceError(f"cannot open namespace {name!r}: {exc}") from exc

    def enter_and_call() -> T:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NamespaceError(f"cannot enter namespace {name!r}: {os.strerror(err)}")
        return fn(*args, **kwargs)

    try:
        return _in_thread(enter_and_call)
    finally:
        os.close(fd)


def set_sysctl(ns: str, key: str, value: str) -> None:
    """Set a net.* sysctl (e.g. "net.ipv4.ip_forward", "1") inside namespace ns only."""
    try:
        run_in_namespace(ns, _write_sysctl, key, value)
    except OSError as exc:
        raise NamespaceError(f"cannot set {key}={value} in namespace {ns!r}: {exc}") from exc
