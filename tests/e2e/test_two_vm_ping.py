"""two-vm-ping on real guests through the real CLI, and nothing left behind afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from vnetlab.backends.linux_bridge import list_links
from vnetlab.netns import list_namespaces
from vnetlab.paths import Layout
from vnetlab.plan import METADATA_NS, tap_prefix

pytestmark = pytest.mark.e2e

VNETLAB = [sys.executable, "-m", "vnetlab.cli"]


def vnetlab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*VNETLAB, *args], capture_output=True, text=True, timeout=timeout)


def qemu_pids_of(lab: str) -> list[int]:
    """qemu processes whose command line names one of this lab's domains."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and f"guest=vnl-{lab}-" in cmdline:
            pids.append(int(proc.name))
    return pids


def leftovers(lab: str) -> list[str]:
    found = []
    if f"vnl-{lab}" in list_namespaces():
        found.append(f"namespace vnl-{lab}")
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
    if Layout().lab_dir(lab).exists():
        found.append(f"lab folder {Layout().lab_dir(lab)}")
    return found


@pytest.fixture
def lab_name(request):
    name = f"t-{os.getpid() % 100000}-{request.node.name[:8].replace('_', '-')}"
    yield name
    vnetlab("down", name)
    assert leftovers(name) == []


def test_run_two_vm_ping_passes_and_leaves_nothing(tmp_path, lab_name):
    report_path = tmp_path / "report.json"
    result = vnetlab("run", "two-vm-ping", "--name", lab_name, "--report", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["scenario"] == "two-vm-ping" and report["lab"] == lab_name
    assert report["accel"] in ("kvm", "tcg")
    assert [s["name"] for s in report["steps"]] == ["image", "accel", "prepare", "network", "boot", "wait", "configure", "checks", "teardown"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ping vm1 → vm2"]["ok"] and checks["ping vm2 → vm1"]["ok"]
    [capture] = [c for c in report["checks"] if c["kind"] == "capture"]
    counts = capture["counts"]
    assert counts["arp_request"] >= 1 and counts["arp_reply"] >= 1
    assert counts["icmp_echo_request"] >= 6 and counts["icmp_echo_reply"] >= 6 and counts["icmp_echo_pairs"] >= 6
    pcap = Path(report["artifacts"]["pcap"]["br0"])
    assert pcap.stat().st_size > 0
    for log in report["artifacts"]["console"].values():
        assert "VNETLAB-READY" in Path(log).read_text()
    assert "PASS" in result.stdout
    assert leftovers(lab_name) == []


def test_up_check_down(lab_name):
    up = vnetlab("up", "two-vm-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    again = vnetlab("up", "two-vm-ping", "--name", lab_name)
    assert again.returncode == 1 and "already exists" in again.stderr
    status = vnetlab("status")
    assert lab_name in status.stdout
    check = vnetlab("check", lab_name)
    assert check.returncode == 0, check.stdout + check.stderr
    down = vnetlab("down", lab_name)
    assert down.returncode == 0 and "removed" in down.stdout
    assert leftovers(lab_name) == []
    assert "nothing to remove" in vnetlab("down", lab_name).stdout


def test_ctrl_c_while_guests_boot_tears_down(lab_name):
    proc = subprocess.Popen([*VNETLAB, "run", "two-vm-ping", "--name", lab_name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = Layout().lab_dir(lab_name) / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if state.exists() and '"domain"' in state.read_text():
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the lab never got to booting")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert leftovers(lab_name) == []


def test_a_failing_check_fails_the_run_and_says_what_it_saw(tmp_path, lab_name):
    """Pings to an address nobody has: 'must fail' passes, 'must succeed' fails, the run exits 1."""
    scenario = Path(__file__).parents[2] / "scenarios" / "two-vm-ping.yaml"
    text = scenario.read_text().split("checks:")[0] + (
        "checks:\n"
        "  - ping: {from: vm1, to: 10.1.1.99, count: 2, expect: failure}\n"
        "  - ping: {from: vm1, to: 10.1.1.99, count: 2}\n"
    )
    path = tmp_path / "unreachable.yaml"
    path.write_text(text)
    report_path = tmp_path / "report.json"
    result = vnetlab("run", str(path), "--name", lab_name, "--report", str(report_path))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] is False
    must_fail, must_succeed = report["checks"]
    assert must_fail["ok"] is True and "expected no echo reply from 10.1.1.99, got 0/2" in must_fail["detail"]
    assert must_succeed["ok"] is False and "expected 2/2 echo replies from 10.1.1.99, got 0/2" in must_succeed["detail"]
    assert "FAIL" in result.stdout
    assert leftovers(lab_name) == []
