"""VLANs on real guests: vlan-trunk (a Linux bridge: on this host's kernel, without VLAN filtering,
it runs in a switch guest) and vlan-trunk-ovs (Open vSwitch). Access ports of VLAN 10 and 20, a
trunk with eth0.10 and eth0.20; same-VLAN pings pass, VLAN 10 cannot reach VLAN 20; the trunk's
link carries tags, the access links none; OVS's mirror port shows each pair tagged with its VLAN;
inspect reads the switch guest's bridge back; nothing is left afterwards."""

from __future__ import annotations

import json

import pytest
from labtools import leftovers, run_failing, run_report, vnetlab

from vnetlab.backends.kernel_probe import host_capabilities

pytestmark = pytest.mark.e2e
LAB_PREFIX = "v-"


def _links_judged(checks: list[dict]) -> None:
    captures = [c for c in checks if c["kind"] == "capture"]
    trunk = [c for c in captures if "link vm3.eth0" in c["detail"]]
    access = [c for c in captures if "link vm1.eth0" in c["detail"] or "link vm2.eth0" in c["detail"]]
    assert trunk
    for c in trunk:
        mine, other = ("10", "20") if "between vm1 and vm3" in c["detail"] else ("20", "10")
        seen = c["detail"].split("saw")[1]
        assert f"tagged VLAN {mine}" in seen and f"VLAN {other}" not in seen, c["detail"]
    assert all(c["counts"]["vlan_untagged"] == 0 and c["counts"]["vlan_frames"] > 0 for c in trunk)
    assert access and all(c["counts"]["vlan_untagged"] == c["counts"]["vlan_frames"] > 0 for c in access), [c["detail"] for c in access]


def test_vlan_trunk_on_a_linux_bridge(tmp_path, lab_name):
    in_guest = "vlan_filtering" not in host_capabilities()
    result, report = run_report(tmp_path, "vlan-trunk", lab_name, "--keep")
    try:
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert ("bridge br0 runs in switch guest sw-br0: this host's kernel lacks bridge VLAN filtering" in out) == in_guest, out
        checks = report["checks"]
        assert [c["ok"] for c in checks] == [True] * 8, [c["detail"] for c in checks]
        pings = [c for c in checks if c["kind"] == "ping"]
        assert "10.0.10.5" in pings[0]["detail"] and "10.0.20.5" in pings[1]["detail"], [p["detail"] for p in pings]  # the trunk's sub-interfaces
        _links_judged(checks)
        inspected = vnetlab("inspect", lab_name, "--format", "json")
        assert inspected.returncode == 0, inspected.stdout + inspected.stderr
        rows = {r["what"]: r for r in json.loads(inspected.stdout)["others"] if "VLAN" in r["what"] or "switch guest" in r["what"]}
        assert not any(r["problems"] for r in rows.values()), rows
        if in_guest:
            assert rows["bridge br0 in switch guest sw-br0"]["state"] == "ports p1, p2, p3, vlan_filtering 1", rows
            assert rows["VLANs of sw-br0 p1 (vm1 eth0)"]["state"] == "10 PVID Egress Untagged", rows
            assert rows["VLANs of sw-br0 p3 (vm3 eth0)"]["state"] == "10; 20", rows
    finally:
        down = vnetlab("down", lab_name)
        assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_vlan_trunk_on_open_vswitch(tmp_path, lab_name):
    result, report = run_report(tmp_path, "vlan-trunk-ovs", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VLANs: vm1 eth0 vlan 10, vm2 eth0 vlan 20, vm3 eth0 trunk 10,20" in result.stdout + result.stderr
    checks = report["checks"]
    assert [c["ok"] for c in checks] == [True] * 8, [c["detail"] for c in checks]
    mirror = [c for c in checks if c["kind"] == "capture" and "mirror port" in c["detail"]]
    assert "tagged VLAN 10" in mirror[0]["detail"] and "tagged VLAN 20" in mirror[1]["detail"], [c["detail"] for c in mirror]
    _links_judged(checks)
    assert leftovers(lab_name) == []


def test_a_ping_across_vlans_fails_the_run(tmp_path, lab_name):
    result, report = run_failing(tmp_path, "vlan-trunk", "  - ping: {from: vm2, to: 10.0.10.2}\n", "vlan-across", lab_name)
    (ping,) = report["checks"]
    assert not ping["ok"], ping["detail"]
    assert "FAIL" in result.stdout
    assert leftovers(lab_name) == []
