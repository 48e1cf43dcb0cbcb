"""Spanning tree on a loop of three bridges (stp-loop), on real guests: the pings pass, exactly one
port blocks (read from the kernel that runs the bridges), and the broadcasts on br2 stay bounded;
then the link the pings take is pulled, the blocked port takes over within the lesson's bound, and
the end of the checks plugs it back (a second check run finds the tree as it was)."""

from __future__ import annotations

from pathlib import Path

import pytest
from labtools import run_failing, run_report, vnetlab

pytestmark = pytest.mark.e2e
LAB_PREFIX = "s-"


def test_stp_loop(tmp_path, lab_name):
    result, report = run_report(tmp_path, "stp-loop", lab_name, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STP: waiting until no port of br1, br2, br3 is listening or learning" in result.stdout + result.stderr
    assert "6/6 checks passed, 3 actions done" in result.stdout
    checks = report["checks"]
    assert [c["ok"] for c in checks] == [True] * 9, [c["detail"] for c in checks]
    stp = next(c for c in checks if c["kind"] == "stp")
    assert stp["data"]["blocking"] == ["br3/vnlbl1b"], stp["detail"]  # the priorities: br1 the root, br3's end of br2↔br3 blocks
    assert sorted(set(stp["data"]["ports"].values())) == ["blocking", "forwarding"], stp["detail"]
    capture = next(c for c in checks if c["kind"] == "capture")
    assert capture["counts"]["broadcast_frames"] <= 100, capture["detail"]
    # second half: br3↔br1 pulled while the ping ran; br3's blocked port took over within the bound
    recovery = checks[4]
    assert 3.0 <= recovery["data"]["recovery_s"] <= 6.0, recovery["detail"]  # 2 × forward delay: listening, then learning
    pull = checks[6]
    assert pull["action"] and pull["data"]["link"] == "br3↔br1" and pull["data"]["after"] == "down", pull["detail"]
    assert pull["data"]["undone"].startswith("up again"), pull["detail"]
    after = checks[8]
    assert sorted(p for p, state in after["data"]["ports"].items() if state == "disabled") == ["br1/vnlbl2b", "br3/vnlbl2a"], after["detail"]
    junit = Path(report["artifacts"]["junit"]).read_text()
    assert 'classname="vnetlab.stp-loop.action" name="link br3↔br1 down"' in junit
    # the end of the checks put the link back and waited for the tree: the lab checks again as new
    again = vnetlab("check", lab_name)
    assert again.returncode == 0 and "6/6 checks passed, 3 actions done" in again.stdout, again.stdout + again.stderr
    assert vnetlab("link", lab_name, "br3,br1").stdout.startswith("br3,br1: up (the bridge link's veth")


def test_a_wrong_blocking_count_fails_the_run_with_a_readable_detail(tmp_path, lab_name):
    result, report = run_failing(tmp_path, "stp-loop", "  - stp: {blocking: 0}\n", "stp-wrong", lab_name)
    (stp,) = report["checks"]
    assert not stp["ok"]
    assert stp["detail"].startswith("expected 0 blocking port(s) and every other of the 10 bridge ports forwarding; saw 1 blocking: "), stp["detail"]
    assert "FAIL" in result.stdout
