"""Lab lifecycle: up, check, down, and run (= up + check + down).

This is the only module that knows the order of the steps; each step lives in
its own module. Any failure, Ctrl-C or SIGTERM after the first resource is
recorded ends in teardown from the state file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.markup import escape

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import netns
from vnetlab.backends.accel import AccelChoice, choose_accel
from vnetlab.backends.image import GuestImage, ensure_image
from vnetlab.checks.base import CheckResult
from vnetlab.checks.runner import run_checks
from vnetlab.errors import Interrupted, VnetlabError
from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.validate import load_scenario, parse_scenario
from vnetlab.paths import Layout, resolve_scenario
from vnetlab.run.apply import apply
from vnetlab.run.configure import address_nics, open_ssh, wait_for_guests
from vnetlab.plan.planner import LAB_NAME, LAB_NAME_MAX, Plan, PlanOptions, make_plan
from vnetlab.run.progress import Progress
from vnetlab.backends.ssh import GuestSSH
from vnetlab.run.state import STATE_FILE, LabState, make_private_dir, owner_alive
from vnetlab.run.teardown import teardown

SCENARIO_COPY = "scenario.yaml"
AUTO_NAME = "auto"  # `--name auto` asks for a unique lab name
LOCK_DIR = Path("/run/vnetlab/locks")


class LabError(VnetlabError):
    """A failure the user can act on; the CLI prints it without a traceback."""


@dataclass
class Options:
    lab: str | None = None
    accel: str = "auto"
    keep: bool = False
    boot_timeout: float = 180.0
    layout: Layout = field(default_factory=Layout)
    before_apply: Callable[[Plan], None] | None = None  # e.g. print `--explain` once the plan is known


@dataclass
class Outcome:
    """What a run produced, for the report."""

    scenario: str
    lab: str
    accel: AccelChoice | None = None
    checks: list[CheckResult] = field(default_factory=list)
    artifacts: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    kept: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)


def unique_lab_name(scenario: str) -> str:
    """`--name auto`: <scenario>-<6 random hex digits>, so labs of one scenario can run side by side."""
    suffix = secrets.token_hex(3)
    return f"{scenario[: LAB_NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def check_lab_name(lab: str) -> None:
    if not re.fullmatch(LAB_NAME, lab):
        raise LabError(f"lab name {lab!r} is not usable: expected {LAB_NAME} (lowercase letters, digits, '-', at most {LAB_NAME_MAX} characters)")


@contextmanager
def lab_lock(lab: str, state_file: Path) -> Iterator[None]:
    """One command at a time per lab; the lock file disappears with the lab."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = LOCK_DIR / f"{lab}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise LabError(f"lab {lab!r} is busy: another vnetlab command is working on it") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by a finishing `down`: lock the new one
    try:
        yield
    finally:
        if not state_file.exists():
            path.unlink(missing_ok=True)
        os.close(fd)


@dataclass(frozen=True)
class LabPaths:
    layout: Layout
    lab: str

    @property
    def dir(self) -> Path:
        return self.layout.lab_dir(self.lab)

    @property
    def state_file(self) -> Path:
        return self.dir / STATE_FILE


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so `kill` and CI timeouts also tear down."""

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@contextmanager
def shielded() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C must not leave a half-removed lab."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def load(ref: str, model: ScenarioModel) -> tuple[Path, Any]:
    path = resolve_scenario(ref)
    return path, load_scenario(path, model)


def new_run_dir(layout: Layout, lab: str) -> Path:
    """One folder per run for its artifacts (pcaps, console logs, XML, report); it outlives the lab."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = layout.runs / f"{lab}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    path.mkdir(parents=True, mode=0o755)
    return path


def collect_artifacts(plan: Plan, run_dir: Path, pcaps: dict[str, Path]) -> dict[str, object]:
    consoles: dict[str, str] = {}
    xmls: dict[str, str] = {}
    for vm in plan.vms:
        if vm.console_log.exists():
            dest = run_dir / f"{vm.name}.console.log"
            shutil.copyfile(vm.console_log, dest)
            consoles[vm.name] = str(dest)
        xml = run_dir / f"{vm.name}.domain.xml"
        xml.write_text(vm.xml)
        xmls[vm.name] = str(xml)
    return {
        "dir": str(run_dir),
        "pcap": {br: str(p) for br, p in pcaps.items() if p.exists()},
        "console": consoles,
        "domain_xml": xmls,
    }


class LabRunner:
    """Runs lifecycle commands for one invocation of the CLI."""

    def __init__(self, options: Options, progress: Progress, model: ScenarioModel):
        self.options = options
        self.progress = progress
        self.model = model  # the composed scenario model: its features build, check and remove the labs
        self.outcome: Outcome | None = None  # set once a lab exists, so a failure can still be reported

    # -- building blocks -------------------------------------------------

    def _image(self) -> GuestImage:
        with self.progress.step("image", "Guest image"):
            return ensure_image(self.options.layout.images, progress=self.progress.detail)

    def _accel(self, image: GuestImage) -> AccelChoice:
        with self.progress.step("accel", "Accelerator"):
            choice = choose_accel(self.options.accel, image)
        self.progress.say(f"  accelerator: [bold]{choice.name}[/] — {escape(choice.reason)}")
        return choice

    def _bring_up(self, plan: Plan, state: LabState, image: GuestImage) -> dict[str, GuestSSH]:
        conn = hv.connect()
        try:
            apply(plan, state, conn, image, self.progress)

            def is_running(vm) -> bool:
                dom = hv.lookup(conn, vm.domain)
                return dom is not None and hv.is_running(dom)

            with self.progress.step("wait", "Waiting for guests (console marker, then SSH)"):
                sessions = wait_for_guests(plan, self.progress, self.options.boot_timeout, is_running)
        finally:
            conn.close()
        try:
            with self.progress.step("configure", "Addressing data NICs over SSH"):
                address_nics(plan, sessions, self.progress)
            for feature in plan.features:
                label = feature.configure_label(plan)
                if label is not None:
                    with self.progress.step(feature.name, label):
                        feature.configure(plan, sessions)
        except BaseException:
            close_all(sessions)
            raise
        state.set_phase(plan.lab_dir, "up")
        return sessions

    def _check(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path, outcome: Outcome) -> None:
        with self.progress.step("checks", f"Running {len(plan.scenario.checks)} check(s)"):
            outcome.checks, pcaps = run_checks(plan, sessions, run_dir)
        outcome.artifacts["pcap"] = {br: str(p) for br, p in pcaps.items()}

    def _teardown(self, lab_dir: Path, state: LabState) -> None:
        with shielded(), self.progress.step("teardown", f"Tearing down lab {state.lab}"):
            problems = teardown(lab_dir, state, removers(self.model))
        if problems:
            raise LabError("teardown left resources behind (the state file is kept; retry with `vnetlab down " + state.lab + "`):\n  " + "\n  ".join(problems))

    # -- commands --------------------------------------------------------

    def run(self, ref: str, *, keep: bool, check: bool = True) -> Outcome:
        """`vnetlab run` (check=True) and `vnetlab up` (check=False, keep=True)."""
        path, scenario = load(ref, self.model)
        lab = self.options.lab or scenario.name
        if lab == AUTO_NAME:
            lab = unique_lab_name(scenario.name)
            self.progress.console.print(f"lab {lab}")  # even with -q: the name is needed for `down` after a kill
        check_lab_name(lab)
        outcome = Outcome(scenario.name, lab)
        paths = LabPaths(self.options.layout, lab)
        with lab_lock(lab, paths.state_file), interrupts_as_exceptions():
            if paths.state_file.exists():
                raise LabError(f"lab {lab!r} already exists (see `vnetlab status`); remove it with `vnetlab down {lab}` or pick another name with --name")
            image = self._image()
            outcome.accel = self._accel(image)
            plan = make_plan(scenario, lab, PlanOptions(outcome.accel.domain_type, image.kernel, self.options.layout))
            if self.options.before_apply is not None:
                self.options.before_apply(plan)
            run_dir = new_run_dir(self.options.layout, lab)
            outcome.artifacts["dir"] = str(run_dir)
            make_private_dir(plan.lab_dir)  # apply() lets libvirt's qemu group through to the initrds
            (plan.lab_dir / SCENARIO_COPY).write_text(path.read_text())
            state = LabState(lab, scenario.name, str(path.resolve()), plan.namespace, plan.domain_type, str(image.kernel), os.getpid())
            state.save(plan.lab_dir)
            self.outcome = outcome
            sessions: dict[str, GuestSSH] = {}
            try:
                sessions = self._bring_up(plan, state, image)
                if check:
                    self._check(plan, sessions, run_dir, outcome)
            except Interrupted as exc:
                outcome.error = f"interrupted ({exc}); the lab was torn down"
                keep = False
                raise
            except BaseException as exc:
                outcome.error = str(exc)
                keep = False
                raise
            finally:
                close_all(sessions)
                pcaps = {br: Path(p) for br, p in outcome.artifacts.get("pcap", {}).items()}  # type: ignore[union-attr]
                outcome.artifacts.update(collect_artifacts(plan, run_dir, pcaps))
                if keep:
                    outcome.kept = True
                else:
                    self._teardown(plan.lab_dir, state)
        return outcome

    def check(self, lab: str) -> Outcome:
        """`vnetlab check LAB`: run the scenario's checks again on a lab that is up."""
        check_lab_name(lab)
        paths = LabPaths(self.options.layout, lab)
        with lab_lock(lab, paths.state_file), interrupts_as_exceptions():
            state = read_state(paths)
            if state.phase != "up":
                raise LabError(f"lab {lab!r} is not up (phase: {state.phase}); `vnetlab down {lab}` cleans it up")
            plan = plan_from_state(paths, state, self.model)
            outcome = Outcome(plan.scenario.name, lab, kept=True)
            outcome.accel = AccelChoice("kvm" if state.domain_type == "kvm" else "tcg", state.domain_type, "as chosen when the lab came up")
            self.outcome = outcome
            run_dir = new_run_dir(self.options.layout, lab)
            sessions: dict[str, GuestSSH] = {}
            try:
                with self.progress.step("connect", "Connecting to guests"):
                    deadline = time.monotonic() + 20.0
                    for vm in plan.vms:
                        sessions[vm.name] = open_ssh(plan, vm, deadline)
                self._check(plan, sessions, run_dir, outcome)
            except Interrupted as exc:
                exc.consequence = f"the checks were stopped; the lab is still up (`vnetlab down {lab}` removes it)"
                outcome.error = f"interrupted ({exc}); {exc.consequence}"
                raise
            except Exception as exc:
                outcome.error = str(exc)
                raise
            finally:
                close_all(sessions)
                pcaps = {br: Path(p) for br, p in outcome.artifacts.get("pcap", {}).items()}  # type: ignore[union-attr]
                outcome.artifacts.update(collect_artifacts(plan, run_dir, pcaps))
            return outcome

    def down(self, lab: str) -> bool:
        """Returns False when there was no such lab (down is idempotent)."""
        check_lab_name(lab)
        paths = LabPaths(self.options.layout, lab)
        with lab_lock(lab, paths.state_file):
            if not paths.state_file.exists():
                # Killed before its first state write, or in teardown's final rmtree: only files remain.
                if paths.dir.is_dir():
                    shutil.rmtree(paths.dir)
                    return True
                return False
            self._teardown(paths.dir, read_state(paths))
            return True


def plan_from_state(paths: LabPaths, state: LabState, model: ScenarioModel) -> Plan:
    """The plan of an existing lab: re-planned from its copy of the scenario (the plan is pure, so names match)."""
    scenario = parse_scenario((paths.dir / SCENARIO_COPY).read_text(), state.scenario_file, model)
    return make_plan(scenario, paths.lab, PlanOptions(state.domain_type, Path(state.kernel), paths.layout))


def running_plan(lab: str, model: ScenarioModel, layout: Layout | None = None) -> Plan:
    """The plan of a lab that exists, for commands that work on a live lab (inspect, ssh, capture …)."""
    check_lab_name(lab)
    paths = LabPaths(layout or Layout(), lab)
    return plan_from_state(paths, read_state(paths), model)


def removers(model: ScenarioModel) -> dict[str, Any]:
    """How to remove the resource kinds the features add (teardown works from the state file alone)."""
    out: dict[str, Any] = {}
    for feature in model.features:
        out.update(feature.removers)
    return out


def read_state(paths: LabPaths) -> LabState:
    try:
        return LabState.load(paths.dir)
    except FileNotFoundError:
        raise LabError(f"no lab named {paths.lab!r} (see `vnetlab status`)") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(f"the state file {paths.state_file} is unreadable ({exc}); inspect it by hand") from None


def close_all(sessions: dict[str, GuestSSH]) -> None:
    for ssh in sessions.values():
        ssh.close()


@dataclass
class LabStatus:
    lab: str
    scenario: str
    phase: str
    owner_alive: bool
    domains: dict[str, str]  # domain → running | stopped | missing
    namespace: bool
    pid: int = 0  # the process that built it


def lab_statuses(layout: Layout) -> list[LabStatus]:
    out: list[LabStatus] = []
    if not layout.labs.exists():
        return out
    conn = None
    for lab_dir in sorted(p for p in layout.labs.iterdir() if p.is_dir()):
        if not (lab_dir / STATE_FILE).exists():  # killed before its first record: only files to remove
            out.append(LabStatus(lab_dir.name, "?", "files only", False, {}, False))
            continue
        try:
            state = LabState.load(lab_dir)
        except (ValueError, TypeError, KeyError):
            continue
        domains: dict[str, str] = {}
        for r in state.resources:
            if r.kind != "domain":
                continue
            if conn is None:
                conn = hv.connect()
            dom = hv.lookup(conn, r.name)
            domains[r.name] = "missing" if dom is None else ("running" if hv.is_running(dom) else "stopped")
        out.append(LabStatus(state.lab, state.scenario, state.phase, owner_alive(state), domains, netns.namespace_exists(state.namespace), state.pid))
    if conn is not None:
        conn.close()
    return out

