"""The CLI's behaviour that needs neither root nor VMs: help, list, plan, bad input."""

from __future__ import annotations

import subprocess
import sys

VNETLAB = [sys.executable, "-m", "vnetlab"]


def vnetlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VNETLAB, *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command():
    out = vnetlab("--help").stdout
    for command in ("run", "up", "check", "down", "status", "list", "plan", "image", "doctor"):
        assert command in out
    assert "vnetlab run two-vm-ping" in out


def test_list_shows_scenarios_with_descriptions():
    out = vnetlab("list").stdout
    assert "two-vm-ping" in out and "ping each other" in out
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines() if line.count("│") >= 4}
    assert rows["two-vm-ping"] == "lab" and rows["ex-two-vm-ping"] == "exercise"  # which ones a student completes


def test_plan_prints_names_and_xml_without_touching_the_system():
    result = vnetlab("plan", "two-vm-ping", "--name", "demo", "--xml")
    assert result.returncode == 0, result.stderr
    assert "namespace: vnl-demo" in result.stdout and "<domain type='qemu'>" in result.stdout


def test_invalid_scenario_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nbridges: [{name: br0}]\nvms:\n  - name: vm1\n    nics: [{bridge: br1}]\n")
    for command in ("run", "up", "plan"):
        result = vnetlab(command, str(bad))
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"{bad}:6: vms[0].nics[0].bridge: no bridge named 'br1' (bridges: br0)" in result.stderr


def test_missing_scenario_file_is_an_input_error():
    result = vnetlab("run", "no-such-scenario")
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_bad_lab_name_is_refused():
    result = vnetlab("plan", "two-vm-ping", "--name", "Bad/Name")
    assert result.returncode == 1 and "lab name 'Bad/Name' is not usable" in result.stderr


def test_every_module_error_is_reported_as_a_plain_message():
    """Each module's own failure class derives from VnetlabError, so the CLI shows it without the 'unexpected' hint."""
    from vnetlab.backends.accel import AccelError
    from vnetlab.backends.libvirt_domains import HypervisorError
    from vnetlab.backends.linux_bridge import LinkError
    from vnetlab.backends.ovs import OvsError
    from vnetlab.cli import _is_expected
    from vnetlab.run.configure import GuestError
    from vnetlab.tools.graph import GraphError
    from vnetlab.backends.image import ImageError
    from vnetlab.run.lab import LabError
    from vnetlab.features.nat import NatError
    from vnetlab.backends.netns import NamespaceError
    from vnetlab.backends.ssh import SSHError
    from vnetlab.run.teardown import TeardownError

    for cls in (AccelError, HypervisorError, LinkError, OvsError, GuestError, GraphError, ImageError, LabError, NatError, NamespaceError, SSHError, TeardownError):
        assert _is_expected(cls("x")), cls
    assert not _is_expected(KeyError("x"))


def test_errors_are_printed_as_written_not_as_markup(tmp_path):
    """A message quoting user input such as "[bold]" shows it literally (rich would eat it as a style)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nbridges: [{name: br0}]\nvms:\n  - name: vm1\n    nics: [{bridge: '[bold]x'}]\n")
    result = vnetlab("plan", str(bad))
    assert result.returncode == 2
    assert "bridge: '[bold]x' does not match [a-z][a-z0-9-]*" in result.stderr, result.stderr
