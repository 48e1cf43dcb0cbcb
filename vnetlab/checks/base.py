"""What every check works with: results, evidence, the context a collector gets, and the lab's nodes to run programs on.

A kind of check comes in two halves (`CheckKind`): `collect(ctx, spec) -> Evidence` runs
things on the live lab and keeps what it saw (JSON, saved with the run), and
`judge(plan, spec, evidence) -> CheckResult` decides from that alone, so a run can be
judged again later (`vnetlab judge RUN_DIR`, `vnetlab exercise grade`). A kind whose
traffic has a signature on the wire says so (`Wire`): in an exercise its verdict counts
only when vnetlab's own capture saw that traffic. A capture judge is
`fn(plan, check, subject) -> Judgement`. The core registers ping and the ARP/ICMP
judges; features register theirs (see vnetlab.features.base.Feature).
"""

from __future__ import annotations

import ipaddress
import os
import select
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vnetlab.backends import netns
from vnetlab.backends.ssh import CappedOutput, CommandResult, GuestSSH
from vnetlab.model.addressing import parse_address
from vnetlab.model.scenario import split_link
from vnetlab.model.validate import carried_addresses, is_named_interface, rendered, target_interface
from vnetlab.plan.planner import Plan, PlannedNic, PlannedNode
from vnetlab.printable import printable, printable_data

if TYPE_CHECKING:
    from vnetlab.checks.capture import Frames


@dataclass
class CheckResult:
    name: str
    kind: str
    ok: bool
    detail: str
    counts: dict[str, int] | None = None
    data: dict[str, object] = field(default_factory=dict)
    action: bool = False  # an action of the check list (a link taken down, a pause), not a check of the lab

    def shown(self) -> CheckResult:
        """The result with every string in it printable (vnetlab.printable), as every output shows it:
        a detail quotes what a guest printed, and evidence read back from a bundle is the student's
        to edit. The runner gives nothing else to the summary, result.json, the classroom or JUnit."""
        self.name, self.detail, self.data = printable(self.name), printable(self.detail), printable_data(self.data)  # type: ignore[assignment]
        return self

    def to_json(self) -> dict:
        out = asdict(self)
        if self.counts is None:
            out.pop("counts")
        if not self.data:
            out.pop("data")
        if not self.action:
            out.pop("action")
        return out


@dataclass
class Judgement:
    ok: bool
    expected: str
    seen: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class CaptureSubject:
    """The two nodes a capture check is about, with what the capture sees of each (a guest's NIC on the bridge, a container's or host's eth0)."""

    name_a: str
    nic_a: PlannedNic | PlannedNode
    name_b: str
    nic_b: PlannedNic | PlannedNode
    packets: Iterable[Any]  # re-iterable: each judge walks the frames again


@dataclass
class Evidence:
    """What one check saw on the live lab: all a judge may use, kept with the run (evidence.json).

    `data` is JSON (a program's output and exit status, states read from the kernel, an answer).
    `guests` names the guests whose programs produced it: a student is root there and could have
    shaped it. Empty means vnetlab read it from outside every guest (netlink, the lab namespace, a
    container's namespace, the student's answer as given). `error` says why the collection itself
    failed (the check then fails with it, judged again the same way)."""

    data: dict[str, Any] = field(default_factory=dict)
    guests: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data, "guests": list(self.guests)}
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Evidence:
        data, guests, error = raw.get("data"), raw.get("guests"), raw.get("error")
        if not isinstance(data, dict) or not isinstance(guests, list) or not all(isinstance(g, str) for g in guests) or not isinstance(error, (str, type(None))):
            raise ValueError("evidence entries are {data: {...}, guests: [NAME, ...], error: TEXT|null}")
        return cls(data, tuple(guests), error)


Collector = Callable[["CheckContext", Any], Evidence]
# What a capture expectation needs done at the start of the check phase, while the captures run, so
# that the traffic it judges happens then (forget the neighbours so ARP/NDP ask again; a DHCP client
# asks again): given every capture check that expects it; an exception is kept as that captures'
# evidence and shown beside their verdicts.
Stimulus = Callable[["CheckContext", "list[Any]"], None]
Verdict = Callable[[Plan, Any, Evidence], CheckResult]
Undo = Callable[["CheckContext", Any, Evidence], dict[str, Any]]
Judge = Callable[[Plan, Any, CaptureSubject], Judgement]
WireJudge = Callable[[Plan, Any, Evidence, "Mapping[str, Frames]"], Judgement]


@dataclass(frozen=True)
class Wire:
    """A kind's signature on the wire: where its traffic crosses (capture points: bridges, VM.NIC
    links, uplinks) and how to judge what the captures there saw. In an exercise the check counts
    only when this judgement holds too: the guest's word is not enough."""

    points: Callable[[Plan, Any], list[str]]
    judge: WireJudge


@dataclass(frozen=True)
class CheckKind:
    """One kind of check: collect on the live lab, judge from the evidence alone.

    An *action* (`undo` set) changes the lab during the check phase (a link taken down, a netem
    impairment): its evidence records what it did and, under the key `restores`, what it changed
    (e.g. "link vm1.eth0"); at the end of the phase the runner calls `undo` once per thing changed,
    with the evidence of the first action that changed it, and records what the undo did there
    (`undone`, or `undo_error`). `background(spec)`: this check runs in the background from its
    place in the list while the entries after it run (e.g. a ping measuring the recovery from a
    link the next actions pull), and is collected when it ends; the phase waits for it."""

    collect: Collector
    judge: Verdict
    wire: Wire | None = None
    undo: Undo | None = None
    background: Callable[[Any], bool] | None = None

    @property
    def acts(self) -> bool:
        return self.undo is not None

    def run(self, ctx: CheckContext, spec: Any) -> CheckResult:
        """Collect and judge in one go (ad hoc checks: the pytest plugin, unit tests)."""
        return self.judge(ctx.plan, spec, self.collect(ctx, spec)).shown()


def nic_cidrs(plan: Plan, vm_name: str) -> list[tuple[PlannedNic, list[str]]]:
    """Each data NIC of a VM with every address (with prefix) its traffic may carry: its own, IPv4
    and IPv6 (a leased or SLAAC one as planned), and its sub-interfaces' (a trunk's VLANs). A guest
    a feature adds (a switch guest) has its NICs' own."""
    declared = next((v for v in plan.scenario.vms if v.name == vm_name), None)
    nics = plan.vm(vm_name).nics
    own = {n.guest_name: [c for c in (n.cidr, n.cidr6) if c] for n in nics}
    if declared is None:
        return [(n, own[n.guest_name]) for n in nics]
    return [(n, own[n.guest_name] + carried_addresses(plan.scenario, d)) for n, d in zip(nics, declared.nics)]


def node_ips(plan: Plan, name: str) -> set[str]:
    """Every IPv4 and IPv6 address a node has on the lab's segments, sub-interfaces included (a ping may name its target by address)."""
    ips = {ip for vm in plan.vms if vm.name == name for n in vm.nics for ip in n.ips()}
    ips |= {c.split("/")[0] for vm in plan.vms if vm.name == name for _, cidrs in nic_cidrs(plan, name) for c in cidrs}
    return ips | {n.ip for n in plan.nodes if n.name == name}


def planned_address(plan: Plan, node: str, iface: Any) -> str:
    """The address of `node` the model's `iface` stands for: a VM's NIC on that subnet says it as
    planned (a SLAAC address is known once its MAC is), any other node as the model has it."""
    vm = next((v for v in plan.vms if v.name == node), None)
    for nic in vm.nics if vm is not None else ():
        cidr = nic.cidr if iface.version == 4 else nic.cidr6
        if cidr and ipaddress.ip_interface(cidr).network == iface.network:
            return cidr.split("/")[0]
    return str(iface.ip)


def rendered_target(plan: Plan, to: str) -> str | None:
    """A check's `to` with its template rendered; None when it cannot be (validation said so)."""
    try:
        return rendered(plan.scenario, to)
    except ValueError:
        return None


def target_of(plan: Plan, source: str, to: str, family: int | None = None) -> str:
    """The address a check's rendered `to` goes to from `source`: a node's (NODE.NIC's) as planned
    (see planned_address), an address literal as written."""
    iface = target_interface(plan.scenario, source, to, family)  # None for an address literal
    node = to.partition(".")[0] if is_named_interface(to) else to
    return planned_address(plan, node, iface) if iface is not None else to


def ping_family(plan: Plan, ping: Any) -> int:
    """4 or 6: the family a ping check's echo requests have (its target address's, or the one its
    `family:` or the shared subnets choose for a node)."""
    to = rendered_target(plan, ping.to)
    if to is None:
        return 4
    address = parse_address(to)
    if address is not None:
        return address.version
    if getattr(ping, "family", None):
        return int(ping.family)
    found = target_interface(plan.scenario, ping.source, to) if getattr(ping, "via", None) is None else None
    return found.version if found is not None else 4


def expected_echo_pairs(plan: Plan, a: str, b: str, via: str | None = None, family: int = 4, *, one_way: bool = False) -> int:
    """Echo exchanges of `family` the ping checks between a and b should have put on the wire
    (through overlay `via`, or none); `one_way`: only those a started."""
    names = {a: {a} | node_ips(plan, a), b: {b} | node_ips(plan, b)}

    def reaches(ping: Any, other: str) -> bool:
        if ping.to in names[other]:
            return True
        to = rendered_target(plan, ping.to)
        if to is None:
            return False
        return (target_of(plan, ping.source, to, getattr(ping, "family", None)) if via is None else to) in names[other]

    return sum(
        c.ping.count if getattr(c.ping, "measure", None) is None else 1  # a ping measuring a recovery loses replies on purpose
        for c in plan.scenario.checks
        if c.ping is not None and c.ping.expect == "success" and getattr(c.ping, "via", None) == via
        and ((c.ping.source == a and reaches(c.ping, b)) or (not one_way and c.ping.source == b and reaches(c.ping, a)))
        and ping_family(plan, c.ping) == family
    )


# -- running programs on the lab's nodes ---------------------------------------------

_READ_CHUNK = 65536
_WRITE_CHUNK = select.PIPE_BUF  # a write of at most this much never blocks once the pipe is writable


class LabNode(Protocol):
    """Something a check can run a program on: a guest (over SSH) or a namespace (subprocess inside it)."""

    name: str

    def run(self, argv: list[str], timeout: float) -> CommandResult: ...

    def start(self, argv: list[str]) -> Callable[[], None]:
        """Start argv in the background; returns a function that ends it."""
        ...


@dataclass
class GuestNode:
    name: str
    ssh: GuestSSH

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self.ssh.run(self.command_line(argv), timeout=timeout, check=False)

    @staticmethod
    def command_line(argv: list[str]) -> str:
        """What the guest's login shell is given for argv."""
        return shlex.join(argv)

    def start(self, argv: list[str]) -> Callable[[], None]:
        # Inside the guest: its own process, gone with the guest; the PID file lets us end it sooner.
        pidfile = f"/tmp/vnetlab-{argv[0].rsplit('/', 1)[-1]}.pid"
        self.ssh.run(f"{shlex.join(argv)} </dev/null >/dev/null 2>&1 & echo $! > {pidfile}", timeout=10.0)

        def stop() -> None:
            self.ssh.run(f"kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}", timeout=10.0, check=False)

        return stop


@dataclass
class NamespaceNode:
    name: str
    namespace: str

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult:
        """The host's program, forked from a thread inside the namespace (a child inherits the
        thread's namespace). Its output is kept as a guest's over SSH is (at most MAX_OUTPUT bytes
        per stream, the rest read and dropped), so a command printing without end cannot fill
        this process's memory; the whole exchange is bounded by `timeout`."""
        try:
            proc = netns.run_in_namespace(
                self.namespace, subprocess.Popen, argv,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as exc:  # e.g. the program is not installed on the host
            return CommandResult(shlex.join(argv), 127, "", f"cannot run {argv[0]} in namespace {self.namespace}: {exc}")
        out, err = CappedOutput(), CappedOutput()
        try:
            finished = _exchange(proc, stdin, out, err, time.monotonic() + timeout)
        finally:
            if proc.poll() is None:
                proc.kill()  # our own child, by its PID: timed out, or interrupted
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        truncated = bool(out.dropped or err.dropped)
        if not finished:
            return CommandResult(shlex.join(argv), 124, out.text(), err.text() + f"\n(timed out after {timeout:g} s)", truncated)
        killed = signal_name(-proc.returncode) if proc.returncode < 0 else None
        return CommandResult(shlex.join(argv), -1 if killed else proc.returncode, out.text(), err.text(), truncated, signal=killed)

    def start(self, argv: list[str]) -> Callable[[], None]:
        proc = netns.run_in_namespace(self.namespace, subprocess.Popen, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop() -> None:
            if proc.poll() is None:
                proc.terminate()  # our own child, by its PID
                try:
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        return stop


def signal_name(number: int) -> str:
    """TERM for 15, as ssh's exit-signal names it."""
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def _exchange(proc: subprocess.Popen, stdin: bytes | None, out: CappedOutput, err: CappedOutput, deadline: float) -> bool:
    """Feed stdin and collect stdout and stderr until both end and the program exits; False at the
    deadline. (A program that leaves a child holding its output open is waited for, as over SSH.)"""
    assert proc.stdout is not None and proc.stderr is not None
    kept = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        if proc.stdin is not None:
            if pending:
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in selector.select(remaining):
                if key.fd in kept:
                    data = os.read(key.fd, _READ_CHUNK)
                    if data:
                        kept[key.fd].add(data)
                        continue
                else:
                    try:
                        pending = pending[os.write(key.fd, pending[:_WRITE_CHUNK]):]
                    except BrokenPipeError:
                        pending = pending[:0]  # it stopped reading: the rest is not wanted
                    if pending:
                        continue
                    assert proc.stdin is not None
                    proc.stdin.close()
                selector.unregister(key.fd)
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def lab_node(plan: Plan, sessions: dict[str, GuestSSH], name: str) -> LabNode:
    """The node called `name`: a VM through its SSH session, a namespace node through its namespace."""
    if name in sessions:
        return GuestNode(name, sessions[name])
    node = next(n for n in plan.nodes if n.name == name)
    return NamespaceNode(name, node.namespace)


def endpoint(plan: Plan, name: str, on: str) -> PlannedNic | PlannedNode:
    """What a capture on `on` sees of node `name`: a namespace node's eth0, or the VM's NIC on
    that bridge (for an uplink: on the bridge the uplink is a port of)."""
    node = next((n for n in plan.nodes if n.name == name), None)
    if node is not None:
        return node
    vm = plan.vm(name)
    return vm.nic_on(capture_segment(plan, on)) or next(n for n in vm.nics if n.ip or n.ip6)


def link_nic(plan: Plan, on: str) -> PlannedNic | None:
    """The VM NIC a capture's link (VM.NIC) names; None when `on` is a bridge or an uplink."""
    if "." not in on:
        return None
    vm_name, nic_name = split_link(on)
    return next((n for v in plan.vms if v.name == vm_name for n in v.nics if n.guest_name == nic_name), None)


def capture_segment(plan: Plan, on: str) -> str:
    """The bridge a capture point belongs to: a link's bridge, the bridge an uplink is a port of, or the bridge itself."""
    nic = link_nic(plan, on)
    if nic is not None:
        return nic.bridge
    return next((n.bridge for n in plan.nodes if n.veth == on and n.bridge), on)


def capture_iface(plan: Plan, on: str) -> str:
    """The lab-namespace interface a capture listens on: a link's tap, a bridge's (or its mirror port), an uplink."""
    nic = link_nic(plan, on)
    if nic is not None:
        return nic.tap
    return plan.bridge(on).capture_iface if on in {b.name for b in plan.bridges} else on


def node_kind(plan: Plan, name: str) -> str:
    """'VM', or the kind of a namespace node (container, host)."""
    return next((n.kind for n in plan.nodes if n.name == name), "VM")


@dataclass
class CheckContext:
    """What a collector may use: the plan, SSH sessions to the guests, the run's artifact folder;
    `wire`: the checks are graded on the wire (an exercise), so a collector may put traffic on it
    that its wire signature needs; `answer`: what the student answered to the task being checked
    ({"value": …, "at": unix time}), for the answer check."""

    plan: Plan
    sessions: dict[str, GuestSSH]
    run_dir: Path
    wire: bool = False
    answer: Mapping[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)  # when the check phase began
    # The runner's place for the entry being collected: an action keeps its evidence there before it
    # changes anything, so that a Ctrl-C during the change still leaves what the undo puts back.
    record: Callable[[Evidence], None] = lambda evidence: None

    def elapsed(self) -> float:
        """Seconds since the check phase began: when an action or a background check happened, for the report."""
        return round(time.monotonic() - self.started, 3)

    def node(self, name: str) -> LabNode:
        """Where to run a program as `name`: the guest over SSH, or a namespace node's namespace."""
        return lab_node(self.plan, self.sessions, name)
