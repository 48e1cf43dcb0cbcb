"""Link faults during a run, on real guests: actions in a check list take a guest's NIC (libvirt) and
a container's veth down and bring them back, change a NIC's netem, and a ping that runs through the
outage measures its recovery; everything is put back at the end of the checks, also after Ctrl-C;
`vnetlab link` does the same by hand, `inspect` flags a link that is down, and `vnetlab judge`
judges the actions' records again without touching the lab."""

from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from labtools import run_report, scenario_with_checks, start, vnetlab, wait_until

pytestmark = pytest.mark.e2e
LAB_PREFIX = "lf-"

FLAP = """\
name: link-flap
bridges:
  - {name: br0, subnet: 10.1.1.0/24}
vms:
  - name: vm1
    nics: [{bridge: br0, address: 10.1.1.1/24}]
  - name: vm2
    nics: [{bridge: br0, address: 10.1.1.2/24}]
containers:
  - {name: c1, nic: {bridge: br0, address: 10.1.1.9/24}}
checks:
  - ping: {from: vm1, to: vm2, count: 200, measure: recovery, recovery-max-s: 8, name: vm1 → vm2 recovers}
  - action: {wait: 1s}
  - action: {link: vm2.eth0, state: down}
  - ping: {from: vm1, to: vm2, count: 2, expect: failure, name: vm2 pulled}
  - action: {wait: 1s}
  - action: {link: vm2.eth0, state: up}
  - action: {link: c1.eth0, state: down}
  - ping: {from: vm1, to: c1, count: 2, expect: failure, name: c1 pulled}
  - action: {netem: {link: vm1.eth0, delay: 150ms}}
  - ping: {from: vm1, to: vm2, count: 3, rtt-min-ms: 150, name: slow}
"""


@pytest.fixture(scope="module")
def flapped(tmp_path_factory, module_lab_name):
    """The lab after one `run --keep` of FLAP: (the run's process, its report, the scenario file)."""
    folder = tmp_path_factory.mktemp("flap")
    scenario = folder / "link-flap.yaml"
    scenario.write_text(FLAP)
    report_path = folder / "report.json"
    result = vnetlab("run", str(scenario), "--name", module_lab_name, "--keep", "--report", str(report_path))
    return result, json.loads(report_path.read_text()), scenario


def _down_macs(lab: str, vm: str) -> list[str]:
    """The MACs of the guest's NICs whose carrier libvirt has taken (read from the live domain XML)."""
    conn = libvirt.open("qemu:///system")
    try:
        root = ET.fromstring(conn.lookupByName(f"vnl-{lab}-{vm}").XMLDesc(0))
    finally:
        conn.close()
    return [i.find("mac").get("address") for i in root.iter("interface") if i.find("link") is not None and i.find("link").get("state") == "down"]


def test_a_pulled_link_fails_a_ping_and_the_recovery_is_in_the_report(flapped, module_lab_name):
    result, report, _ = flapped
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4/4 checks passed, 6 actions done" in result.stdout
    by_name = {c["name"]: c for c in report["checks"]}
    recovery = by_name["vm1 → vm2 recovers"]
    assert 0.8 <= recovery["data"]["recovery_s"] <= 8, recovery["detail"]  # vm2's link was down for ~1 s plus the failing ping's 2 s
    assert recovery["detail"].startswith("replies stopped after seq"), recovery["detail"]
    assert by_name["vm2 pulled"]["ok"] and "no reply on the wire" in by_name["vm2 pulled"]["detail"]
    assert by_name["c1 pulled"]["ok"], by_name["c1 pulled"]["detail"]
    assert by_name["slow"]["data"]["rtt_avg_ms"] >= 150, by_name["slow"]["detail"]
    pull = by_name["link vm2.eth0 down"]
    assert pull["action"] and pull["data"]["before"] == "up" and pull["data"]["after"] == "down", pull["detail"]
    assert pull["data"]["undone"] == "already up", pull["detail"]  # the list brought it back itself
    assert by_name["link c1.eth0 down"]["data"]["undone"].startswith("up again"), by_name["link c1.eth0 down"]["detail"]
    assert by_name["netem on vm1.eth0: delay 150 ms"]["data"]["undone"] == "netem removed"
    junit = Path(report["artifacts"]["junit"]).read_text()
    assert junit.count('classname="vnetlab.link-flap.action"') == 6


def test_the_end_of_the_checks_put_everything_back_and_they_run_again(flapped, module_lab_name):
    lab = module_lab_name
    links = vnetlab("link", lab)
    assert links.returncode == 0, links.stderr
    assert "vm2.eth0: up (the guest NIC's carrier, through libvirt)" in links.stdout and "c1.eth0: up" in links.stdout, links.stdout
    assert "no netem qdisc" in vnetlab("netem", lab, "vm1", "eth0").stdout
    again = vnetlab("check", lab)
    assert again.returncode == 0 and "4/4 checks passed, 6 actions done" in again.stdout, again.stdout + again.stderr


def test_judge_rejudges_the_actions_records_without_acting(flapped, module_lab_name):
    _, report, _ = flapped
    judged = vnetlab("judge", report["artifacts"]["dir"], "--format", "json")
    assert judged.returncode == 0, judged.stdout + judged.stderr
    (run,) = json.loads(judged.stdout)
    assert [(r["name"], r["ok"]) for r in run["results"]] == [(c["name"], c["ok"]) for c in report["checks"]]
    assert _down_macs(module_lab_name, "vm2") == []  # judging acted on nothing


def test_vnetlab_link_by_hand_and_inspect_flags_a_link_that_is_down(flapped, module_lab_name):
    lab = module_lab_name
    down = vnetlab("link", lab, "vm2.eth0", "down")
    assert down.returncode == 0 and down.stdout == "vm2.eth0: down (the guest NIC's carrier, through libvirt)\n", down.stdout + down.stderr
    assert len(_down_macs(lab, "vm2")) == 1
    inspect = vnetlab("inspect", lab, "--no-guest")
    assert inspect.returncode == 1 and f"link vm2.eth0 is down (the guest NIC's carrier, through libvirt): `vnetlab link {lab} vm2.eth0 up` brings it back" in inspect.stdout, inspect.stdout
    assert "LINK DOWN" in vnetlab("graph", lab, "--format", "dot").stdout
    ping = vnetlab("exec", lab, "vm1", "--", "ping -c 2 -W 1 10.1.1.2")
    assert ping.returncode != 0, ping.stdout
    up = vnetlab("link", lab, "vm2.eth0", "up")
    assert up.returncode == 0 and _down_macs(lab, "vm2") == []
    assert vnetlab("inspect", lab, "--no-guest").returncode == 0
    unknown = vnetlab("link", lab, "vm9.eth0", "down")
    assert unknown.returncode == 2 and "has no link 'vm9.eth0' (links: vm1.eth0, vm2.eth0, c1.eth0)" in unknown.stderr, unknown.stderr


def test_ctrl_c_in_the_checks_still_brings_the_link_back(flapped, module_lab_name):
    lab = module_lab_name
    proc = start("check", lab)
    wait_until("vm2's link to be down", lambda: bool(_down_macs(lab, "vm2")), proc, timeout=180)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "the checks were stopped; the lab is still up" in err, err
    assert _down_macs(lab, "vm2") == []  # put back although the list never reached its own `up`
    links = vnetlab("link", lab)
    assert "vm2.eth0: up" in links.stdout and "c1.eth0: up" in links.stdout, links.stdout


SWITCH_PORT = """\
  - action: {link: sw-br0.p1, state: down}
  - ping: {from: vm1, to: vm3, count: 2, expect: no-reply, name: vm1's switch port pulled}
  - ping: {from: vm2, to: vm3, count: 2, name: vm2 still through the switch}
  - action: {link: sw-br0.p1, state: up}
  - action: {wait: 2s}
  - ping: {from: vm1, to: vm3, name: vm1 back}
"""


def test_a_switch_guests_port_is_pulled_through_libvirt(tmp_path, lab_name):
    """vlan-trunk where this kernel has no VLAN filtering: br0 runs in a switch guest (sw-br0), whose
    port p1 faces vm1; pulling it (the switch guest's NIC, through libvirt) cuts vm1 off alone."""
    plan = vnetlab("plan", "vlan-trunk")
    if "sw-br0" not in plan.stdout:
        pytest.skip("this host's kernel filters VLANs itself: vlan-trunk has no switch guest here")
    path = scenario_with_checks(tmp_path, "vlan-trunk", SWITCH_PORT)
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    by_name = {c["name"]: c for c in report["checks"]}
    assert "no reply on the wire" in by_name["vm1's switch port pulled"]["detail"], by_name["vm1's switch port pulled"]["detail"]
    assert by_name["vm2 still through the switch"]["ok"] and by_name["vm1 back"]["ok"]
    pull = by_name["link sw-br0.p1 down"]
    assert pull["data"]["before"] == "up" and pull["data"]["after"] == "down" and pull["data"]["undone"] == "already up", pull["detail"]
    assert "the guest NIC's carrier, through libvirt" in pull["detail"]
