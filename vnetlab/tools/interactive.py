"""Getting into a running lab: SSH to a guest, its serial console, a shell in the lab namespace.

Design choices:
- `ssh LAB VM -- command` runs over paramiko (GuestSSH, pinned host key), like every other
  command vnetlab runs in a guest, and exits with the command's status.
- `ssh LAB VM` without a command hands the terminal to the system `ssh` client, run inside the
  lab namespace with the lab's key and the guest's pinned host key in a temporary known_hosts
  (StrictHostKeyChecking=yes). A terminal session needs raw mode, window-size changes, escape
  sequences and agent/locale handling that OpenSSH already does right; re-implementing them
  over a paramiko channel would be a worse ssh(1).
- `console LAB VM` talks to the guest's pty serial through libvirt's stream API (what
  `virsh console` does), so it works without knowing the pty path; Ctrl-] leaves.
- `shell LAB` is the user's shell under `ip netns exec` (which also gives /sys of the
  namespace), so `bridge link`, `tcpdump -i br0` work as in the tutorial.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import libvirt

from vnetlab.backends import netns
from vnetlab.run.apply import CLIENT_KEY, host_key_file, secrets_dir
from vnetlab.backends import libvirt_domains as hv
from vnetlab.run.configure import open_ssh
from vnetlab.run.lab import LabError
from vnetlab.plan.planner import METADATA_NS, Plan, PlannedVM

ESCAPE = b"\x1d"  # Ctrl-]
SSH_CONNECT_TIMEOUT = 20.0


def _vm(plan: Plan, name: str) -> PlannedVM:
    names = [v.name for v in plan.vms]
    if name not in names:
        raise LabError(f"lab {plan.lab!r} has no VM {name!r} (VMs: {', '.join(names)})")
    return plan.vm(name)


def _require_namespace(plan: Plan) -> None:
    if not netns.namespace_exists(plan.namespace):
        raise LabError(f"lab {plan.lab!r} has no namespace {plan.namespace} (is it up? see `vnetlab status`)")


# -- ssh --------------------------------------------------------------------------


def ssh_command(plan: Plan, vm_name: str, command: str, *, timeout: float, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run `command` in the guest over paramiko; (exit code, stdout, stderr)."""
    _require_namespace(plan)
    vm = _vm(plan, vm_name)
    with open_ssh(plan, vm, time.monotonic() + SSH_CONNECT_TIMEOUT) as ssh:
        result = ssh.run(command, timeout=timeout, stdin=stdin, check=False)
    return result.exit_code, result.stdout, result.stderr


def ssh_argv(plan: Plan, vm: PlannedVM, known_hosts: Path) -> list[str]:
    """The system ssh client inside the lab namespace, trusting only the guest's pinned host key."""
    return [
        "ip", "netns", "exec", plan.namespace,
        "ssh", "-i", str(secrets_dir(plan) / CLIENT_KEY),
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlgorithms=ssh-ed25519",
        "-o", "LogLevel=ERROR",
        f"root@{vm.mgmt.ip}",
    ]


def ssh_interactive(plan: Plan, vm_name: str) -> int:
    _require_namespace(plan)
    vm = _vm(plan, vm_name)
    if shutil.which("ssh") is None:
        raise LabError("the OpenSSH client is not installed (apt-get install openssh-client); `vnetlab ssh LAB VM -- COMMAND` works without it")
    host_key = host_key_file(plan, vm.name).read_text().split()
    with tempfile.TemporaryDirectory(prefix="vnetlab-ssh-") as tmp:
        known_hosts = Path(tmp) / "known_hosts"
        known_hosts.write_text(f"{vm.mgmt.ip} {host_key[0]} {host_key[1]}\n")
        return _run_foreground(ssh_argv(plan, vm, known_hosts))


def _run_foreground(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run a terminal program; Ctrl-C belongs to it, not to vnetlab."""
    proc = subprocess.Popen(argv, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


# -- shell ------------------------------------------------------------------------


def shell_argv(plan: Plan, command: str | None) -> list[str]:
    sh = os.environ.get("SHELL") or "/bin/bash"
    return ["ip", "netns", "exec", plan.namespace, sh, *(["-c", command] if command is not None else [])]


def shell(plan: Plan, command: str | None) -> int:
    lab = plan.lab
    _require_namespace(plan)
    env = {**os.environ, "VNETLAB_LAB": lab, "VNETLAB_NAMESPACE": plan.namespace}
    if command is None and sys.stdin.isatty():
        sys.stderr.write(f"shell in namespace {plan.namespace} (lab {lab}); `exit` to leave\n")
        env["PS1"] = f"[vnetlab {lab}] \\w# "
    return _run_foreground(shell_argv(plan, command), env)


# -- serial console ---------------------------------------------------------------


@contextmanager
def console_stream(plan: Plan, vm_name: str) -> Iterator[libvirt.virStream]:
    """A blocking libvirt stream on the guest's serial console (taken over if someone else holds it)."""
    lab = plan.lab
    vm = _vm(plan, vm_name)
    conn = hv.connect(vm.uri) if vm.uri else hv.connect()  # on its own hypervisor
    stream = None
    try:
        try:
            dom = hv.lookup_of_lab(conn, vm.domain, lab, METADATA_NS)  # a same-named domain of another lab is not this guest
        except hv.ForeignDomain as exc:
            raise LabError(f"guest {vm_name} of lab {lab!r} has no domain: {exc}") from None
        if dom is None or not hv.is_running(dom):
            raise LabError(f"guest {vm_name} of lab {lab!r} is not running (domain {vm.domain})")
        stream = conn.newStream(0)
        hv.bounded(f"opening the console of {vm.domain}", lambda: dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE))
        yield stream
    finally:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        conn.close()


def _pump_to(stream: libvirt.virStream, out: BinaryIO, stop: threading.Event, last_output: list[float]) -> None:
    """Copy console output to `out` until the stream ends or `stop` is set."""
    while not stop.is_set():
        try:
            data = stream.recv(4096)
        except libvirt.libvirtError:
            break
        if not isinstance(data, bytes) or not data:
            break
        last_output[0] = time.monotonic()
        out.write(data)
        out.flush()
    stop.set()


def console_exchange(plan: Plan, vm_name: str, data: bytes, out: BinaryIO, *, quiet_for: float = 1.0, timeout: float = 30.0) -> None:
    """Send `data` to the console and copy what comes back to `out` until it has been quiet
    for `quiet_for` seconds (or `timeout` passed): the scriptable form of `console`."""
    with console_stream(plan, vm_name) as stream:
        stop = threading.Event()
        last = [time.monotonic()]
        reader = threading.Thread(target=_pump_to, args=(stream, out, stop, last), daemon=True)
        reader.start()
        for line in data.splitlines(keepends=True):  # a line at a time, as typed: a 16-byte UART FIFO drops bursts
            stream.send(line)
            time.sleep(0.05)
        last[0] = time.monotonic()
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline and time.monotonic() - last[0] < quiet_for:
            time.sleep(0.05)
        stop.set()


def console_interactive(plan: Plan, vm_name: str) -> int:
    fd = sys.stdin.fileno()
    with console_stream(plan, vm_name) as stream:
        sys.stderr.write(f"connected to the serial console of {vm_name} (lab {plan.lab}); Ctrl-] to leave\r\n")
        stream.send(b"\r")  # wake the prompt
        stop = threading.Event()
        reader = threading.Thread(target=_pump_to, args=(stream, sys.stdout.buffer, stop, [0.0]), daemon=True)
        reader.start()
        saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        try:
            while not stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                chunk = os.read(fd, 1024)
                before_escape = chunk.split(ESCAPE)[0]
                if before_escape:
                    stream.send(before_escape)
                if not chunk or ESCAPE in chunk:
                    break
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            stop.set()
        sys.stderr.write("\r\nconsole closed\n")
    return 0
