"""Shared helpers of the end-to-end tests: drive the real CLI, and find anything a lab left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from vnetlab.backends.linux_bridge import list_links
from vnetlab.backends.netns import list_namespaces
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import METADATA_NS, tap_prefix

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


def lab_name_for(request, prefix: str) -> str:
    """A lab name unique to this test process and test, within the 24-character limit."""
    test = request.node.name.removeprefix("test_").split("[")[0][:8].strip("_").replace("_", "-")
    return f"{prefix}{os.getpid() % 10000}-{test}"


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
    """qemu processes of this lab's domains (libvirt names them in `-name guest=`)."""
    return [pid for pid in _processes_whose_cmdline_has(f"guest=vnl-{lab}-".encode()) if b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()]


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
    if Layout().lab_dir(lab).exists():
        found.append(f"lab folder {Layout().lab_dir(lab)}")
    return found
