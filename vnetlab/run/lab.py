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
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.markup import escape

from vnetlab import procfs
from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import netns
from vnetlab.backends.accel import AccelChoice, choose_accel
from vnetlab.backends.kernel_probe import host_capabilities
from vnetlab.backends.image import GuestImage
from vnetlab.backends.image_kinds import ImageRef, ResolvedImage, ensure_images
from vnetlab.model.validate import vm_image
from vnetlab.checks.base import CheckResult
from vnetlab.checks.evidence import EVIDENCE_FILE, NoSuchCheck, RunSetting, keep_setting, select_checks
from vnetlab.checks.runner import run_checks
from vnetlab.errors import Interrupted, VnetlabError
from vnetlab.files import write_private
from vnetlab.signals import shielded
from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.validate import load_scenario, parse_scenario
from vnetlab.paths import Layout, resolve_scenario, search_path
from vnetlab.run.apply import Admission, apply_network, start_guests
from vnetlab.run.connections import Connections
from vnetlab.run.configure import GuestTiming, address_vm, come_up, console_of, open_sessions, power_off, says_ready, wait_for_marker
from vnetlab.plan.planner import LAB_NAME, LAB_NAME_MAX, METADATA_NS, Plan, PlannedVM, PlanOptions, domain_name, make_plan
from vnetlab.run.progress import Progress
from vnetlab.backends.ssh import GuestSSH
from vnetlab.run.state import STATE_FILE, LabState, RecordedResource, make_private_dir, owner_alive
from vnetlab.run.teardown import TeardownResult, teardown_lab
from vnetlab.run.warm import ensure_warm_images, restorers, warm_keys

SCENARIO_COPY = "scenario.yaml"
AUTO_NAME = "auto"  # `--name auto` asks for a unique lab name
COLD_ENV = "VNETLAB_COLD"  # set to anything but "" or "0": every lab boots its guests, as with --cold (e.g. a whole test suite run cold)
LOCK_DIR = Path("/run/vnetlab/locks")


CPU_MOMENTS = (  # when each guest's qemu CPU time is read, and what it has paid for by then
    ("started", "libvirt had started the domain, paused: qemu's start-up and its answers to libvirt's queries"),
    ("up", "the guest booted, its SSH session opened and its NICs addressed, the features configured"),
    ("checked", "after the checks"),
)


class LabError(VnetlabError):
    """A failure the user can act on; the CLI prints it without a traceback."""


class TeardownIncomplete(LabError):
    """Teardown removed what it could; `result.left` is still there (and is all the state file keeps)."""

    def __init__(self, lab: str, result: TeardownResult):
        super().__init__(
            f"teardown left resources behind (the state file keeps them, and only them; retry with `vnetlab down {lab}`):\n  "
            + "\n  ".join(result.problems)
        )
        self.lab = lab
        self.result = result


@dataclass
class DownReport:
    """What `down` did to one lab."""

    lab: str
    existed: bool
    removed: list[RecordedResource] = field(default_factory=list)
    left: list[RecordedResource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def default_admission() -> int:
    """Guests booting at once by default: the host's cores plus one. Measured here (2 cores, TCG,
    bench/admission.py): 30 guests came up in 49 s three at a time against 63 s all at once and
    53 s two at a time (one at a time: 86 s); ten guests within noise of all at once."""
    return (os.cpu_count() or 1) + 1


@dataclass
class Options:
    lab: str | None = None
    accel: str = "auto"
    keep: bool = False
    boot_timeout: float = 180.0
    boot_parallel: int | None = None  # guests booting at once (0: all; None: default_admission()); the next starts when one's console says it is ready
    layout: Layout = field(default_factory=Layout)
    before_apply: Callable[[Plan], None] | None = None  # e.g. print `--explain` once the plan is known
    scenario_dirs: list[Path] = field(default_factory=list)  # --scenarios, searched before VNETLAB_PATH and the built-in ones
    cold: bool = False  # boot every guest (--cold) instead of restoring it from a warm image where it can be
    allow_host_paths: bool = False  # --allow-host-paths: the scenario may read host files outside its folder (docs/reliability.md, "Trust model")
    student: str | None = None  # whose params the scenario is drawn with (None: student `demo`)
    after_up: Callable[[Plan, dict[str, GuestSSH], Path], None] | None = None  # once the guests are up and configured, before the checks, under the lab's lock (an exercise's setup); a failure tears the lab down


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
    guests: dict[str, GuestTiming] = field(default_factory=dict)  # VM → its image and how long it took to come up
    memory_kib: dict[str, dict[str, int]] = field(default_factory=dict)  # VM → the highest Pss/Rss sampled of its qemu, and the last Pss
    qemu_cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)  # VM → CPU seconds its qemu had used by each moment of CPU_MOMENTS
    vnetlab_cpu_s: float | None = None  # CPU seconds this process (all its threads) spent on the run, from loading the scenario to teardown
    placement: list[str] = field(default_factory=list)  # where features run on this host, and why (the plan's notes)
    reported: dict[str, Any] = field(default_factory=dict)  # feature → what its `report` hook read from the configured lab (e.g. DHCP leases)

    def memory_json(self) -> dict[str, object]:
        """Per guest and in all, in MiB: what the run's qemu processes held at most when sampled, and
        at the last sample (pss_last: after the guests handed their free pages back)."""
        guests = {vm: {k: round(v / 1024, 1) for k, v in kib.items()} for vm, kib in self.memory_kib.items()}
        total = round(sum(kib["pss"] for kib in self.memory_kib.values()) / 1024, 1)
        last = round(sum(kib.get("pss_last", 0) for kib in self.memory_kib.values()) / 1024, 1)
        return {"sampled": "once all guests were addressed, and after the checks", "guests_mib": guests, "total_pss_mib": total, "total_pss_last_mib": last}

    def cpu_json(self) -> dict[str, object]:
        """Where the CPU went, in seconds: each guest's qemu by each moment, and vnetlab itself. On 2
        cores under TCG every second spent beside the guests' boots is a second they boot later."""
        guests = {vm: {k: round(v, 2) for k, v in moments.items()} for vm, moments in self.qemu_cpu_s.items()}
        vnetlab = None if self.vnetlab_cpu_s is None else round(self.vnetlab_cpu_s, 2)
        return {"moments": dict(CPU_MOMENTS), "qemu_s": guests, "vnetlab_s": vnetlab}

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)


def domain_running(connections: Connections, plan: Plan, vm: PlannedVM) -> bool:
    """Whether libvirt counts the guest's domain as active; never another lab's same-named domain."""
    dom = hv.lookup_of_lab(connections.get(vm.uri), vm.domain, plan.lab, METADATA_NS)
    return dom is not None and hv.is_running(dom)


def sample_guests(vms: list[PlannedVM], moment: str, outcome: Outcome, *, memory: bool = True) -> None:
    """Keep the CPU seconds each local guest's qemu has used by `moment` (one of CPU_MOMENTS) and,
    with `memory`, the highest Pss and Rss seen so far (smaps_rollup). Guests that are gone are skipped."""
    for vm in vms:
        pid = None if vm.host is not None else hv.qemu_pid(vm.domain)  # another hypervisor's qemu is not ours to read
        if pid is None:
            continue
        seconds = procfs.cpu_seconds(pid)
        if seconds is not None:
            outcome.qemu_cpu_s.setdefault(vm.name, {})[moment] = seconds
        figures = hv.qemu_memory_kib(pid) if memory else None
        if figures is None:
            continue
        seen = outcome.memory_kib.setdefault(vm.name, {"pss": 0, "rss": 0, "pss_last": 0})
        for key in ("pss", "rss"):
            seen[key] = max(seen[key], figures[key])
        seen["pss_last"] = figures["pss"]


def unique_lab_name(scenario: str) -> str:
    """`--name auto`: <scenario>-<6 random hex digits>, so labs of one scenario can run side by side."""
    suffix = secrets.token_hex(3)
    return f"{scenario[: LAB_NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def cold_by_environment() -> bool:
    """Whether $VNETLAB_COLD asks every lab to boot its guests (no warm start, whatever the command says)."""
    return os.environ.get(COLD_ENV, "") not in ("", "0")


def check_lab_name(lab: str) -> None:
    if not re.fullmatch(LAB_NAME, lab):
        raise LabError(f"lab name {lab!r} is not usable: expected {LAB_NAME} (lowercase letters, digits, '-', at most {LAB_NAME_MAX} characters)")


@contextmanager
def lab_lock(lab: str, state_file: Path, *, wait: Callable[[], None] | None = None) -> Iterator[None]:
    """One command at a time per lab; the lock file disappears with the lab. A busy lab is refused
    at once, or with `wait` (called once, to say so) waited for until the other command is done."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = LOCK_DIR / f"{lab}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if wait is None:
                    raise LabError(f"lab {lab!r} is busy: another vnetlab command is working on it") from None
                wait()
                wait = lambda: None  # noqa: E731 — said once, however often the file is replaced
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts it (the handler raises)
        except BaseException:
            os.close(fd)
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
    """SIGTERM behaves like Ctrl-C, so `kill` and CI timeouts also tear down. Off the main thread
    (a server driving labs from worker threads) signals are the main thread's: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def load(ref: str, model: ScenarioModel, dirs: list[Path] | None = None, say: Callable[[str], None] | None = None, student: str | None = None, *, allow_host_paths: bool = False) -> tuple[Path, Any]:
    """A scenario by path, or by name in the search path (`dirs`: --scenarios, VNETLAB_PATH, built in);
    `say` hears which file was taken when the name is in more than one folder; `student`: whose params."""
    resolved = resolve_scenario(ref, search_path(dirs or []))
    if resolved.note and say is not None:
        say(resolved.note)
    return resolved.path, load_scenario(resolved.path, model, student=student, allow_host_paths=allow_host_paths)


def new_run_dir(layout: Layout, lab: str) -> Path:
    """One folder per run for its artifacts (pcaps, console logs, XML, report); it outlives the lab.

    0700 like the lab folders: the captures and console logs show the guests' traffic and root
    shells. The folder is what protects them: whatever mode a file inside gets (the pcaps and
    reports are written by other modules), nobody but root can reach it through an 0700 folder
    owned by root. The files written here are 0600 as well."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = layout.runs / f"{lab}-{stamp}"
    layout.runs.mkdir(parents=True, exist_ok=True)
    path, n = base, 1
    while True:
        try:
            path.mkdir(mode=0o700)  # exclusive: two runs of one lab in one second get -2, -3, …
            break
        except FileExistsError:
            n += 1
            path = Path(f"{base}-{n}")
    os.chmod(path, 0o700)  # whatever the umask
    return path


def _console_text(plan: Plan, vm: PlannedVM, warn: Callable[[str], None]) -> bytes | None:
    """Its serial log, here or on its hypervisor (None when there is none, or it cannot be read:
    `warn` hears why, e.g. its hypervisor's SFTP stopped answering, which every read is bounded for)."""
    if vm.host is None:
        return vm.console_log.read_bytes() if vm.console_log.exists() else None
    try:
        with console_of(plan, vm) as console, console() as f:
            return f.read(CONSOLE_KEEP_MAX)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 — an artifact missing is no reason to fail the run or its teardown
        warn(f"{vm.name}'s console log was not kept: {exc}")
        return None


CONSOLE_KEEP_MAX = 16 * 1024 * 1024  # bytes of a remote guest's console kept as an artifact


def collect_artifacts(plan: Plan, run_dir: Path, pcaps: dict[str, Path], warn: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    consoles: dict[str, str] = {}
    xmls: dict[str, str] = {}
    for vm in plan.vms:
        console = _console_text(plan, vm, warn)
        if console is not None:
            dest = run_dir / f"{vm.name}.console.log"
            write_private(dest, console)
            consoles[vm.name] = str(dest)
        xml = run_dir / f"{vm.name}.domain.xml"
        defined = vm.secrets.parent / "domain.xml"  # what the domain was defined with: a restored guest's differs from the plan's
        write_private(xml, defined.read_bytes() if defined.is_file() else vm.xml.encode())
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

    def _images(self, scenario: Any) -> tuple[GuestImage, dict[ImageRef, ResolvedImage]]:
        """The tiny image (its kernel boots the debian kind too, and the KVM probe) and every image the VMs name."""
        refs = [vm_image(scenario, vm) for vm in scenario.vms]
        kinds = ", ".join(dict.fromkeys(ref.label() for ref in refs))
        with self.progress.step("image", f"Guest images ({kinds})"):
            return ensure_images(refs, self.options.layout.images, self.progress.detail)

    def _accel(self, image: GuestImage) -> AccelChoice:
        with self.progress.step("accel", "Accelerator"):
            choice = choose_accel(self.options.accel, image)
        self.progress.say(f"  accelerator: [bold]{choice.name}[/] — {escape(choice.reason)}")
        return choice

    def _bring_up(self, plan: Plan, state: LabState, image: GuestImage, run_dir: Path) -> dict[str, GuestSSH]:
        """Files and network, the warm images missing (made on first use), then every guest on its
        own way: started (booted or restored), ready on its console, SSH, addresses."""
        connections = Connections()
        sessions: dict[str, GuestSSH] = {}
        collected = threading.Lock()
        try:
            def is_running(vm) -> bool:
                return domain_running(connections, plan, vm)

            stop = threading.Event()
            if state.cold and not self.options.cold:
                self.progress.detail(f"warm start off ({COLD_ENV} is set): every guest boots")
            keys = {} if state.cold else warm_keys(plan, self.progress.detail)
            apply_network(plan, state, connections, image, self.progress, restored=keys)
            try:
                images = ensure_warm_images(plan, state, connections.get(), keys, self.options.layout.images, self.progress) if keys else {}
            except VnetlabError as exc:
                raise LabError(f"{exc}\n(warm start: `--cold` boots every guest instead)") from exc
            starters = restorers(images)

            def until_ready(vm, started: float) -> None:  # a booting guest holds its slot until its console says it is ready
                if says_ready(vm, starters[vm.name].how if vm.name in starters else "boot"):
                    with console_of(plan, vm) as console:
                        wait_for_marker(vm, started + self.options.boot_timeout, is_running, stop, console)
                    self.progress.vm_stage(vm.name, "console ready")

            def then(vm, started: float) -> None:  # as soon as this guest started: SSH, then its addresses
                how = starters[vm.name].how if vm.name in starters else "boot"
                warm = images[vm.name].key if vm.name in images else None
                ssh, timing = come_up(plan, vm, started, self.progress, self.options.boot_timeout, is_running, stop, how=how, warm_image=warm)
                with collected:
                    sessions[vm.name] = ssh
                if self.outcome is not None:
                    self.outcome.guests[vm.name] = timing
                address_vm(vm, ssh, self.progress)

            limit = default_admission() if self.options.boot_parallel is None else self.options.boot_parallel
            bounded = 0 < limit < len(plan.vms)
            paused = (lambda vm: sample_guests([vm], "started", self.outcome, memory=False)) if self.outcome else None
            start_guests(
                plan, state, connections, self.progress, Admission(limit, until_ready if bounded else None, stop),
                before_resume=paused, then=then, starters=starters,
            )
        except BaseException:
            close_all(sessions)
            raise
        finally:
            connections.close()
        try:
            for feature in plan.features:
                label = feature.configure_label(plan)
                if label is not None:
                    with self.progress.step(feature.name, label):
                        feature.configure(plan, sessions, run_dir)
            self._report_features(plan)
        except BaseException:
            close_all(sessions)
            raise
        state.set_phase(plan.lab_dir, "up")
        return sessions

    def _report_features(self, plan: Plan) -> None:
        """What the features say of the configured lab (e.g. the DHCP leases), into the report and said now."""
        for feature in plan.features:
            data = feature.report(plan)
            if data is None:
                continue
            if self.outcome is not None:
                self.outcome.reported[feature.name] = dict(data)
            for line in feature.report_lines(data):
                self.progress.detail(line)

    def _check(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path, outcome: Outcome, setting: RunSetting, scenario_text: str) -> None:
        keep_setting(run_dir, setting, scenario_text)  # first: what judging needs besides the evidence
        with self.progress.step("checks", f"Running {len(plan.scenario.checks)} check(s)"):
            outcome.checks, pcaps = run_checks(plan, sessions, run_dir)
        outcome.artifacts["pcap"] = {br: str(p) for br, p in pcaps.items()}
        outcome.artifacts["evidence"] = str(run_dir / EVIDENCE_FILE)

    def _teardown(self, lab_dir: Path, state: LabState) -> TeardownResult:
        with shielded(), self.progress.step("teardown", f"Tearing down lab {state.lab}"):
            result = teardown_lab(lab_dir, state, removers(self.model))
            if result.left:  # inside the step: it is marked failed
                raise TeardownIncomplete(state.lab, result)
        return result

    def _collect(self, plan: Plan, run_dir: Path, outcome: Outcome, sessions: dict[str, GuestSSH], *, stop_guests: bool = False) -> None:
        """Keep the artifacts, then (stop_guests: the lab is torn down next) let the guests power
        themselves off, then close the sessions; signals held off. A failure here (a full disk) is
        reported in the outcome; it never keeps the teardown that follows from running."""
        with shielded():
            try:
                pcaps = {br: Path(p) for br, p in outcome.artifacts.get("pcap", {}).items()}  # type: ignore[union-attr]
                outcome.artifacts.update(collect_artifacts(plan, run_dir, pcaps, lambda problem: self.progress.say(f"[yellow]warning:[/] {escape(problem)}")))
            except Exception as exc:  # noqa: BLE001 — reported, and teardown still runs
                problem = f"could not keep the run's artifacts in {run_dir}: {exc}"
                outcome.error = problem if outcome.error is None else f"{outcome.error}; {problem}"
                self.progress.say(f"[yellow]warning:[/] {escape(problem)}")
            try:
                if stop_guests:
                    self._power_off(plan, sessions)
            finally:
                try:
                    close_all(sessions)
                except Exception:  # noqa: BLE001 — a session that will not close is no reason to keep the lab
                    pass

    @staticmethod
    def _power_off(plan: Plan, sessions: dict[str, GuestSSH]) -> None:
        """The guests power themselves off before teardown (best effort: any error leaves them to it)."""
        connections = Connections()
        try:
            power_off(plan, sessions, lambda vm: domain_running(connections, plan, vm))
        except VnetlabError:
            pass  # libvirt did not answer: teardown says so, with what it could not remove
        finally:
            connections.close()

    # -- commands --------------------------------------------------------

    def run(self, ref: str, *, keep: bool, check: bool = True) -> Outcome:
        """`vnetlab run` (check=True) and `vnetlab up` (check=False, keep=True)."""
        cpu_at_start = procfs.cpu_seconds(os.getpid()) or 0.0  # under pytest this process is the whole test session: the run counts from here
        path, scenario = load(ref, self.model, self.options.scenario_dirs, lambda note: self.progress.detail(note), self.options.student, allow_host_paths=self.options.allow_host_paths)
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
            refuse_domain_clashes(self.options.layout, lab, {domain_name(lab, vm.name): vm.name for vm in scenario.vms})
            image, images = self._images(scenario)
            outcome.accel = self._accel(image)
            instance = secrets.token_hex(4)  # this lab instance's own: its folders on other hypervisors are named with it
            plan = make_plan(scenario, lab, PlanOptions(outcome.accel.domain_type, image.kernel, self.options.layout, images, host_capabilities(), instance))
            outcome.placement = list(plan.notes)
            for note in plan.notes:  # where features run when the host kernel decides it: never silently
                self.progress.say(f"  {escape(note)}")
            if self.options.before_apply is not None:
                self.options.before_apply(plan)
            run_dir = new_run_dir(self.options.layout, lab)
            outcome.artifacts["dir"] = str(run_dir)
            make_private_dir(plan.lab_dir)  # apply() lets libvirt's qemu group through to the guests' files
            text = path.read_text()
            (plan.lab_dir / SCENARIO_COPY).write_text(text)
            state = LabState(
                lab, scenario.name, str(path.resolve()), plan.namespace, plan.domain_type, str(image.kernel), os.getpid(),
                host_kernel=sorted(plan.host_kernel), instance=instance, allow_host_paths=self.options.allow_host_paths, student=self.options.student,
                cold=self.options.cold or cold_by_environment(),
            )
            state.save(plan.lab_dir)
            self.outcome = outcome
            sessions: dict[str, GuestSSH] = {}
            try:
                sessions = self._bring_up(plan, state, image, run_dir)
                sample_guests(plan.vms, "up", outcome)
                if self.options.after_up is not None:
                    self.options.after_up(plan, sessions, run_dir)
                if check:
                    self._check(plan, sessions, run_dir, outcome, run_setting(plan, state, self.options.layout), text)
                    sample_guests(plan.vms, "checked", outcome)
            except Interrupted as exc:
                outcome.error = f"interrupted ({exc}); the lab was torn down"
                keep = False
                raise
            except BaseException as exc:
                outcome.error = str(exc)
                keep = False
                raise
            finally:
                try:
                    self._collect(plan, run_dir, outcome, sessions, stop_guests=not keep)
                finally:  # even if a signal came before the shield: teardown is never skipped
                    if keep:
                        outcome.kept = True
                        state.release(plan.lab_dir)
                    else:
                        self._teardown(plan.lab_dir, state)
                    outcome.vnetlab_cpu_s = (procfs.cpu_seconds(os.getpid()) or 0.0) - cpu_at_start
        return outcome

    def check(self, lab: str, only: str | None = None) -> Outcome:
        """`vnetlab check LAB [--only NAME]`: run the scenario's checks (or the one named) again on a lab that is up."""
        check_lab_name(lab)
        paths = LabPaths(self.options.layout, lab)
        with lab_lock(lab, paths.state_file), interrupts_as_exceptions():
            state = read_state(paths)
            if state.phase != "up":
                raise LabError(f"lab {lab!r} is not up (phase: {state.phase}); `vnetlab down {lab}` cleans it up")
            plan = plan_from_state(paths, state, self.model)
            if only is not None:
                plan = only_check(plan, only)
            setting = run_setting(plan, state, self.options.layout, only=only)
            outcome = Outcome(plan.scenario.name, lab, kept=True)
            outcome.accel = AccelChoice("kvm" if state.domain_type == "kvm" else "tcg", state.domain_type, "as chosen when the lab came up")
            self.outcome = outcome
            run_dir = new_run_dir(self.options.layout, lab)
            sessions: dict[str, GuestSSH] = {}
            try:
                with self.progress.step("connect", "Connecting to guests"):
                    sessions = open_sessions(plan)
                self._check(plan, sessions, run_dir, outcome, setting, (paths.dir / SCENARIO_COPY).read_text())
            except Interrupted as exc:
                exc.consequence = f"the checks were stopped; the lab is still up (`vnetlab down {lab}` removes it)"
                outcome.error = f"interrupted ({exc}); {exc.consequence}"
                raise
            except Exception as exc:
                outcome.error = str(exc)
                raise
            finally:
                self._collect(plan, run_dir, outcome, sessions)
            return outcome

    def down(self, lab: str) -> DownReport:
        """`existed` is False when there was no such lab (down is idempotent). Raises
        TeardownIncomplete (with what was removed and what is left) when something stays."""
        check_lab_name(lab)
        paths = LabPaths(self.options.layout, lab)
        with lab_lock(lab, paths.state_file):
            if not paths.state_file.exists():
                # Killed before its first state write, or in teardown's final rmtree: only files remain.
                if paths.dir.is_dir():
                    shutil.rmtree(paths.dir)
                    return DownReport(lab, True)
                return DownReport(lab, False)
            result = self._teardown(paths.dir, read_state(paths))
            return DownReport(lab, True, result.removed, result.left, result.problems)


def plan_from_state(paths: LabPaths, state: LabState, model: ScenarioModel) -> Plan:
    """The plan of an existing lab: re-planned from its copy of the scenario (the plan is pure, so names match)."""
    scenario = parse_scenario((paths.dir / SCENARIO_COPY).read_text(), state.scenario_file, model, student=state.student, allow_host_paths=state.allow_host_paths)
    return make_plan(scenario, paths.lab, PlanOptions(state.domain_type, Path(state.kernel), paths.layout, host_kernel=frozenset(state.host_kernel), instance=state.instance))


def run_setting(plan: Plan, state: LabState, layout: Layout, checks: str = "checks", only: str | None = None) -> RunSetting:
    """What a run's checks are judged with besides the evidence (kept in its folder for `vnetlab judge`)."""
    return RunSetting(state.scenario_file, plan.lab, plan.domain_type, str(plan.kernel), str(layout.root), tuple(sorted(plan.host_kernel)), state.student, checks, only, state.allow_host_paths)


def only_check(plan: Plan, name: str) -> Plan:
    """The plan with only the check whose `name:` is `name` (captures then see that check's traffic only)."""
    try:
        return select_checks(plan, only=name)
    except NoSuchCheck:
        named = [c.spec.name for c in plan.scenario.checks if getattr(c.spec, "name", None)]
        raise LabError(f"no check named {name!r} in lab {plan.lab!r} (named checks: {', '.join(repr(n) for n in named) or 'none; give a check a name: to pick it'})") from None


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
    domains: dict[str, str]  # domain → running | stopped | missing | unknown (why) | not this lab's (whose)
    namespace: bool
    pid: int = 0  # the process that built it
    libvirt_problem: str | None = None  # why the domains are unknown (libvirtd down or wedged), once for all
    held: bool = True  # its owner still works on it (else: handed over by `up`/`--keep`)


class _StatusConnection:
    """libvirt for `status` and `down --all`: connected once per hypervisor, on first need. A
    libvirtd down or wedged makes its domains 'unknown (why)', and the listing goes on (it must,
    for `down --all`)."""

    def __init__(self) -> None:
        self.connections = Connections()
        self.error: str | None = None  # this machine's libvirtd's

    def domain_state(self, name: str, lab: str, uri: str | None = None) -> str:
        try:
            conn = self.connections.get(uri)
        except Exception as exc:  # noqa: BLE001 — shown per domain instead
            if uri is None:
                self.error = str(exc)
                return "unknown (libvirtd not answering)"
            return "unknown (its hypervisor does not answer)"
        try:
            dom = hv.lookup_of_lab(conn, name, lab, METADATA_NS)
            return "missing" if dom is None else ("running" if hv.is_running(dom) else "stopped")
        except hv.ForeignDomain as exc:
            return f"not this lab's ({'lab ' + repr(exc.owner) if exc.owner else 'no vnetlab metadata'})"
        except Exception as exc:  # noqa: BLE001 — one domain that cannot be read does not hide the rest
            return f"unknown ({exc})"

    def close(self) -> None:
        self.connections.close()


def lab_statuses(layout: Layout) -> list[LabStatus]:
    out: list[LabStatus] = []
    if not layout.labs.exists():
        return out
    libvirt_view = _StatusConnection()
    try:
        for lab_dir in sorted(p for p in layout.labs.iterdir() if p.is_dir()):
            if not (lab_dir / STATE_FILE).exists():  # killed before its first record: only files to remove
                out.append(LabStatus(lab_dir.name, "?", "files only", False, {}, False))
                continue
            try:
                state = LabState.load(lab_dir)
            except (ValueError, TypeError, KeyError):
                continue
            domains = {r.name: libvirt_view.domain_state(r.name, state.lab, r.uri) for r in state.resources if r.kind == "domain"}
            out.append(LabStatus(state.lab, state.scenario, state.phase, owner_alive(state), domains, netns.namespace_exists(state.namespace), state.pid, libvirt_view.error, state.held))
    finally:
        libvirt_view.close()
    return out


def refuse_domain_clashes(layout: Layout, lab: str, domains: dict[str, str]) -> None:
    """Refuse a lab whose domain name (domain → VM) another lab records: names are vnl-<lab>-<vm>,
    so lab 'a' VM 'b-c' and lab 'a-b' VM 'c' would share vnl-a-b-c. Checked before anything is
    created; two labs racing past this both reach libvirt, which defines only one of them."""
    if not layout.labs.exists():
        return
    for lab_dir in sorted(p for p in layout.labs.iterdir() if p.is_dir() and p.name != lab):
        try:
            state = LabState.load(lab_dir)
        except (OSError, ValueError, TypeError, KeyError):
            continue
        for r in state.resources:
            if r.kind == "domain" and r.name in domains:
                raise LabError(
                    f"VM {domains[r.name]!r} of lab {lab!r} would be libvirt domain {r.name!r}, which lab {state.lab!r} already uses"
                    f"{f' for its VM {r.vm!r}' if r.vm else ''} (domain names join lab and VM with '-'): pick another lab name with --name"
                )
