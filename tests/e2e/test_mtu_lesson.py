"""MTU per bridge and NIC, and path-MTU checks, on real guests (mtu-pmtu): every check passes, the
must-fail ones fail for the reason the lesson says; a wrong expectation fails the run readably."""

from __future__ import annotations

import pytest
from labtools import run_failing, run_report

pytestmark = pytest.mark.e2e
LAB_PREFIX = "m-"


def test_mtu_pmtu(tmp_path, lab_name):
    result, report = run_report(tmp_path, "mtu-pmtu", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MTU: jumbo 9000 (and its ports), small 1400 (and its ports)" in result.stdout + result.stderr
    checks = report["checks"]
    assert [c["ok"] for c in checks] == [True] * 8, [c["detail"] for c in checks]
    assert checks[1]["data"]["stdout_tail"].strip() == "9000"  # jumbo1's NIC took its bridge's MTU
    pmtu = [c for c in checks if c["kind"] == "pmtu"]
    by_size = [(c["data"]["target"], c["data"]["packet"], c["data"]["received"]) for c in pmtu]
    assert by_size == [
        ("10.9.0.1", 9000, 3), ("10.9.0.1", 9001, 0),  # the jumbo bridge: exactly its MTU crosses
        ("10.14.0.1", 1400, 3), ("10.14.0.1", 1401, 0),  # the small bridge
        ("10.14.0.10", 1400, 3), ("10.14.0.10", 1401, 0),  # across the router: the smaller MTU
    ]
    # The must-fail ones failed for the lesson's reason, not for want of a route:
    assert pmtu[1]["data"]["sender_mtu"] == 9000 and "router_mtu" not in pmtu[1]["data"]
    assert pmtu[3]["data"]["sender_mtu"] == 1400
    assert pmtu[5]["data"]["router_mtu"] == 1400, pmtu[5]["detail"]  # the router answered "fragmentation needed"
    assert "a router answered fragmentation needed (mtu 1400)" in pmtu[5]["detail"]


def test_a_wrong_pmtu_expectation_fails_the_run_with_a_readable_detail(tmp_path, lab_name):
    checks = (
        "  - pmtu: {from: small1, to: router, size: 1373}\n"  # wrong: one byte above the bridge's MTU
        "  - pmtu: {from: jumbo1, to: router, size: 8972, expect: failure}\n"  # wrong: exactly the MTU crosses
    )
    result, report = run_failing(tmp_path, "mtu-pmtu", checks, "mtu-wrong", lab_name)
    too_big, fits = report["checks"]
    assert not too_big["ok"] and not fits["ok"]
    assert too_big["detail"] == (
        "expected 3/3 echo replies from 10.14.0.1 to 1401-byte packets (1373 bytes of payload) with don't-fragment, "
        "got 0/3; the sender refused to send it (mtu 1400)"
    )
    assert fits["name"] == "pmtu jumbo1 → router: 9000-byte packets, don't fragment (must fail)"
    assert fits["detail"] == "expected no echo reply from 10.9.0.1 to 9000-byte packets (8972 bytes of payload) with don't-fragment, got 3/3"
    assert "FAIL" in result.stdout
