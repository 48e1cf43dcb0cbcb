"""A VXLAN overlay on real guests (vxlan-overlay): vm1 on bra and vm2 on brb ping each other through
VNI 10; the underlay capture decodes UDP 4789 with the VNI and the pings inside, the capture on bra
shows them as plain frames; inspect reads both VXLAN devices back; nothing is left afterwards."""

from __future__ import annotations

import json

import pytest
from labtools import leftovers, run_failing, run_report, vnetlab

pytestmark = pytest.mark.e2e
LAB_PREFIX = "x-"


def test_vxlan_overlay(tmp_path, lab_name):
    result, report = run_report(tmp_path, "vxlan-overlay", lab_name, "--keep")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        checks = report["checks"]
        assert [c["ok"] for c in checks] == [True] * 4, [c["detail"] for c in checks]
        underlay, bridge = (c for c in checks if c["kind"] == "capture")
        assert underlay["counts"]["vxlan_vni_datagrams"] >= 12 and underlay["counts"]["inner_icmp_echo_pairs"] >= 6, underlay["detail"]
        assert bridge["counts"]["vxlan_datagrams_on_bridge"] == 0 and bridge["counts"]["plain_icmp_echo_pairs"] >= 6, bridge["detail"]
        inspected = vnetlab("inspect", lab_name, "--format", "json")
        assert inspected.returncode == 0, inspected.stdout + inspected.stderr
        rows = {r["what"]: r for r in json.loads(inspected.stdout)["others"] if r["what"].startswith("VXLAN")}
        assert rows["VXLAN vx10-b"]["state"] == "VNI 10, local 192.168.100.2, remote 192.168.100.1, port 4789, master brb, MTU 1500, up", rows
        assert rows["VXLAN vx10 underlay vx10-u"]["state"] == "192.168.100.1/24, MTU 1550, up", rows
        assert not any(r["problems"] for r in rows.values()), rows
    finally:
        down = vnetlab("down", lab_name)
        assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(lab_name) == []


def test_no_pings_through_the_tunnel_fail_the_vxlan_capture_readably(tmp_path, lab_name):
    result, report = run_failing(tmp_path, "vxlan-overlay", "  - capture: {interface: vx10-u, between: [vm1, vm2], expect: [vxlan]}\n", "vxlan-silent", lab_name)
    (capture,) = report["checks"]
    assert not capture["ok"]
    assert capture["detail"].startswith("expected UDP 4789 datagrams between 192.168.100.1 and 192.168.100.2 with VNI 10, carrying ≥1 ICMP echo"), capture["detail"]
    assert capture["counts"]["inner_icmp_echo_pairs"] == 0, capture["detail"]
    assert leftovers(lab_name) == []
