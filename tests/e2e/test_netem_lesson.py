"""Link impairment on real guests (impaired-link): netem inside the guests, read back; the pings'
round-trip and loss assertions and the perf check's rate bound; `vnetlab netem` live."""

from __future__ import annotations

import pytest
from labtools import leftovers, run_report, vnetlab

from vnetlab.backends.kernel_probe import host_capabilities

pytestmark = pytest.mark.e2e
LAB_PREFIX = "n-"


def test_impaired_link(tmp_path, lab_name):
    result, report = run_report(tmp_path, "impaired-link", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    on_host = {"netem", "ifb", "mirred"} <= host_capabilities()
    said = "netem (vm1 eth0, vm2 eth0) runs " + ("on the host: each tap's ingress" if on_host else "inside the guests: this host's kernel lacks")
    assert said in result.stdout + result.stderr, result.stdout
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values()), [c["detail"] for c in checks.values()]
    delayed = checks["the round trip carries vm1's 40 ms"]["data"]
    assert delayed["rtt_min_ms"] >= 30, delayed  # every echo request waited 40 ms ± 5 ms in vm1's qdisc
    lossy = checks["vm2's echo requests get lost"]["data"]
    assert 0 < lossy["loss_percent"] <= 60, lossy  # 20 % of 50: none lost has a chance of 1 in 70 000
    perf = next(c for c in report["checks"] if c["kind"] == "perf")
    assert 0 < perf["data"]["mbit_s"] <= 25, perf["detail"]
    assert leftovers(lab_name) == []


def test_netem_changes_live_and_reads_back(tmp_path, lab_name):
    up = vnetlab("up", "impaired-link", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        shown = vnetlab("netem", lab_name, "vm1", "eth0")
        assert shown.returncode == 0 and shown.stdout.startswith("qdisc netem ") and "delay 40ms" in shown.stdout, shown.stdout + shown.stderr
        changed = vnetlab("netem", lab_name, "vm1", "eth0", "--delay", "100ms", "--loss", "0%")
        assert changed.returncode == 0 and "delay 100ms" in changed.stdout and "rate" not in changed.stdout, changed.stdout + changed.stderr
        inspected = vnetlab("inspect", lab_name)
        assert "netem on vm1 eth0" in inspected.stdout and "delay 100ms" in inspected.stdout
        assert "vm1 eth0 has no netem qdisc" not in inspected.stdout
        cleared = vnetlab("netem", lab_name, "vm1", "eth0", "--clear")
        assert cleared.returncode == 0 and cleared.stdout == "eth0: no netem qdisc\n", cleared.stdout + cleared.stderr
        bad = vnetlab("netem", lab_name, "vm1", "eth0", "--delay", "soon")
        assert bad.returncode == 2 and "delay: expected a duration like 40ms" in bad.stderr, bad.stderr
        nowhere = vnetlab("netem", lab_name, "vm1", "eth7", "--delay", "1ms")
        assert nowhere.returncode == 1 and "vm1 has no data NIC 'eth7'" in nowhere.stderr, nowhere.stderr
    finally:
        assert vnetlab("down", lab_name).returncode == 0
    assert leftovers(lab_name) == []
