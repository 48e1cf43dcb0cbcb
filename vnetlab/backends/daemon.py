"""Daemons a lab runs in its namespaces for its lifetime: Open vSwitch's ovsdb-server and
ovs-vswitchd, a bridge's dnsmasq (DHCP, router advertisements), a simulated hypervisor's sshd.

One way to run them all, so that none is left behind:
- recorded in the lab's state before it starts ("<name>:"), then with its PID ("<name>:<pid>"),
  so a kill -9 between the two still leaves a record teardown acts on;
- started as `ip netns exec NS PROGRAM …`, which execs the program in place (the PID is the
  daemon's), in a session of its own (Ctrl-C in the terminal reaches vnetlab, which stops it);
- known as the lab's by its command line, which names a file of the lab (its config file or its
  folder): a PID reused since by another process is never signalled;
- stopped by its recorded PID — or, when the record never got one, as every process in the
  namespace that is the lab's daemon — with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vnetlab import procfs
from vnetlab.backends import netns
from vnetlab.errors import VnetlabError

STOP_WAIT = 3.0  # s after SIGTERM (then after SIGKILL) for it to be gone


class DaemonError(VnetlabError):
    """A lab daemon could not be started or stopped (names the daemon and why)."""


class Records(Protocol):
    """Where a daemon is recorded: before it starts, then with its PID (a lab's state file)."""

    def record(self, name: str) -> None: ...

    def settle(self, intent: str, name: str) -> None: ...


@dataclass(frozen=True)
class Daemon:
    """One daemon of a lab: what to run where, and how to know it again by its command line."""

    name: str  # its record's name before the PID, e.g. "ovsdb-server", "lan" (a bridge's dnsmasq), "hv2"
    argv: Sequence[str]  # the program and its arguments, as run inside the namespace
    namespace: str
    marker: str  # text of its command line that makes it this lab's (its config file, its folder)
    log: Path | None = None  # its stdout and stderr, appended (None: discarded)
    env: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def program(self) -> str:
        """What /proc/PID/comm says while it runs (the kernel keeps 15 characters)."""
        return os.path.basename(self.argv[0])[:15]

    def record_name(self, pid: int | None = None) -> str:
        return f"{self.name}:{'' if pid is None else pid}"


def spawn(daemon: Daemon) -> int:
    """Start it in its namespace, in a session of its own; its PID."""
    out = daemon.log.open("ab") if daemon.log is not None else None
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", daemon.namespace, *daemon.argv],
            env=dict(daemon.env) if daemon.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out or subprocess.DEVNULL,
            stderr=out or subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches vnetlab, which tears the daemon down itself
        )
    except OSError as exc:
        raise DaemonError(f"cannot start {daemon.program} in namespace {daemon.namespace!r}: {exc}") from exc
    finally:
        if out is not None:
            out.close()
    return proc.pid


def start(daemon: Daemon, records: Records) -> int:
    """Record it, start it, record its PID; its PID."""
    intent = daemon.record_name()
    records.record(intent)
    pid = spawn(daemon)
    records.settle(intent, daemon.record_name(pid))
    return pid


def is_running(pid: int, program: str, marker: str) -> bool:
    """Whether `pid` is still `program` with `marker` on its command line (not a zombie, not a PID
    reused since). The whole command line is searched: a daemon may rewrite its title (sshd does)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields) and comm == program[:15] and marker.encode() in cmdline.replace(b"\0", b" ")


def wait_until(ready: Callable[[], bool], daemon: Daemon, pid: int, timeout: float, what: str) -> None:
    """Poll `ready` until it holds; DaemonError (with the log's tail) if the daemon exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not _alive(pid):  # not is_running: `ip netns exec` may not have exec'd the daemon yet
            raise DaemonError(f"{daemon.program} exited before {what}{_log_tail(daemon)}")
        if time.monotonic() > deadline:
            raise DaemonError(f"{daemon.program} did not get {what} within {timeout:g} s{_log_tail(daemon)}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields)


def _log_tail(daemon: Daemon, lines: int = 5) -> str:
    if daemon.log is None:
        return ""
    try:
        with daemon.log.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"; its log ({daemon.log}) ends: " + " | ".join(tail) if tail else ""


def stop(record: str, program: str, marker: str, namespace: str | None = None) -> None:
    """Stop the daemon a record names ("<name>:<pid>"; SIGTERM, then SIGKILL). A record without its
    PID ("<name>:", made before the start) stops every `program` with `marker` in `namespace`.
    Gone already is fine."""
    name, _, pid_text = record.rpartition(":")
    if not name or not (pid_text.isdigit() or pid_text == ""):
        raise DaemonError(f"unexpected record of a {program} daemon: {record!r}")
    if pid_text:
        pids = [int(pid_text)]
    elif namespace is not None:
        pids = [pid for pid in procfs.net_namespace_members(netns.namespace_path(namespace)) if is_running(pid, program, marker)]
    else:
        pids = []
    for pid in pids:
        _stop(pid, program, marker)


def _stop(pid: int, program: str, marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(pid, program, marker):
            _reap(pid, within=STOP_WAIT)
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + STOP_WAIT
        while time.monotonic() < end:
            _reap(pid)
            if not is_running(pid, program, marker):
                _reap(pid, within=STOP_WAIT)  # it may have exited just after the first: collect that zombie too
                return
            time.sleep(0.05)
    raise DaemonError(f"{program} (pid {pid}) did not stop")


def _reap(pid: int, within: float = 0.0) -> None:
    """Collect it if it is a child of this process (`vnetlab run` started it), so no zombie lingers;
    waiting up to `within` s for a child that no longer runs its program but is not a zombie yet
    (an exiting process has an empty command line before it becomes one)."""
    end = time.monotonic() + within
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return  # not ours, or collected already
        if time.monotonic() >= end:
            return
        time.sleep(0.01)
