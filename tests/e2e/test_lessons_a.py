"""Tutorial lessons on real guests through the real CLI: WireGuard, Open vSwitch, device operations.

Each test asserts on the JSON report (every check passed, with the counts the lesson claims),
then that nothing is left behind — including the lab's own OVS daemons.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from labtools import leftovers, ovs_daemons_of, run_report, scenario_with_checks, start_run_until_booting, vnetlab

from vnetlab.paths import Layout

pytestmark = pytest.mark.e2e
LAB_PREFIX = "s1-"


def test_wireguard_vpn(tmp_path, lab_name):
    result, report = run_report(tmp_path, "wireguard-vpn", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and "wireguard" in [s["name"] for s in report["steps"]]
    ping1, ping2, handshake, capture = report["checks"]
    assert ping1["name"] == "ping vm1 → vm2 via wg0" and ping1["data"]["target"] == "192.168.2.2" and ping1["data"]["received"] == 3
    assert ping2["data"]["target"] == "192.168.2.1" and ping2["data"]["received"] == 3
    assert handshake["kind"] == "wireguard" and handshake["ok"]
    assert handshake["data"]["vm1"]["latest_handshake"] > 0 and handshake["data"]["vm2"]["latest_handshake"] > 0
    assert capture["counts"]["wireguard_udp"] >= 12 and capture["counts"]["plaintext_tunnel_icmp"] == 0
    assert "4/4 checks passed" in result.stdout
    assert leftovers(lab_name) == []


def test_wireguard_udp_judge_fails_without_tunnel_traffic(tmp_path, lab_name):
    """The tunnel is up but only the underlay is pinged: the capture must not find WireGuard datagrams."""
    path = scenario_with_checks(
        tmp_path,
        "wireguard-vpn",
        "  - ping: {from: vm1, to: vm2, count: 2}\n"
        "  - capture: {bridge: br0, between: [vm1, vm2], expect: [wireguard-udp, no-plaintext-tunnel]}\n",
    )
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 1, result.stdout + result.stderr
    ping, capture = report["checks"]
    assert ping["ok"] and ping["data"]["target"] == "10.1.1.3" and not capture["ok"]
    assert "expected ≥1 UDP datagram(s) on port 51820 between 10.1.1.2 and 10.1.1.3 (wg0)" in capture["detail"]
    assert capture["counts"] == {"wireguard_udp": 0, "plaintext_tunnel_icmp": 0}
    assert leftovers(lab_name) == []


def test_ovs_two_vm_ping_with_explain(tmp_path, lab_name):
    result, report = run_report(tmp_path, "ovs-two-vm-ping", lab_name, "--explain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"# vnetlab --explain: lab {lab_name} (scenario ovs-two-vm-ping)")
    assert result.stdout.index("## 1. Lab namespace") < result.stdout.index("3/3 checks passed")
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ping vm1 → vm2"]["ok"] and checks["ping vm2 → vm1"]["ok"]
    [capture] = [c for c in report["checks"] if c["kind"] == "capture"]
    counts = capture["counts"]
    assert counts["arp_request"] >= 1 and counts["arp_reply"] >= 1
    assert counts["icmp_echo_request"] >= 6 and counts["icmp_echo_reply"] >= 6 and counts["icmp_echo_pairs"] >= 6
    assert Path(report["artifacts"]["pcap"]["br0"]).stat().st_size > 0
    assert leftovers(lab_name) == []


def test_ovs_daemons_outlive_up_and_are_stopped_by_down(lab_name):
    up = vnetlab("up", "ovs-two-vm-ping", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    daemons = ovs_daemons_of(lab_name)
    assert len(daemons) == 2, daemons
    state = json.loads((Layout().lab_dir(lab_name) / "state.json").read_text())
    recorded = {int(r["name"].rsplit(":", 1)[1]) for r in state["resources"] if r["kind"] == "process"}
    assert recorded == set(daemons)
    check = vnetlab("check", lab_name)
    assert check.returncode == 0, check.stdout + check.stderr
    down = vnetlab("down", lab_name)
    assert down.returncode == 0 and "removed" in down.stdout, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_ovs_lab_killed_hard_is_cleaned_up_from_its_record(lab_name):
    proc = start_run_until_booting("ovs-two-vm-ping", lab_name)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert len(ovs_daemons_of(lab_name)) == 2  # orphaned, still running: only the record knows them
    down = vnetlab("down", lab_name)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_bridge_device_ops(tmp_path, lab_name):
    result, report = run_report(tmp_path, "bridge-device-ops", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "op: list links, ports of br0",
        "ping vm1 → vm2",
        "op: detach vm2's tap from br0",
        "ping vm1 → vm2 (must fail)",
        "op: attach vm2's tap to br0",
        "ping vm1 → vm2",
        "op: add 10.1.1.1/24 to br0",
        "ping vm1 → 10.1.1.1",
        "op: delete 10.1.1.1/24 from br0",
        "ping vm1 → 10.1.1.1 (must fail)",
        "op: delete vm2's tap on br0",
        "ping vm1 → vm2 (must fail)",
        "op: delete bridge br0 (brctl delbr's ioctl) (must be refused)",
        "op: set br0 down",
        "op: delete bridge br0 (brctl delbr's ioctl)",
    ]
    checks = report["checks"]
    listing = checks[0]
    ports = sorted(link["name"] for link in listing["data"]["links"] if link["master"] == "br0")
    assert len(ports) == 2 and "(vm1 eth0) tap up master br0" in listing["detail"]
    assert [c["data"]["received"] for c in checks if c["kind"] == "ping"] == [2, 0, 2, 2, 0, 0]
    refused = checks[12]
    assert "Device or resource busy" in refused["data"]["error"] and "br0 still exists, up" in refused["detail"]
    assert "error" not in checks[14]["data"] and not any(link["name"] == "br0" for link in checks[14]["data"]["links"])
    assert "15/15 checks passed" in result.stdout
    assert leftovers(lab_name) == []
