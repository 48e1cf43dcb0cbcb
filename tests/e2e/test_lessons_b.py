"""The tutorial's bridge lessons on real guests and namespaces, through the real CLI:
VMs bridged to a LAN (vm-bridge-uplink), containers behind NAT (container-bridge-nat),
and the VM-vs-container comparison (vm-vs-container-perf). Each run must pass, report
its checks with counts or figures, and leave nothing behind (node namespaces included)."""

from __future__ import annotations

import pytest
from labtools import leftovers, run_report

pytestmark = pytest.mark.e2e
LAB_PREFIX = "s2-"


def run(scenario: str, lab: str, tmp_path) -> tuple[dict, str]:
    result, report = run_report(tmp_path, scenario, lab)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and report["scenario"] == scenario and report["lab"] == lab
    assert all(c["ok"] for c in report["checks"])
    assert leftovers(lab) == []
    return report, result.stdout


def test_vm_bridge_uplink(tmp_path, lab_name):
    report, out = run("vm-bridge-uplink", lab_name, tmp_path)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ping vm1 → lan1"]["data"]["received"] == 3 and checks["ping lan1 → vm1"]["data"]["received"] == 3
    [own, other] = [c for c in report["checks"] if c["kind"] == "capture"]
    assert own["counts"]["bridged_own_mac"] == own["counts"]["bridged_from_a"] >= 6  # vm1's own MAC and IP on the uplink
    assert own["counts"]["arp_request"] >= 1 and own["counts"]["icmp_echo_pairs"] >= 6
    assert other["counts"]["bridged_own_mac"] >= 3
    [unaddressed] = [c for c in report["checks"] if c["kind"] == "unaddressed"]
    assert unaddressed["data"]["addresses"] == []
    assert set(report["artifacts"]["pcap"]) == {"eth0"}
    assert "PASS" in out and len(report["checks"]) == 6


def test_container_bridge_nat(tmp_path, lab_name):
    report, out = run("container-bridge-nat", lab_name, tmp_path)
    checks = {c["name"]: c for c in report["checks"]}
    ping = checks["ping c1 → inet1"]["data"]
    assert (ping["target"], ping["sent"], ping["received"], ping["loss_percent"]) == ("203.0.113.2", 3, 3, 0.0)
    assert checks["ping vm1 → c1"]["data"]["received"] == 3 and checks["ping vm1 → c2"]["data"]["received"] == 3
    masq = checks["capture on eth0: masqueraded between c1 and inet1"]["counts"]
    assert masq["translated"] >= 6 and masq["private"] == 0
    private = checks["capture on br0: icmp-echo between c1 and inet1"]["counts"]
    assert private["icmp_echo_pairs"] >= 3  # 10.2.0.2 ↔ 203.0.113.2 on the bridge, before translation
    assert set(report["artifacts"]["pcap"]) == {"eth0", "br0"}
    assert "PASS" in out


def test_vm_vs_container_perf(tmp_path, lab_name):
    report, out = run("vm-vs-container-perf", lab_name, tmp_path)
    perf = {c["data"]["path"]: c["data"] for c in report["checks"] if c["kind"] == "perf"}
    assert set(perf) == {"vm1 → lan1", "c1 → inet1", "vm1 → vm2", "c1 → c2"}
    for row in perf.values():
        assert row["bytes"] > 0 and row["mbit_s"] > 0 and row["pings_received"] >= 1 and row["rtt_avg_ms"] is not None
    assert perf["c1 → inet1"]["via"] == "NAT out of wan0 (ip_forward)" and perf["vm1 → lan1"]["via"] == "bridge br0"
    emulated = report["accel"] == "tcg"
    assert perf["vm1 → vm2"]["emulated"] is emulated and perf["c1 → c2"]["emulated"] is False
    assert "Throughput and latency" in out
    if emulated:  # said in the table (wrapped to the terminal width) and in each VM row's detail
        assert "the VM figures are emulation-bound" in " ".join(out.split())
        assert "measures the CPU emulator" in next(c["detail"] for c in report["checks"] if c["name"] == "perf vm1 → vm2")
