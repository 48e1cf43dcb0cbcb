"""Spanning tree on a loop of three bridges (stp-loop), on real guests: the pings pass, exactly one
port blocks (read from the kernel that runs the bridges), and the broadcasts on br2 stay bounded."""

from __future__ import annotations

import pytest
from labtools import run_failing, run_report

pytestmark = pytest.mark.e2e
LAB_PREFIX = "s-"


def test_stp_loop(tmp_path, lab_name):
    result, report = run_report(tmp_path, "stp-loop", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STP: waiting until no port of br1, br2, br3 is listening or learning" in result.stdout + result.stderr
    checks = report["checks"]
    assert [c["ok"] for c in checks] == [True] * 4, [c["detail"] for c in checks]
    stp = next(c for c in checks if c["kind"] == "stp")
    assert len(stp["data"]["blocking"]) == 1, stp["detail"]
    blocked = stp["data"]["blocking"][0]
    assert blocked.split("/")[1].startswith("vnlbl"), stp["detail"]  # a link between bridges blocks, never a VM's tap
    assert sorted(set(stp["data"]["ports"].values())) == ["blocking", "forwarding"], stp["detail"]
    capture = next(c for c in checks if c["kind"] == "capture")
    assert capture["counts"]["broadcast_frames"] <= 100, capture["detail"]


def test_a_wrong_blocking_count_fails_the_run_with_a_readable_detail(tmp_path, lab_name):
    result, report = run_failing(tmp_path, "stp-loop", "  - stp: {blocking: 0}\n", "stp-wrong", lab_name)
    (stp,) = report["checks"]
    assert not stp["ok"]
    assert stp["detail"].startswith("expected 0 blocking port(s) and every other of the 10 bridge ports forwarding; saw 1 blocking: "), stp["detail"]
    assert "FAIL" in result.stdout
