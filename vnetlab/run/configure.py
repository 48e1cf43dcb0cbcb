"""Bring guests from 'started' to 'usable': readiness marker, SSH, data NIC addresses."""

from __future__ import annotations

import concurrent.futures
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vnetlab.errors import VnetlabError
from vnetlab.printable import printable
from vnetlab.run.apply import CLIENT_KEY, host_key_file, secrets_dir
from vnetlab.backends.image import GUEST_FAILED_MARKER, GUEST_READY_MARKER, console_says
from vnetlab.backends.keys import load_client_key
from vnetlab.plan.planner import Plan, PlannedNic, PlannedVM
from vnetlab.run.progress import Progress
from vnetlab.backends.ssh import GuestSSH, SSHError

CONSOLE_TAIL_LINES = 15


class GuestError(VnetlabError):
    pass


CONSOLE_TAIL_BYTES = 64 * 1024  # what is read back of a console log for an error message


Console = Callable[[], BinaryIO]  # opens a guest's serial log for reading (a file here, or over SFTP on its hypervisor)


def _opener(source: Path | Console) -> Console:
    return (lambda: source.open("rb")) if isinstance(source, Path) else source


@contextmanager
def console_of(plan: Plan, vm: PlannedVM) -> Iterator[Console]:
    """How to read a guest's serial log: the file here, unless a feature placed the guest on another hypervisor."""
    for feature in plan.features:
        source = feature.console(plan, vm)
        if source is not None:
            with source as console:
                yield console
            return
    yield _opener(vm.console_log)


def console_tail(source: Path | Console, lines: int = CONSOLE_TAIL_LINES) -> str:
    """The last lines of a serial log, reading at most its last CONSOLE_TAIL_BYTES (the guest writes
    it), made printable: a systemd-coloured line or a guest's escape sequences are shown, not obeyed."""
    try:
        with _opener(source)() as f:
            f.seek(0, 2)  # seek's return value: paramiko's SFTP files give none
            f.seek(max(0, f.tell() - CONSOLE_TAIL_BYTES))
            text = f.read(CONSOLE_TAIL_BYTES).decode(errors="replace")
    except OSError:
        return "(no console output yet)"
    except VnetlabError as exc:  # its hypervisor's SFTP stopped answering: the message says so
        return f"(the console cannot be read: {exc})"
    tail = [printable(line.rstrip("\r")) for line in text.splitlines()[-lines:]]
    return "\n".join(tail) if tail else "(console is empty)"


CONSOLE_POLL = 0.05  # s between reads of the serial log: the marker is seen ≤50 ms after it is written
LIVENESS_POLL = 1.0  # s between asking libvirt whether the guest still runs (an RPC to libvirtd)
CONSOLE_READ_MAX = 1024 * 1024  # bytes read per poll at most: a guest flooding its console cannot stall the wait


class ConsoleFollower:
    """Reads what a serial log gained since the last call, keeping only a short window to search.

    A guest (hostile or broken) can write its console as fast as virtlogd takes it: reading the
    whole file every poll would cost time and memory growing with it. The window keeps enough
    bytes before the new ones that a marker split across two reads is still found.
    """

    def __init__(self, source: Path | Console, keep: int = 4096):
        self.open = _opener(source)
        self.keep = keep
        self.offset = 0
        self.window = ""

    def new_text(self) -> str:
        """The window with what was appended since the last call (from the start again if the log was rotated)."""
        try:
            with self.open() as f:
                f.seek(0, 2)  # seek's return value: paramiko's SFTP files give none
                size = f.tell()
                if size < self.offset:  # rotated or truncated by virtlogd
                    self.offset = 0
                    self.window = ""
                f.seek(self.offset)
                data = f.read(CONSOLE_READ_MAX)
        except OSError:
            return self.window
        self.offset += len(data)
        text = self.window + data.decode(errors="replace")
        self.window = text[-self.keep:]
        return text


def wait_for_marker(vm: PlannedVM, deadline: float, is_running, stop: threading.Event, source: Path | Console | None = None) -> None:
    """Poll the serial log (written by virtlogd) for the guest's readiness line; `stop` abandons the wait."""
    wait_for_console(
        vm.console_log if source is None else source, vm.name,
        lambda text: console_says(text, GUEST_READY_MARKER, vm.name), lambda text: console_says(text, GUEST_FAILED_MARKER, vm.name),
        deadline, lambda: is_running(vm), stop, "no readiness marker on the serial console within the boot timeout (--boot-timeout)",
    )


def wait_for_console(
    source: Path | Console, name: str, ready: Callable[[str], bool], failed: Callable[[str], bool], deadline: float,
    running: Callable[[], bool], stop: threading.Event, too_late: str,
) -> None:
    """Poll a serial log until `ready` finds its line in what the guest wrote; raise GuestError, with
    the console's last lines, when `failed` finds its own, the guest stopped or `deadline` passed
    (`too_late`: what was missing)."""
    console = ConsoleFollower(source)
    next_liveness_check = 0.0
    while True:
        text = console.new_text()
        if ready(text):
            return
        if failed(text):
            raise GuestError(f"{name}: the guest's init failed. Last console lines:\n{console_tail(source)}")
        now = time.monotonic()
        if now >= next_liveness_check:
            if not running():
                raise GuestError(f"{name}: the guest stopped before it was ready. Last console lines:\n{console_tail(source)}")
            next_liveness_check = now + LIVENESS_POLL
        if now > deadline:
            raise GuestError(f"{name}: {too_late}. Last console lines:\n{console_tail(source)}")
        if stop.wait(CONSOLE_POLL):
            raise GuestError(f"{name}: waiting abandoned")


def guest_ssh(plan: Plan, vm: PlannedVM) -> GuestSSH:
    return GuestSSH(
        plan.namespace,
        vm.mgmt.ip or "",
        load_client_key(secrets_dir(plan) / CLIENT_KEY),
        host_key_file(plan, vm.name).read_text().strip(),
    )


def open_ssh(plan: Plan, vm: PlannedVM, deadline: float) -> GuestSSH:
    ssh = guest_ssh(plan, vm)
    ssh.connect(deadline)
    return ssh


def open_sessions(plan: Plan, vms: list[PlannedVM] | None = None, timeout: float = 20.0) -> dict[str, GuestSSH]:
    """A session to each guest of a lab that is up (default: all), within one deadline; if one
    cannot be opened, those already open are closed again."""
    deadline = time.monotonic() + timeout
    sessions: dict[str, GuestSSH] = {}
    try:
        for vm in plan.vms if vms is None else vms:
            sessions[vm.name] = open_ssh(plan, vm, deadline)
    except BaseException:
        for ssh in sessions.values():
            ssh.close()
        raise
    return sessions


CLOUD_INIT_TIMEOUT = 480.0  # s at least for a cloud-init guest: ~120 s to its final stage under TCG, alone
CLOUD_INIT_SAID = 2000  # characters of `cloud-init status` quoted in its error
SSH_PROBE_SLICE = 10.0  # s of SSH attempts between two questions to libvirt whether the guest still runs


def wait_for_cloud_init(vm: PlannedVM, ssh: GuestSSH, deadline: float) -> None:
    """Let cloud-init finish its last stage (it may still restart sshd or write files the lab's
    commands need); an image without cloud-init is taken as it is."""
    remaining = max(5.0, deadline - time.monotonic())
    result = ssh.run("command -v cloud-init >/dev/null || exit 0; cloud-init status --wait >/dev/null; cloud-init status", timeout=remaining, check=False)
    if result.exit_code not in (0, 2):  # 2: done, with recoverable errors (e.g. a deprecated key)
        said = f"{result.stdout.strip()} {result.stderr.strip()}"[-CLOUD_INIT_SAID:]  # the guest's words: bounded, printable (GuestError)
        raise GuestError(f"{vm.name}: cloud-init failed (exit {result.exit_code}): {said}\nLast console lines:\n{console_tail(vm.console_log)}")


def wait_for_trusted_ssh(plan: Plan, vm: PlannedVM, deadline: float, is_running, stop: threading.Event) -> GuestSSH:
    """A guest that prints no marker (cloud-init configures it) is ready when SSH answers with the
    pinned host key and takes the lab's key: until cloud-init has installed both, other answers
    are "not yet"."""
    ssh = guest_ssh(plan, vm)
    while True:
        try:
            ssh.connect(min(deadline, time.monotonic() + SSH_PROBE_SLICE), patient=True)
            return ssh
        except SSHError as exc:
            last = exc
        if stop.is_set():
            raise GuestError(f"{vm.name}: waiting abandoned")
        if not is_running(vm):
            raise GuestError(f"{vm.name}: the guest stopped before it was ready. Last console lines:\n{console_tail(vm.console_log)}")
        if time.monotonic() >= deadline:
            raise GuestError(
                f"{vm.name}: SSH did not answer with the pinned host key and accept the lab's key within "
                f"{CLOUD_INIT_TIMEOUT:g} s or --boot-timeout, whichever is longer (cloud-init may have failed; last attempt: {last}). "
                f"Last console lines:\n{console_tail(vm.console_log)}"
            )


@dataclass(frozen=True)
class GuestTiming:
    """How long a guest took, from the start of its own domain (its define, then its boot or
    restore): to its readiness marker (None for a guest that prints none), and to an
    authenticated SSH session; `start`: "boot" or "restore", and the warm image restored from."""

    image: str
    ready_seconds: float | None
    ssh_seconds: float
    start: str = "boot"
    warm_image: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"image": self.image, "start": self.start, "warm_image": self.warm_image, "ready_seconds": self.ready_seconds, "ssh_seconds": self.ssh_seconds}


def says_ready(vm: PlannedVM, how: str) -> bool:
    """Whether the guest prints VNETLAB-READY on its console: every guest but a cloud image booted
    by its own bootloader (a restored one does: its warm start's agent, once cloud-init was done
    before the warm image was saved)."""
    return vm.image.info.ready_on_console or how == "restore"


def come_up(
    plan: Plan, vm: PlannedVM, started: float, progress: Progress, boot_timeout: float, is_running, stop: threading.Event,
    *, how: str = "boot", warm_image: str | None = None,
) -> tuple[GuestSSH, GuestTiming]:
    """A started guest's way to an authenticated SSH session: its readiness marker, then SSH (a booted
    guest that prints no marker: SSH with the pinned key, then cloud-init's end). Timed from `started`,
    the guest's own start (time.monotonic()); `stop` abandons the wait."""
    deadline = started + boot_timeout
    label = vm.image.label()
    if not says_ready(vm, how):
        cloud_deadline = started + max(boot_timeout, CLOUD_INIT_TIMEOUT)
        ssh = wait_for_trusted_ssh(plan, vm, cloud_deadline, is_running, stop)
        trusted = time.monotonic()
        progress.vm_stage(vm.name, "SSH")
        try:
            wait_for_cloud_init(vm, ssh, cloud_deadline)
        except BaseException:
            ssh.close()
            raise
        timing = GuestTiming(label, round(time.monotonic() - started, 2), round(trusted - started, 2), how, warm_image)
        progress.detail(
            f"{vm.name} ({label}): SSH answered with its pinned key {trusted - started:.1f} s after its {how} began, "
            f"cloud-init done {time.monotonic() - trusted:.1f} s later"
        )
        return ssh, timing
    with console_of(plan, vm) as console:
        wait_for_marker(vm, deadline, is_running, stop, console)
    if stop.is_set():
        raise GuestError(f"{vm.name}: waiting abandoned")
    ready = time.monotonic()
    progress.vm_stage(vm.name, "console ready")
    ssh = open_ssh(plan, vm, max(deadline, ready + 30.0))
    connected = time.monotonic()
    progress.vm_stage(vm.name, "SSH")
    progress.detail(f"{vm.name} ({label}): ready {ready - started:.1f} s after its {how} began, SSH {connected - ready:.1f} s later")
    return ssh, GuestTiming(label, round(ready - started, 2), round(connected - started, 2), how, warm_image)


# The kernel powers off at once (sysrq 'o' works whatever init the guest runs, and regardless of the
# kernel.sysrq mask): nothing to unmount or stop in a guest that is thrown away next.
POWER_OFF = "echo o > /proc/sysrq-trigger"
POWER_OFF_WAIT = 1.0  # seconds for the local guests to be off; teardown destroys any that is not


def power_off(plan: Plan, sessions: dict[str, GuestSSH], running: Callable[[PlannedVM], bool]) -> None:
    """Before teardown: each guest powers itself off, so its qemu exits now and libvirt removes it
    without its destroy (SIGTERM, then a 200 ms poll per domain). Best effort, never trusted: a guest
    whose root stopped it, or that does not answer, is destroyed as before. `running`: whether
    libvirt still counts the guest's domain as active (waited for on this machine only)."""
    local = {vm.name: vm for vm in plan.vms if vm.host is None and vm.name in sessions}

    def one(name: str) -> None:
        try:
            sessions[name].start(POWER_OFF, timeout=POWER_OFF_WAIT)
        except SSHError:
            local.pop(name, None)  # not asked: nothing to wait for

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(sessions))) as pool:
        list(pool.map(one, list(sessions)))
    deadline = time.monotonic() + POWER_OFF_WAIT
    waiting = list(local.values())
    while waiting and time.monotonic() < deadline:
        waiting = [vm for vm in waiting if running(vm)]
        if waiting:
            time.sleep(0.01)


def ipv6_settings(nic: PlannedNic) -> list[str]:
    """Shell lines (for `$dev`, before it is up) that make a data NIC's IPv6 what the plan says, in a
    lab that uses IPv6: a SLAAC NIC forms its address from its MAC (EUI-64, no temporary
    addresses) from the router advertisements it accepts; any other NIC accepts none (no stray
    address or default route), and one with a static IPv6 address skips duplicate address
    detection, so the address is usable at once. Nothing in a lab without IPv6 (the kernel has none)."""
    if nic.link_local is None:
        return []
    conf = "/proc/sys/net/ipv6/conf/$dev"
    if nic.slaac:
        wanted = {"addr_gen_mode": 0, "use_tempaddr": 0, "accept_ra": 1, "autoconf": 1}
    else:
        wanted = {"accept_ra": 0, "autoconf": 0, **({"dad_transmits": 0} if nic.cidr6 else {})}
    return [f"echo {value} > {conf}/{key}" for key, value in wanted.items()]


def find_nic(mac: str) -> str:
    """Shell that sets $dev to the guest's interface with this MAC, or exits 1 saying so (no fork per NIC)."""
    return (
        f"mac={shlex.quote(mac)}; dev=; "
        'for d in /sys/class/net/*; do read -r a < "$d/address"; [ "$a" = "$mac" ] && dev=${d##*/}; done; '
        '[ -n "$dev" ] || { echo "no interface with MAC $mac" >&2; exit 1; }'
    )


# A static IPv6 address is usable (not tentative) before the checks: right after the link came up a
# ping to fd00:1::3 was measured leaving from the link-local address (ipv6-ndp, 3 of 6 echo pairs
# between the static addresses), the static one not yet usable. Waits at most 5 s.
_USABLE_V6 = 'n=0; while ip -6 -o addr show dev "$dev" | grep -q tentative && [ $n -lt 50 ]; do n=$((n+1)); sleep 0.1; done; '


def address_vm(vm: PlannedVM, ssh: GuestSSH, progress: Progress | None = None) -> None:
    """Find each data NIC of the guest by its MAC (not its name or PCI order) and give it the
    scenario's static addresses (DHCP's and SLAAC's the guest gets itself: the DHCP feature waits
    for them): one SSH round trip for all of them (a slow TCG guest forks one shell)."""
    steps = []
    for nic in vm.nics:
        steps.append(
            find_nic(nic.mac) + "; "
            + "".join(f"{line} && " for line in ipv6_settings(nic))
            + "".join(f"ip addr add {shlex.quote(cidr)} dev $dev && " for cidr in nic.static)
            + 'ip link set "$dev" up || exit 1; '
            + (_USABLE_V6 if nic.cidr6 and not nic.slaac else "")
            + 'echo "$dev"'
        )
    if steps:
        ssh.run("; ".join(steps), timeout=20.0)
    if progress is not None:
        progress.vm_stage(vm.name, "addressed")
