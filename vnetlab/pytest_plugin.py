"""pytest plugin: write lab tests in a few lines, against real guests.

    import pytest
    pytestmark = pytest.mark.vnetlab_scenario("two-vm-ping")

    def test_ping(vnetlab_lab):
        result = vnetlab_lab.ping("vm1", "vm2")
        assert result.ok, result.detail

The scenario comes up once per test module (first test that asks for `vnetlab_lab`) and is
torn down at the module's end, also when tests fail or the session is interrupted. Registered
through the `pytest11` entry point, so installing vnetlab is enough. Heavy imports are
deferred: the plugin costs nothing in test runs that do not use it.

An exercise, for a teacher's own tests (graded as a student is: on the wire):

    pytestmark = pytest.mark.vnetlab_exercise("ex-two-vm-ping", student="alice")

    def test_the_address_task(vnetlab_exercise):
        assert not vnetlab_exercise.check("address vm2").passed
        vnetlab_exercise.solve("address vm2")       # or do the work: vnetlab_exercise.exec("vm2", "ip addr add …")
        assert vnetlab_exercise.check("address vm2").passed
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from vnetlab.checks.capture import TrafficCounts
    from vnetlab.checks.base import CheckResult
    from vnetlab.plan.planner import Plan
    from vnetlab.backends.ssh import CommandResult, GuestSSH

MARKER = "vnetlab_scenario"
EXERCISE_MARKER = "vnetlab_exercise"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(scenario, name=None, accel='auto', boot_timeout=180, allow_host_paths=False, cold=False): bring SCENARIO (a name or a YAML path) up once "
        "for this module as lab NAME (default <scenario>-<random>; cold=True: its guests booted, not restored from warm images); tests get it through the `vnetlab_lab` fixture",
    )
    config.addinivalue_line(
        "markers",
        f"{EXERCISE_MARKER}(exercise, student='demo', name=None, accel='auto', boot_timeout=180, cold=False): start EXERCISE for STUDENT once "
        "for this module as lab NAME (default <exercise>-<random>), setup applied; tests get it through the `vnetlab_exercise` fixture",
    )


@dataclass
class LabCapture:
    """What crossed an interface during a `with lab.capture(...)` block (filled when the block ends)."""

    lab: "Lab"
    iface: str
    pcap: Path
    packets: Any = field(default_factory=list)  # the frames (re-iterable), set when the block ends

    def counts(self, vm_a: str, vm_b: str) -> "TrafficCounts":
        """ARP and ICMP echo between two VMs' NICs on the captured bridge (see vnetlab.checks.capture.count_arp_icmp)."""
        from vnetlab.checks.capture import count_arp_icmp

        a, b = (self.lab.plan.vm(v).nic_on(self.iface) for v in (vm_a, vm_b))
        if a is None or b is None or a.ip is None or b.ip is None:
            raise ValueError(f"{vm_a} and {vm_b} need addressed NICs on {self.iface} to be counted")
        return count_arp_icmp(self.packets, a.mac, a.ip, b.mac, b.ip)


@dataclass
class Lab:
    """A running lab, for tests: commands in guests, pings, captures."""

    plan: "Plan"
    sessions: dict[str, "GuestSSH"]
    run_dir: Path
    _captures: int = 0

    @property
    def name(self) -> str:
        return self.plan.lab

    @property
    def namespace(self) -> str:
        return self.plan.namespace

    def run(self, vm: str, command: str, *, timeout: float = 30.0, check: bool = True) -> "CommandResult":
        """Run a shell command in guest `vm` over SSH; raises SSHError on a non-zero exit when `check`."""
        return self.sessions[vm].run(command, timeout=timeout, check=check)

    def exec(self, node: str, command: str, *, timeout: float = 60.0, check: bool = True) -> "CommandResult":
        """A shell command on any node: a VM over SSH, a container or host in its namespace (as `exec:` runs it)."""
        from vnetlab.backends.ssh import SSHError
        from vnetlab.features.commands import node_runner, run_step

        result = run_step(node_runner(self.plan, self.sessions, node), command, int(timeout))
        if check and result.exit_code != 0:
            raise SSHError(f"`{command}` on {node} {result.exited}: {(result.stdout + result.stderr)[-500:]}")
        return result

    def copy(self, vm: str, src: str | Path, dest: str, *, mode: int | None = None) -> None:
        """Copy a host file into guest `vm` (as `files:` does: one tar stream over SSH, mode kept or given)."""
        from vnetlab.features.commands import PlannedFile, tar_of

        self.sessions[vm].run("tar -x -f - -C /", stdin=tar_of((PlannedFile(Path(src).resolve(), dest, mode, False),), {}), timeout=120.0)

    def command_check(self, node: str, run: str, *, exit: int | str = 0, stdout: str | None = None, stderr: str | None = None, retry_for: int | None = None, every: int = 1, timeout: int = 30, name: str | None = None) -> "CheckResult":
        """The scenario's `command` check, ad hoc: same judgement, same detail, same CheckResult."""
        from vnetlab.checks.base import CheckContext
        from vnetlab.features.commands import CommandCheck, Expect, Retry, run_command_check

        check = CommandCheck(node=node, run=run, expect=Expect(exit=exit, stdout=stdout, stderr=stderr), retry=Retry(retry_for, every) if retry_for else None, timeout=timeout, name=name)  # type: ignore[arg-type]
        return run_command_check(CheckContext(self.plan, self.sessions, self.run_dir), check)

    def ping(self, source: str, to: str, *, count: int = 3, expect: str = "success") -> "CheckResult":
        """The scenario ping check, ad hoc: `to` is a VM (its address on a shared segment) or an IPv4 address."""
        from vnetlab.checks.base import CheckContext
        from vnetlab.checks.ping import run_ping

        ping = self.plan.scenario.model.PingCheck(source=source, to=to, count=count, expect=expect)
        return run_ping(CheckContext(self.plan, self.sessions, self.run_dir), ping)

    @contextmanager
    def capture(self, iface: str, pcap: str | None = None) -> Iterator[LabCapture]:
        """Capture on a bridge or interface of the lab namespace for the duration of the block."""
        from vnetlab.checks.capture import Capture

        self._captures += 1
        path = self.run_dir / (pcap or f"{iface}-{self._captures}.pcap")
        result = LabCapture(self, iface, path)
        cap = Capture(self.namespace, iface, path)
        cap.start()
        try:
            yield result
        finally:
            result.packets = cap.stop()


def _marked_lab(request: pytest.FixtureRequest, marker_name: str, fixture: str, what: str) -> tuple[pytest.Mark, Any, str, str]:
    """The module's marker (a usage error without one), the composed model, the scenario as the marker
    names it, and the lab's name: the marker's, else <scenario>-<random>."""
    marker = request.node.get_closest_marker(marker_name)
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{fixture} needs `pytestmark = pytest.mark.{marker_name}(\"{what}\")` in {request.node.nodeid}")
    from vnetlab.compose import registry
    from vnetlab.run.lab import load, unique_lab_name

    model = registry()
    ref = str(marker.args[0])
    allow_host_paths = bool(marker.kwargs.get("allow_host_paths", False))  # as --allow-host-paths: only for a scenario you trust
    return marker, model, ref, marker.kwargs.get("name") or unique_lab_name(load(ref, model, student=marker.kwargs.get("student"), allow_host_paths=allow_host_paths)[1].name)


@pytest.fixture(scope="module")
def vnetlab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The module's lab (see the vnetlab_scenario marker), up for the whole module."""
    marker, model, ref, name = _marked_lab(request, MARKER, "vnetlab_lab", "SCENARIO")
    from vnetlab.run.configure import open_sessions
    from vnetlab.run.lab import LabRunner, Options, close_all, running_plan
    from vnetlab.run.progress import Progress

    allow_host_paths = bool(marker.kwargs.get("allow_host_paths", False))
    runner = LabRunner(
        Options(lab=name, accel=marker.kwargs.get("accel", "auto"), boot_timeout=float(marker.kwargs.get("boot_timeout", 180.0)), allow_host_paths=allow_host_paths, cold=bool(marker.kwargs.get("cold", False))),
        Progress(quiet=True),
        model,
    )
    sessions: dict[str, GuestSSH] = {}
    try:
        outcome = runner.run(ref, keep=True, check=False)  # tears down by itself if bringing up fails
        plan = running_plan(name, model)
        sessions = open_sessions(plan, timeout=30.0)
        yield Lab(plan, sessions, Path(str(outcome.artifacts["dir"])))
    finally:
        close_all(sessions)
        runner.down(name)


@dataclass
class ExerciseUnderTest:
    """A started exercise, for tests: check tasks (graded on the wire), solve them, answer, hint,
    and work on its nodes as a student would."""

    lab: Any  # vnetlab.exercise.ExerciseLab

    @property
    def name(self) -> str:
        return self.lab.lab

    def check(self, task: str | int | None = None) -> Any:
        """One task's TaskOutcome (`.passed`, `.results`), or with no task the list of every task's."""
        outcomes = self.lab.check(task)
        return outcomes[0] if task is not None else outcomes

    def solve(self, task: str | int) -> None:
        self.lab.solve(task)

    def answer(self, task: str | int, value: str) -> Any:
        return self.lab.answer(task, value)

    def hint(self, task: str | int) -> Any:
        return self.lab.hint(task)

    def status(self) -> Any:
        return self.lab.status()

    def exec(self, node: str, command: str, *, timeout: float = 60.0) -> "CommandResult":
        """A shell command on a node of the lab (`vnetlab exec`): the student's work, done by the test."""
        from vnetlab.tools.node_exec import exec_on

        return exec_on(self.lab.plan(), node, command, timeout=timeout)


@pytest.fixture(scope="module")
def vnetlab_exercise(request: pytest.FixtureRequest) -> Iterator[ExerciseUnderTest]:
    """The module's exercise lab (see the vnetlab_exercise marker), started once, ended at the module's end."""
    marker, model, ref, name = _marked_lab(request, EXERCISE_MARKER, "vnetlab_exercise", "EXERCISE")
    from vnetlab.exercise import ExerciseLab

    student = str(marker.kwargs.get("student", "demo"))
    lab = None
    try:
        lab = ExerciseLab.start(
            ref, model, student=student, lab=name, accel=marker.kwargs.get("accel", "auto"), boot_timeout=float(marker.kwargs.get("boot_timeout", 180.0)),
            cold=bool(marker.kwargs.get("cold", False)),
        )
        yield ExerciseUnderTest(lab)
    finally:
        if lab is not None:
            lab.down()
