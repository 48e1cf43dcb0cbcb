"""Users' own labs on real guests: files, shares, exec and command checks (static-routing, web-service),
a failing command check, a hung or failing startup command, and `vnetlab exec` / `check --only`."""

from __future__ import annotations

import json
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import leftovers, run_report, vnetlab

from vnetlab.paths import SCENARIOS_DIR, Layout

pytestmark = pytest.mark.e2e
LAB_PREFIX = "o-"


def test_static_routing(tmp_path, lab_name):
    result, report = run_report(tmp_path, "static-routing", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["the router forwards"]["ok"] and checks["host1 routes lan2 through the router"]["ok"]
    routed = next(c for c in report["checks"] if c["kind"] == "capture")
    assert routed["ok"] and routed["counts"]["routed_requests"] >= 3 and routed["counts"]["routed_requests"] == routed["counts"]["requests"]
    logs = Path(report["artifacts"]["dir"]) / "exec"
    assert "$ sysctl -w net.ipv4.ip_forward=1" in (logs / "router.log").read_text()


def test_web_service(tmp_path, lab_name):
    result, report = run_report(tmp_path, "web-service", lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * 5
    readonly = report["checks"][3]
    assert "Read-only file system" in readonly["data"]["stderr_tail"] and "/mnt/lab 9p rw" in readonly["data"]["stdout_tail"]
    assert not (SCENARIOS_DIR / "web-service" / "written-by-the-guest").exists()  # nothing reached the host folder


@pytest.fixture()
def lab_folder() -> Iterator[Path]:
    """A folder for a scenario and its files that libvirt's qemu user can pass through (its share is
    opened by qemu; pytest's tmp_path is below a 0700 folder of root's)."""
    folder = Path(tempfile.mkdtemp(prefix="vnetlab-own-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def own_lab(folder: Path, name: str, server_exec: str, checks: str) -> Path:
    """web-service copied out of scenarios/ with its folder of files (a scenario reads its own folder
    only: docs/reliability.md, "Trust model"), other exec and checks."""
    text = (SCENARIOS_DIR / "web-service.yaml").read_text().replace("name: web-service", f"name: {name}", 1)
    if not (folder / "web-service").exists():
        shutil.copytree(SCENARIOS_DIR / "web-service", folder / "web-service")
    text = text.replace("      - start-web /www 8080\n", server_exec)
    path = folder / f"{name}.yaml"
    path.write_text(text.split("checks:")[0] + "checks:\n" + checks)
    return path


def test_a_failing_command_check_fails_the_run_with_a_readable_detail_and_junit(tmp_path, lab_folder, lab_name):
    checks = "  - command: {name: wrong page, node: client, run: 'wget -qO- http://{{ server.ip }}:8080/', expect: {stdout: goodbye}, retry: {for: 3}}\n"
    path = own_lab(lab_folder, "own-fail", "      - start-web /www 8080\n", checks)
    junit = tmp_path / "junit.xml"
    result, report = run_report(tmp_path, str(path), lab_name, "--junit", str(junit))
    assert result.returncode == 1
    check = report["checks"][0]
    assert not check["ok"] and check["name"] == "wrong page"
    assert "expected exit 0 and stdout matching 'goodbye'; got exit 0 after" in check["detail"] and "hello from server" in check["detail"]
    failure = ET.parse(junit).find(".//testcase[@name='wrong page']/failure")
    assert failure is not None and "goodbye" in failure.get("message", "")


def test_a_failing_or_hung_startup_command_stops_the_run_and_leaves_nothing(lab_folder, lab_name):
    path = own_lab(lab_folder, "own-hang", "      - {run: 'sleep 30', timeout: 2}\n", "  - ping: {from: client, to: server}\n")
    result = vnetlab("run", str(path), "--name", lab_name)
    assert result.returncode == 1
    assert "did not finish within 2s" in result.stdout + result.stderr and "sleep 30" in result.stdout + result.stderr
    assert leftovers(lab_name) == []
    path = own_lab(lab_folder, "own-fails", "      - 'echo broken >&2; exit 7'\n", "  - ping: {from: client, to: server}\n")
    result = vnetlab("run", str(path), "--name", lab_name)
    assert result.returncode == 1
    assert "server: exec `echo broken >&2; exit 7` exited 7; last output: broken" in result.stdout + result.stderr
    assert leftovers(lab_name) == []


def test_exec_on_every_node_kind_and_check_only(tmp_path, lab_name):
    up = vnetlab("up", "web-service", "--name", lab_name)
    assert up.returncode == 0, up.stdout + up.stderr
    vm = vnetlab("exec", lab_name, "client", "--", "wget -qO- http://10.1.1.2:8080/")
    assert vm.returncode == 0 and "hello from server" in vm.stdout
    container = vnetlab("exec", lab_name, "c1", "--", "ip -o addr show eth0; exit 4")
    assert container.returncode == 4 and "10.1.1.9/24" in container.stdout
    unknown = vnetlab("exec", lab_name, "nobody", "--", "true")
    assert unknown.returncode == 1 and "has no node 'nobody' (nodes: server, client, c1)" in unknown.stderr
    report = tmp_path / "only.json"
    only = vnetlab("check", lab_name, "--only", "the page is served to a container", "--report", str(report))
    assert only.returncode == 0, only.stdout + only.stderr
    assert [c["name"] for c in json.loads(report.read_text())["checks"]] == ["the page is served to a container"]
    missing = vnetlab("check", lab_name, "--only", "no such check")
    assert missing.returncode == 1 and "no check named 'no such check'" in missing.stderr
    assert (Layout().lab_dir(lab_name) / "state.json").exists()


def test_the_ci_example_tests_its_program_with_junit(tmp_path, lab_name):
    example = Path(__file__).resolve().parents[2] / "examples" / "ci-own-software" / "lab.yaml"
    junit = tmp_path / "junit.xml"
    result, report = run_report(tmp_path, str(example), lab_name, "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    cases = ET.parse(junit).findall(".//testcase")
    assert [c.get("name") for c in cases] == ["upper-service answers in upper case", "upper-service keeps serving", "nothing else listens on the server"]
    assert all(c.find("failure") is None for c in cases)
