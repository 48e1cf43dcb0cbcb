"""JUnit XML for CI: one testcase per check, written from the same data as the JSON report.

CI systems (GitHub Actions reporters, GitLab, Jenkins) show JUnit natively: a failing check
appears as a failed test whose message says what was expected and what was seen. Every string
goes through vnetlab.printable first, whatever report it is given: XML 1.0 has no way to carry
most C0 characters (not even as references), and details quote what guests printed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from vnetlab.printable import printable_data


def _steps_text(report: dict) -> str:
    lines = [f"{'✓' if s['ok'] else '✗'} {s['name']:<12} {s['seconds']:8.3f} s" for s in report.get("steps", [])]
    accel = report.get("accel_detail") or {}
    lines.append(f"accelerator: {report.get('accel')} ({accel.get('reason', 'n/a')})")
    if report.get("artifacts", {}).get("dir"):
        lines.append(f"artifacts: {report['artifacts']['dir']}")
    return "\n".join(lines) + "\n"


def junit_xml(report: dict) -> str:
    """A <testsuites> document for one run report (see vnetlab.tools.report.report_json)."""
    report = printable_data(report)  # type: ignore[assignment]
    checks = report.get("checks", [])
    failures = sum(not c["ok"] for c in checks)
    errors = 1 if report.get("error") else 0
    total_seconds = sum(s["seconds"] for s in report.get("steps", []))
    check_seconds = sum(s["seconds"] for s in report.get("steps", []) if s["name"] == "checks")
    suites = ET.Element("testsuites", name="vnetlab", tests=str(len(checks) + errors), failures=str(failures), errors=str(errors), time=f"{total_seconds:.3f}")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"{report['scenario']} (lab {report['lab']})",
        tests=str(len(checks) + errors),
        failures=str(failures),
        errors=str(errors),
        time=f"{total_seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("scenario", "lab", "accel"):
        ET.SubElement(props, "property", name=key, value=str(report.get(key)))
    classname = f"vnetlab.{report['scenario']}"
    per_check = check_seconds / len(checks) if checks else 0.0  # checks run as one phase (captures span all of them)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{classname}.{check['kind']}", name=check["name"], time=f"{per_check:.3f}")
        body = [check["detail"]]
        if check.get("counts"):
            body.append("counts: " + json.dumps(check["counts"], sort_keys=True))
        if check.get("data"):
            body.append("data: " + json.dumps(check["data"], sort_keys=True, ensure_ascii=False))
        if check["ok"]:
            ET.SubElement(case, "system-out").text = "\n".join(body) + "\n"
        else:
            failure = ET.SubElement(case, "failure", message=check["detail"], type=f"{check['kind']}-check")
            failure.text = "\n".join(body) + "\n"
    if errors:  # the lab could not be brought up or checked: one errored testcase says why
        case = ET.SubElement(suite, "testcase", classname=classname, name="lab lifecycle", time=f"{total_seconds:.3f}")
        ET.SubElement(case, "error", message=str(report["error"]).splitlines()[0] if report["error"] else "", type="lab-error").text = str(report["error"]) + "\n"
    ET.SubElement(suite, "system-out").text = _steps_text(report)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(report), encoding="utf-8")
