"""VLANs on an Open vSwitch bridge (vlan-trunk), on real guests: access ports of VLAN 10 and 20,
a trunk with eth0.10 and eth0.20; same-VLAN pings pass, VLAN 10 cannot reach VLAN 20, and br0's
mirror port shows the frames of each pair tagged with their VLAN."""

from __future__ import annotations

import pytest
from labtools import run_report, scenario_with_checks

pytestmark = pytest.mark.e2e
LAB_PREFIX = "v-"


def test_vlan_trunk(tmp_path, lab_name):
    result, report = run_report(tmp_path, "vlan-trunk", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VLANs: vm1 eth0 vlan 10, vm2 eth0 vlan 20, vm3 eth0 trunk 10,20" in result.stdout + result.stderr
    checks = report["checks"]
    assert [c["ok"] for c in checks] == [True] * 6, [c["detail"] for c in checks]
    pings = [c for c in checks if c["kind"] == "ping"]
    assert "10.0.10.5" in pings[0]["detail"] and "10.0.20.5" in pings[1]["detail"], [p["detail"] for p in pings]  # the trunk's sub-interfaces
    tagged = [c for c in checks if c["kind"] == "capture"]
    assert "tagged VLAN 10" in tagged[0]["detail"] and "VLAN 20" not in tagged[0]["detail"].split("saw")[1], tagged[0]["detail"]
    assert "tagged VLAN 20" in tagged[1]["detail"], tagged[1]["detail"]
    assert all(c["counts"]["vlan_untagged"] == 0 and c["counts"]["vlan_frames"] > 0 for c in tagged)


def test_a_ping_across_vlans_fails_the_run(tmp_path, lab_name):
    path = scenario_with_checks(tmp_path, "vlan-trunk", "  - ping: {from: vm2, to: 10.0.10.2}\n", name="vlan-across")
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 1, result.stdout + result.stderr
    (ping,) = report["checks"]
    assert not ping["ok"], ping["detail"]
    assert "FAIL" in result.stdout
