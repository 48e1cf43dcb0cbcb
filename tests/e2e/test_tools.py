"""inspect, graph, ssh, console, shell, capture and JUnit through the real CLI, on a lab that is up."""

from __future__ import annotations

import html
import json
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scapy.all import rdpcap
from labtools import ENV, VNETLAB, LineWatcher, Pinger, vnetlab

from vnetlab.backends.linux_bridge import attach_to_bridge, detach_from_bridge
from vnetlab.compose import registry
from vnetlab.run.lab import running_plan

pytestmark = pytest.mark.e2e
LAB_PREFIX = "t5"


@pytest.fixture(scope="module")
def lab(module_lab_name):
    """two-vm-ping, up for the module (module_lab_name brings it down and checks nothing is left)."""
    up = vnetlab("up", "two-vm-ping", "--name", module_lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    return running_plan(module_lab_name, registry())


def test_inspect_shows_the_live_chain_and_flags_a_detached_tap(lab):
    LAB = lab.lab
    result = vnetlab("inspect", LAB, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["namespace_present"] is True
    for vm in report["vms"]:
        assert vm["state"] == "running" and Path(f"/proc/{vm['pid']}/cmdline").read_bytes().find(vm["domain"].encode()) >= 0
        for nic in vm["nics"]:
            fdinfo = Path(f"/proc/{vm['pid']}/fdinfo/{nic['tun_fd']}").read_text()
            assert f"iff:\t{nic['tap']}" in fdinfo  # the fd really is the tap's queue
            assert nic["bridge"] == nic["bridge_planned"] and nic["port_state"] == "forwarding" and nic["tap_oper"] == "UP"
            assert nic["guest_addresses"] == [nic["address_planned"]] and nic["problems"] == []

    tap = lab.vm("vm2").nic_on("br0").tap
    detach_from_bridge(lab.namespace, tap)
    try:
        broken = vnetlab("inspect", LAB)
    finally:
        attach_to_bridge(lab.namespace, tap, "br0")
    assert broken.returncode == 1
    assert f"vm2 eth0: tap {tap} is detached: it is a port of no bridge (planned: br0)" in broken.stdout
    assert "1 broken link(s)" in broken.stdout
    assert vnetlab("inspect", LAB).returncode == 0


def test_ssh_runs_a_command_and_returns_its_status(lab):
    LAB = lab.lab
    result = vnetlab("ssh", LAB, "vm1", "--", "hostname")
    assert result.returncode == 0 and result.stdout == "vm1\n", result.stderr
    assert vnetlab("ssh", LAB, "vm2", "--", "exit 7").returncode == 7
    missing = vnetlab("ssh", LAB, "vm9", "--", "true")
    assert missing.returncode == 1 and "has no VM 'vm9'" in missing.stderr


def test_shell_runs_in_the_lab_namespace(lab):
    LAB = lab.lab
    result = vnetlab("shell", LAB, "-c", "ip -br link")
    assert result.returncode == 0 and "br0" in result.stdout and "vnl-mgmt" in result.stdout
    piped = subprocess.run([*VNETLAB, "shell", LAB], input="bridge link show master br0\n", capture_output=True, text=True, timeout=60)
    ports = {line.split(":")[1].strip() for line in piped.stdout.splitlines() if "master br0" in line}
    assert ports == {n.tap for v in lab.vms for n in v.nics}, piped.stdout + piped.stderr


def test_console_reaches_the_serial_root_shell(lab):
    """`console` stops once the console has been quiet for --quiet-for seconds; a guest starved of
    CPU on a busy host may answer later than that, so the exchange is repeated until the answer
    (computed by the guest's shell, not the tty's echo of the command) is seen, within a deadline."""
    deadline = time.monotonic() + 120
    outputs = []
    while time.monotonic() < deadline:
        result = subprocess.run([*VNETLAB, "console", lab.lab, "vm2", "--quiet-for", "2"], input="echo T5-$((6*7)) $(hostname)\n", capture_output=True, text=True, timeout=90, env=ENV)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
        if "T5-42 vm2" in result.stdout:
            return
    pytest.fail(f"the guest's shell never answered on the console: {outputs}")


def test_capture_to_a_file_and_to_stdout(lab, tmp_path):
    """-c N stops after N packets: the pings go on until the capture has them all, so they cannot
    start before it listens, or end before it has its N (no sleep racing the capture's start)."""
    LAB = lab.lab
    pcap = tmp_path / "br0.pcap"
    capture = subprocess.Popen([*VNETLAB, "capture", LAB, "br0", "-w", str(pcap), "-c", "6", "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    err = LineWatcher(capture.stderr)
    err.wait_for(f"capturing on br0 in lab {LAB}")
    with Pinger(LAB, "vm1", "10.1.1.3"):
        capture.wait(timeout=90)  # not communicate(): it would read stderr too, beside the watcher
    out = capture.stdout.read()
    stderr = err.rest()
    assert capture.returncode == 0, stderr
    assert "6 packet(s)" in stderr and out.count("\n") == 6 and "echo-request" in out, out + stderr
    assert len(rdpcap(str(pcap))) == 6

    with Pinger(LAB, "vm2", "10.1.1.2"):  # `-w -` prints no line first: pcap and nothing else on stdout
        streamed = subprocess.run([*VNETLAB, "capture", LAB, "br0", "-w", "-", "-c", "4", "--timeout", "60"], capture_output=True, timeout=90, env=ENV)
    assert streamed.returncode == 0 and streamed.stdout[:4] == bytes.fromhex("d4c3b2a1"), streamed.stderr  # pcap magic, nothing else on stdout
    out_pcap = tmp_path / "stdout.pcap"
    out_pcap.write_bytes(streamed.stdout)
    assert len(rdpcap(str(out_pcap))) == 4


def test_graph_of_the_running_lab_uses_its_real_taps(lab, tmp_path):
    LAB = lab.lab
    svg = tmp_path / "lab.svg"
    result = vnetlab("graph", LAB, "-o", str(svg))
    assert result.returncode == 0, result.stderr
    text = html.unescape(svg.read_text())  # Graphviz writes '-' as &#45;
    assert "<svg" in text and all(n.tap in text for v in lab.vms for n in v.all_nics)
    mermaid = vnetlab("graph", LAB, "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart LR") and f"namespace vnl-{LAB}" in mermaid.stdout


def test_run_writes_junit_beside_the_json_report(tmp_path, lab_name):
    """lab_name brings the lab down afterwards and checks that nothing is left."""
    junit = tmp_path / "junit.xml"
    result = vnetlab("run", "two-vm-ping", "--name", lab_name, "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and len(cases) == 3
    assert {c.get("name") for c in cases} >= {"ping vm1 → vm2", "ping vm2 → vm1"}
    steps = suite.find("system-out").text
    assert "boot" in steps and "teardown" in steps
    run_dir = Path(result.stdout.split("artifacts: ")[1].split()[0])
    assert (run_dir / "junit.xml").read_text() == junit.read_text()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["artifacts"]["junit"] == str(run_dir / "junit.xml") and report["artifacts"]["report"] == str(run_dir / "report.json")
