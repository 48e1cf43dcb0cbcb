"""JUnit XML from a run report: one testcase per check, failures say expected and seen."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from vnetlab.tools.junit import junit_xml

REPORT = {
    "scenario": "two-vm-ping",
    "lab": "t5-demo",
    "ok": False,
    "accel": "tcg",
    "accel_detail": {"domain_type": "qemu", "reason": "no KVM"},
    "error": None,
    "kept": False,
    "steps": [{"name": "boot", "seconds": 1.25, "ok": True}, {"name": "checks", "seconds": 2.0, "ok": True}],
    "checks": [
        {"name": "ping vm1 → vm2", "kind": "ping", "ok": True, "detail": "expected 3/3 echo replies from 10.1.1.3, got 3/3", "data": {"sent": 3, "received": 3}},
        {"name": "ping vm1 → 10.1.1.99", "kind": "ping", "ok": False, "detail": "expected 2/2 echo replies from 10.1.1.99, got 0/2", "data": {"sent": 2, "received": 0}},
        {"name": "capture on br0", "kind": "capture", "ok": False, "detail": "expected ≥1 ARP request; saw 0", "counts": {"arp_request": 0}},
    ],
    "artifacts": {"dir": "/var/lib/vnetlab/runs/t5-demo-1"},
}


def parse(report: dict) -> ET.Element:
    return ET.fromstring(junit_xml(report).encode())


def test_one_testcase_per_check_with_counts():
    root = parse(REPORT)
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "2" and root.get("errors") == "0"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "two-vm-ping (lab t5-demo)" and suite.get("time") == "3.250"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["ping vm1 → vm2", "ping vm1 → 10.1.1.99", "capture on br0"]
    assert [c.get("classname") for c in cases] == ["vnetlab.two-vm-ping.ping", "vnetlab.two-vm-ping.ping", "vnetlab.two-vm-ping.capture"]
    assert cases[0].find("failure") is None and "got 3/3" in cases[0].find("system-out").text


def test_failures_carry_expected_and_seen():
    cases = parse(REPORT).find("testsuite").findall("testcase")
    failure = cases[1].find("failure")
    assert failure.get("message") == "expected 2/2 echo replies from 10.1.1.99, got 0/2"
    assert '"received": 0' in failure.text
    assert 'counts: {"arp_request": 0}' in cases[2].find("failure").text


def test_system_out_has_step_timings_and_artifacts():
    out = parse(REPORT).find("testsuite").find("system-out").text
    assert "✓ boot            1.250 s" in out and "checks" in out
    assert "accelerator: tcg (no KVM)" in out and "artifacts: /var/lib/vnetlab/runs/t5-demo-1" in out


def test_a_lab_that_failed_to_come_up_is_an_error_testcase():
    root = parse({**REPORT, "checks": [], "error": "vm1: no readiness marker\nlast lines…"})
    assert root.get("tests") == "1" and root.get("errors") == "1"
    error = root.find("testsuite/testcase/error")
    assert error.get("message") == "vm1: no readiness marker" and "last lines…" in error.text
