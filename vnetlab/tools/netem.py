"""netem values as a scenario and `vnetlab netem` give them, the `tc` command that applies them in
a guest, and the qdisc read back from it.

Values are checked here, before anything runs: a delay or jitter like `40ms`, `1.5s` or `500us`;
loss like `10%`; a rate like `20mbit`, `512kbit` or `1gbit`. The command is built from the parsed
values, never from the text, so nothing a scenario says reaches a guest's shell unchecked.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from vnetlab.backends import host_netem
from vnetlab.backends.ssh import GuestSSH
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.plan.planner import Plan
from vnetlab.run.configure import open_ssh

TC = "/usr/sbin/tc"  # iproute2's tc (the tiny image's busybox has a `tc` without netem)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)")
_US = {"us": 1, "ms": 1_000, "s": 1_000_000}
_BITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
DELAY_MAX_US = 60_000_000  # 60 s: longer, and SSH and the checks time out first
RATE_MIN, RATE_MAX = 8_000, 10_000_000_000  # 8 kbit/s .. 10 Gbit/s
QDISC_TEXT_MAX = 4096  # what is kept of `tc qdisc show` (guest output)


class NetemValueError(ValueError):
    """A netem value that cannot be used; `field` names it (None: the settings as a whole)."""

    def __init__(self, field: str | None, detail: str):
        super().__init__(f"{field}: {detail}" if field else detail)
        self.field = field
        self.detail = detail


class NetemError(VnetlabError):
    pass


@dataclass(frozen=True)
class Netem:
    """Parsed netem settings; None leaves that part out."""

    delay_us: int | None = None
    jitter_us: int | None = None
    loss_percent: float | None = None
    rate_bits: int | None = None

    def tc_args(self, *, rate: bool = True) -> list[str]:
        """The netem part of a `tc qdisc replace … netem` command (units tc reads exactly); rate=False
        leaves the rate out (on the host, a tbf under netem limits the rate)."""
        args: list[str] = []
        if self.delay_us is not None:
            args += ["delay", _tc_time(self.delay_us)] + ([_tc_time(self.jitter_us)] if self.jitter_us else [])
        if self.loss_percent is not None:
            args += ["loss", f"{self.loss_percent:g}%"]
        if rate and self.rate_bits is not None:
            args += ["rate", tc_rate(self.rate_bits)]
        return args

    def describe(self) -> str:
        parts = []
        if self.delay_us is not None:
            parts.append(f"delay {_ms(self.delay_us)}" + (f" ± {_ms(self.jitter_us)}" if self.jitter_us else ""))
        if self.loss_percent is not None:
            parts.append(f"loss {self.loss_percent:g}%")
        if self.rate_bits is not None:
            parts.append(f"rate {_rate(self.rate_bits)}")
        return ", ".join(parts)


def _tc_time(us: int) -> str:
    return f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"


def tc_rate(bits: int) -> str:
    unit = next((u for u in ("gbit", "mbit", "kbit") if bits % _BITS[u] == 0), "bit")
    return f"{bits // _BITS[unit]}{unit}"


def _ms(us: int) -> str:
    return f"{us / 1000:g} ms"


def _rate(bits: int) -> str:
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= size:
            return f"{bits / size:g} {unit}"
    return f"{bits} bit/s"


def parse_duration(text: str, what: str, max_us: int = DELAY_MAX_US) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise NetemValueError(what, f"expected a duration like 40ms, 1.5s or 500us, got {text!r}")
    us = round(float(match.group(1)) * _US[match.group(2)])
    if not 0 <= us <= max_us:
        raise NetemValueError(what, f"{text} is out of range (0 to {max_us / 1_000_000:g}s)")
    return us


def parse_loss(text: str) -> float:
    match = _PERCENT.fullmatch(text.strip())
    if match is None:
        raise NetemValueError("loss", f"expected a percentage like 10%, got {text!r}")
    value = float(match.group(1))
    if not 0 <= value <= 100:
        raise NetemValueError("loss", f"{text} is out of range (0% to 100%)")
    return value


def parse_rate(text: str) -> int:
    match = _RATE.fullmatch(text.strip().lower())
    if match is None:
        raise NetemValueError("rate", f"expected a rate like 20mbit, 512kbit or 1gbit, got {text!r}")
    bits = round(float(match.group(1)) * _BITS[match.group(2)])
    if not RATE_MIN <= bits <= RATE_MAX:
        raise NetemValueError("rate", f"{text} is out of range (8kbit to 10gbit)")
    return bits


def netem_problems(delay: str | None, jitter: str | None, loss: str | None, rate: str | None) -> list[NetemValueError]:
    """Every problem of the four texts: each value that does not parse, then the combination."""
    parsers = {"delay": lambda t: parse_duration(t, "delay"), "jitter": lambda t: parse_duration(t, "jitter"), "loss": parse_loss, "rate": parse_rate}
    problems = []
    for name, text in (("delay", delay), ("jitter", jitter), ("loss", loss), ("rate", rate)):
        if text is not None:
            try:
                parsers[name](text)
            except NetemValueError as exc:
                problems.append(exc)
    if delay is None and jitter is None and loss is None and rate is None:
        problems.append(NetemValueError(None, "expected at least one of: delay, jitter, loss, rate"))
    if jitter is not None and delay is None:
        problems.append(NetemValueError("jitter", "needs a delay to vary around"))
    return problems


def parse_netem(delay: str | None, jitter: str | None, loss: str | None, rate: str | None) -> Netem:
    """Netem from its four texts (each optional, at least one given); NetemValueError names the first bad one."""
    problems = netem_problems(delay, jitter, loss, rate)
    if problems:
        raise problems[0]
    return Netem(
        parse_duration(delay, "delay") if delay is not None else None,
        parse_duration(jitter, "jitter") if jitter is not None else None,
        parse_loss(loss) if loss is not None else None,
        parse_rate(rate) if rate is not None else None,
    )


def apply_script(nic: str, netem: Netem) -> str:
    """What a guest runs to impair the frames `nic` sends: a new netem qdisc at its root. Any old
    one goes first (`tc qdisc replace` of a netem would keep the settings not given, e.g. a rate)."""
    command = [TC, "qdisc", "add", "dev", nic, "root", "netem", *netem.tc_args()]
    remove = shlex.join([TC, "qdisc", "del", "dev", nic, "root"])
    return f"modprobe sch_netem 2>/dev/null; {remove} 2>/dev/null; {shlex.join(command)}"


def clear_script(nic: str) -> str:
    """Back to the kernel's default qdisc; not an error when there was no netem."""
    return f"{shlex.join([TC, 'qdisc', 'del', 'dev', nic, 'root'])} 2>/dev/null; true"


def show_script(nic: str) -> str:
    return shlex.join([TC, "qdisc", "show", "dev", nic])


def netem_line(qdisc_show: str) -> str | None:
    """The netem qdisc's line in `tc qdisc show` output (untrusted guest text: bounded), or None."""
    for line in qdisc_show[:QDISC_TEXT_MAX].splitlines():
        if line.startswith("qdisc netem "):
            return " ".join(line.split())
    return None


def apply_in_guest(ssh: GuestSSH, vm: str, nic: str, netem: Netem) -> str:
    """Impair `nic` in the guest and return the netem line read back (NetemError if there is none)."""
    result = ssh.run(apply_script(nic, netem) + " && " + show_script(nic), timeout=20.0, check=False)
    line = netem_line(result.stdout)
    if result.exit_code != 0 or line is None:
        raise NetemError(f"{vm}: netem on {nic} ({netem.describe()}) failed (exit {result.exit_code}): {excerpt(result.stderr + result.stdout)}")
    return line


def read_back(ssh: GuestSSH, nic: str) -> str | None:
    return netem_line(ssh.run(show_script(nic), timeout=10.0, check=False).stdout)


def change_live(plan: Plan, vm: str, nic: str, netem: Netem | None, *, clear: bool = False) -> str:
    """`vnetlab netem`: set (netem), clear, or only read the impairment of a running lab's guest NIC,
    where the lab's netem runs (the host for a NIC it impairs there, else inside the guest);
    returns what the kernel shows afterwards."""
    if vm not in {v.name for v in plan.vms}:
        raise NetemError(f"lab {plan.lab} has no VM {vm!r} (VMs: {', '.join(v.name for v in plan.vms)})")
    names = {n.guest_name for n in plan.vm(vm).nics}
    if nic not in names:
        raise NetemError(f"{vm} has no data NIC {nic!r} (NICs: {', '.join(sorted(names))})")
    on_host = next((link for link in plan.part("netem", None).links if (link.vm, link.nic) == (vm, nic) and link.ifb), None) if plan.part("netem", None) else None
    if on_host is not None:
        if netem is not None:
            return f"host {on_host.ifb} (tap {on_host.tap}): " + host_netem.impair(plan.namespace, on_host.tap, on_host.ifb, netem)
        if clear:
            host_netem.clear_netem(plan.namespace, on_host.ifb)
        return f"host {on_host.ifb} (tap {on_host.tap}): " + (host_netem.read_netem(plan.namespace, on_host.ifb) or "no netem qdisc")
    ssh = open_ssh(plan, plan.vm(vm), time.monotonic() + 20.0)
    try:
        if netem is not None:
            return apply_in_guest(ssh, vm, nic, netem)
        if clear:
            ssh.run(clear_script(nic), timeout=10.0, check=False)
        return read_back(ssh, nic) or f"{nic}: no netem qdisc"
    finally:
        ssh.close()
