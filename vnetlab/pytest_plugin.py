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
"""

from __future__ import annotations

import time
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(scenario, name=None, accel='auto', boot_timeout=180): bring SCENARIO (a name or a YAML path) up once "
        "for this module as lab NAME (default <scenario>-<random>); tests get it through the `vnetlab_lab` fixture",
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
            raise SSHError(f"`{command}` on {node} exited {result.exit_code}: {(result.stdout + result.stderr)[-500:]}")
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


@pytest.fixture(scope="module")
def vnetlab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The module's lab (see the vnetlab_scenario marker), up for the whole module."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None or not marker.args:
        raise pytest.UsageError(f"vnetlab_lab needs `pytestmark = pytest.mark.{MARKER}(\"SCENARIO\")` in {request.node.nodeid}")
    from vnetlab.compose import registry
    from vnetlab.run.configure import open_ssh
    from vnetlab.run.lab import LabRunner, Options, close_all, load, running_plan, unique_lab_name
    from vnetlab.run.progress import Progress

    model = registry()
    ref = str(marker.args[0])
    name = marker.kwargs.get("name") or unique_lab_name(load(ref, model)[1].name)
    runner = LabRunner(
        Options(lab=name, accel=marker.kwargs.get("accel", "auto"), boot_timeout=float(marker.kwargs.get("boot_timeout", 180.0)), cold=bool(marker.kwargs.get("cold", False))),
        Progress(quiet=True),
        model,
    )
    sessions: dict[str, GuestSSH] = {}
    try:
        outcome = runner.run(ref, keep=True, check=False)  # tears down by itself if bringing up fails
        plan = running_plan(name, model)
        deadline = time.monotonic() + 30.0
        for vm in plan.vms:
            sessions[vm.name] = open_ssh(plan, vm, deadline)
        yield Lab(plan, sessions, Path(str(outcome.artifacts["dir"])))
    finally:
        close_all(sessions)
        runner.down(name)
