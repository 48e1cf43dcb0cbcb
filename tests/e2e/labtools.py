"""Shared helpers of the end-to-end tests: drive the real CLI, and find anything a lab left behind."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt
import pytest

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends.linux_bridge import list_links
from vnetlab.backends.netns import list_namespaces
from vnetlab.backends.warm_image import KIND as WARM
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import METADATA_NS, tap_prefix
from vnetlab.run.lab import cold_by_environment

# How a local guest of a run without --cold starts: restored from a warm image, unless $VNETLAB_COLD
# (`make test-cold`) boots every guest.
DEFAULT_START = "boot" if cold_by_environment() else "restore"

VNETLAB = [sys.executable, "-m", "vnetlab"]
ENV = {**os.environ, "COLUMNS": "250"}  # tables unwrapped, so names can be found in them


def vnetlab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*VNETLAB, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def run_report(tmp_path: Path, scenario: str, lab: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`vnetlab run` with a JSON report; returns the process and the parsed report."""
    report_path = tmp_path / "report.json"
    result = vnetlab("run", scenario, "--name", lab, "--report", str(report_path), *extra)
    return result, json.loads(report_path.read_text())


def scenario_with_checks(tmp_path: Path, scenario: str, checks: str | None, *, name: str | None = None) -> Path:
    """A copy of a shipped scenario, renamed and/or with its checks replaced (None keeps them)."""
    text = (SCENARIOS_DIR / f"{scenario}.yaml").read_text()
    if name is not None:
        text = text.replace(f"name: {scenario}", f"name: {name}", 1)
    path = tmp_path / f"{name or scenario}.yaml"
    path.write_text(text if checks is None else text.split("checks:")[0] + "checks:\n" + checks)
    return path


def run_failing(tmp_path: Path, scenario: str, checks: str, name: str, lab: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`vnetlab run` of a shipped scenario renamed `name` with `checks` instead of its own, which
    must fail the run (exit 1); returns the process and the parsed report."""
    result, report = run_report(tmp_path, str(scenario_with_checks(tmp_path, scenario, checks, name=name)), lab)
    assert result.returncode == 1, result.stdout + result.stderr
    return result, report


def warm_image_modes(key: str) -> dict[str, tuple[int, str]]:
    """A warm image's cache entry as the cache keeps it: its folder (".") and each file → (mode,
    "root" or "qemu" for its group); the owner must be root throughout."""
    conn = libvirt.open("qemu:///system")
    try:
        qemu = hv.qemu_group(conn, "qemu")
    finally:
        conn.close()
    entry = Layout().images / f"{WARM}-{key}"
    found = {}
    for path in (entry, *entry.iterdir()):
        st = path.stat()
        assert st.st_uid == 0, (path, st.st_uid)
        group = "root" if st.st_gid == 0 else "qemu" if st.st_gid == qemu else str(st.st_gid)
        found["." if path == entry else path.name] = (st.st_mode & 0o7777, group)
    return found


def starts_of(lab: str) -> dict[str, str]:
    """VM → how `vnetlab inspect` says it started: "warm" (restored from a warm image) or "cold" (booted)."""
    inspect = vnetlab("inspect", lab, "--format", "json", "--no-guest")
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    return {vm["name"]: vm["start"].split(" ")[0] for vm in json.loads(inspect.stdout)["vms"]}


def lab_name_for(request, prefix: str) -> str:
    """A lab name unique to this test process and test, within the 24-character limit."""
    test = request.node.name.removeprefix("test_").split("[")[0][:8].strip("_").replace("_", "-")
    return f"{prefix}{os.getpid() % 10000}-{test}"


def module_lab_name_for(request, prefix: str) -> str:
    """A lab name unique to this test process and module (for a lab shared by a module's tests)."""
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")[:8].strip("_").replace("_", "-")
    return f"{prefix}{os.getpid() % 10000}-{module}"


def state_of(lab: str) -> dict | None:
    """The lab's state file as written so far, or None."""
    try:
        return json.loads((Layout().lab_dir(lab) / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_until(what: str, predicate, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Poll predicate; fail the test if proc ends first or the time runs out (proc is then killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.02)
    if proc is not None:
        proc.kill()
        proc.communicate()
    pytest.fail(f"timed out waiting for {what}")


class LineWatcher:
    """The lines a running command writes to one of its pipes, read in a thread, so a test can wait
    for a line (with a deadline) instead of sleeping and hoping."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        """The first line containing needle; fails the test if the stream ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line with {needle!r} within {timeout} s; got: {self.lines}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"the stream ended without a line with {needle!r}; got: {self.lines}")
            self.lines.append(line)
            if needle in line:
                return line

    def rest(self, timeout: float = 30) -> str:
        """Everything after what wait_for consumed, once the stream ends (the command has exited)."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


class Pinger:
    """`vnetlab ssh LAB VM -- ping` again and again until stopped (or a deadline): traffic for a
    capture that ends after N packets, however late it really starts listening."""

    def __init__(self, lab: str, vm: str, target: str, *, deadline: float = 120) -> None:
        self.stop = threading.Event()
        self.rounds = 0
        self._args = ("ssh", lab, vm, "--", f"ping -c 2 -i 0.2 -W 2 {target}")
        self._deadline = time.monotonic() + deadline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self._deadline:
            vnetlab(*self._args, timeout=60)
            self.rounds += 1

    def __enter__(self) -> "Pinger":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(90)


def start(*args: str) -> subprocess.Popen:
    """`vnetlab ARGS` in the background, output captured."""
    return subprocess.Popen([*VNETLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def start_run_until_booting(scenario: str, lab: str) -> subprocess.Popen:
    """`vnetlab run` in the background, returned once a domain of the lab is recorded (guests booting)."""
    proc = start("run", scenario, "--name", lab)
    wait_until("the lab to be booting", lambda: (s := state_of(lab)) is not None and any(r["kind"] == "domain" for r in s["resources"]), proc)
    return proc


def _processes_whose_cmdline_has(needle: bytes) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def qemu_pids_of(lab: str) -> list[int]:
    """qemu processes of this lab's domains (libvirt names them in `-name guest=`): its guests'
    (vnl-LAB-VM) and those of the warm images it made (vnl-LAB.warmN)."""
    pids = _processes_whose_cmdline_has(f"guest=vnl-{lab}-".encode()) + _processes_whose_cmdline_has(f"guest=vnl-{lab}.warm".encode())
    return [pid for pid in pids if b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def ovs_daemons_of(lab: str) -> list[int]:
    """Live processes whose command line names this lab's OVS folder (zombies have none)."""
    return _processes_whose_cmdline_has(str(Layout().lab_dir(lab) / "ovs").encode())


def leftovers(lab: str) -> list[str]:
    """Everything of the lab still on the host: namespaces (its own and its nodes'), domains, taps, processes, files."""
    found = [f"namespace {ns}" for ns in list_namespaces() if ns == f"vnl-{lab}" or ns.startswith(f"vnl-{lab}.")]
    conn = libvirt.open("qemu:///system")
    try:
        for dom in conn.listAllDomains():
            try:
                raw = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
            except libvirt.libvirtError:
                continue
            if f"name='{lab}'" in raw or f'name="{lab}"' in raw:
                found.append(f"domain {dom.name()}")
    finally:
        conn.close()
    found += [f"tap {link['name']}" for link in list_links(None) if link["name"].startswith(tap_prefix(lab))]
    found += [f"qemu pid {pid}" for pid in qemu_pids_of(lab)]
    found += [f"ovs daemon pid {pid}" for pid in ovs_daemons_of(lab)]
    found += [f"simulated hypervisor sshd pid {pid}" for pid in _processes_whose_cmdline_has(f"/labs/{lab}/hosts/".encode())]
    found += [f"dnsmasq pid {pid}" for pid in _processes_whose_cmdline_has(f"/labs/{lab}/dhcp/".encode())]
    found += [f"hosted folder {p}" for p in Path("/var/lib/vnetlab/hosted").glob(f"{lab}.*")]
    if Layout().lab_dir(lab).exists():
        found.append(f"lab folder {Layout().lab_dir(lab)}")
    return found
