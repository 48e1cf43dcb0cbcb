"""Output that programs read is byte-exact through a pipe; human output on a pipe is not wrapped.

Before: `vnetlab plan` on a pipe folded long lines at 80 columns and turned `:cd:` inside a MAC
into an emoji (rich's emoji codes), so neither the YAML nor the domain XML loaded back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vnetlab.checks.base import CheckResult
from vnetlab.paths import scenario_files
from vnetlab.run.lab import Outcome
from vnetlab.tools.report import print_summary, report_json
from vnetlab.cli import make_console
from vnetlab.compose import registry

MAC = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
NAMES = ["lab", "a-very-long-lab-name-24c", "x"]


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real command with stdout a pipe, as in `vnetlab plan … > file`."""
    return subprocess.run([sys.executable, "-m", "vnetlab", *argv], capture_output=True, text=True, timeout=120, check=False)


def macs_in(data: object) -> list[str]:
    if isinstance(data, dict):
        return [m for k, v in data.items() for m in ([v] if k in ("mac", "veth_mac") else macs_in(v))]
    if isinstance(data, list):
        return [m for v in data for m in macs_in(v)]
    return []


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_plan_on_a_pipe_is_yaml_with_intact_macs_and_domain_xml(path: Path, tmp_path: Path):
    for name in NAMES:
        result = cli("plan", str(path), "--name", name, "--xml")
        assert result.returncode == 0, result.stderr
        docs = list(yaml.safe_load_all(result.stdout))
        plan, domains = docs[0], docs[1:]
        macs = macs_in(plan)
        assert macs and all(MAC.match(m) for m in macs), [m for m in macs if not MAC.match(m)]
        assert [d["domain"] for d in domains] == [vm["domain"] for vm in plan["vms"]]
        for vm, doc in zip(plan["vms"], domains):
            assert f"<cmdline>{vm['cmdline']}</cmdline>" in doc["xml"]  # never folded
            for nic in vm["nics"]:
                assert f"<mac address='{nic['mac']}'/>" in doc["xml"]


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None, reason="needs libvirt-clients and libxml2-utils (scripts/setup-host installs both)")
@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_every_domain_xml_validates_against_libvirts_schema(path: Path, accel: str, tmp_path: Path):
    result = cli("plan", str(path), "--accel", accel, "--xml-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*.xml"))
    assert files
    for file in files:
        check = subprocess.run(["virt-xml-validate", str(file), "domain"], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"{file.name}: {check.stdout}{check.stderr}"
    docs = list(yaml.safe_load_all(cli("plan", str(path), "--accel", accel, "--xml").stdout))
    assert {d["domain"]: d["xml"] for d in docs[1:]} == {f.stem: f.read_text() for f in files}


def test_wireguard_vpn_has_the_mac_that_used_to_turn_into_an_emoji():
    """52:54:00:cd:6a:eb (vm1's management MAC in lab wireguard-vpn): `:cd:` is a rich emoji code."""
    out = cli("plan", "wireguard-vpn").stdout
    assert "52:54:00:cd:6a:eb" in out


def test_explain_schema_and_graph_on_a_pipe_are_the_exact_text():
    from vnetlab.model.schema import schema_text
    from vnetlab.plan.planner import make_plan
    from vnetlab.compose import load_scenario
    from vnetlab.tools.explain import explain
    from vnetlab.tools.graph import to_dot, topology

    scenario = load_scenario(scenario_files()[0].parent / "wireguard-vpn.yaml")
    plan = make_plan(scenario, "wireguard-vpn")
    assert cli("plan", "wireguard-vpn", "--explain").stdout == explain(plan)
    assert cli("schema").stdout == schema_text(registry())
    assert json.loads(cli("schema").stdout)["title"] == "vnetlab scenario"
    assert cli("graph", "wireguard-vpn", "--format", "dot").stdout == to_dot(topology(plan))


def test_a_detail_with_emoji_codes_and_markup_survives_to_terminal_and_report(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # a width the environment sets is the reader's choice (make_console)
    detail = "expected :cd: and [red]red[/] and [/] and [bold]x — got 52:54:00:cd:6a:eb " + "long " * 40
    outcome = Outcome("s", "lab", checks=[CheckResult("ping [red]x[/] :ab:", "ping", False, detail)])
    console = make_console()
    print_summary(console, outcome, [], registry())
    shown = capsys.readouterr().out
    assert "[red]red[/]" in shown and ":cd:" in shown and "52:54:00:cd:6a:eb" in shown and "ping [red]x[/] :ab:" in shown
    assert detail.strip() in shown.replace("\n", "")  # on a pipe, no hard wrapping inside the detail
    assert report_json(outcome, [])["checks"][0]["detail"] == detail
