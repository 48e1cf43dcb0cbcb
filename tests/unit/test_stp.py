"""The stp feature without guests: its rules (each message at its line), the loop detection, its
plan part and resources, the plan's YAML, `--explain`, the stp check and the bounded-broadcast judge
on stand-ins, and the convergence wait with a stand-in kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from vnetlab.checks.base import CaptureSubject, CheckContext
from vnetlab.compose import load_scenario
from vnetlab.features import stp
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools import explain as ex
from scenario_helpers import checks_appended, problems
from scenario_helpers import plan_of as plan_in

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")

BASE = """\
name: stp-lab
bridges:
  - {name: br1, stp: true}
  - {name: br2, stp: true}
  - {name: br3, stp: true}
bridge-links:
  - between: [br1, br2]
  - between: [br2, br3]
  - between: [br3, br1]
vms:
  - name: vm1
    nics: [{bridge: br1, address: 10.1.1.1/24}]
  - name: vm2
    nics: [{bridge: br3, address: 10.1.1.2/24}]
"""


def with_checks(*checks: str, base: str = BASE) -> str:
    return checks_appended(base, *checks)


def plan_of(text: str, lab: str = "s-lab"):
    return plan_in(text, lab)


# -- the loop detection (union-find) -------------------------------------------------------------


def test_a_chain_has_no_loop_and_a_ring_has_one():
    assert stp.loops([("a", "b"), ("b", "c")]) == []
    assert stp.loops([("a", "b"), ("b", "c"), ("c", "a")]) == [(2, ["c", "b", "a"])]


def test_two_rings_sharing_a_bridge_are_two_loops_and_a_tree_of_many_is_none():
    assert stp.loops([("a", "b"), ("b", "a2")]) == []
    found = stp.loops([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "c")])
    assert [(i, loop) for i, loop in found] == [(2, ["c", "b", "a"]), (5, ["e", "d", "c"])]
    assert stp.loops([(f"b{i}", f"b{i + 1}") for i in range(50)]) == []


def test_a_link_closing_a_long_loop_names_every_bridge_on_it():
    links = [("a", "b"), ("x", "y"), ("b", "c"), ("c", "d"), ("y", "a"), ("d", "x")]
    ((i, loop),) = stp.loops(links)
    assert i == 5 and loop == ["d", "c", "b", "a", "y", "x"]


# -- the model: rules, each at its line ---------------------------------------------------------


def test_the_lesson_and_a_good_lab_load():
    assert problems(with_checks("stp: {blocking: 1}", "ping: {from: vm1, to: vm2}", "capture: {bridge: br2, between: [vm1, vm2], expect: [bounded-broadcast]}")) == []
    scenario = load_scenario(SCENARIOS_DIR / "stp-loop.yaml")
    assert [stp.priority(b.stp) for b in scenario.bridges] == [4096, 8192, 12288]  # br1 the root, the blocked port on br3
    assert [link.between for link in scenario.bridge_links] == [["br1", "br2"], ["br2", "br3"], ["br3", "br1"]]


def test_stp_defaults_to_false_and_bridge_links_to_none():
    scenario = load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml")
    assert [b.stp for b in scenario.bridges] == [False] * len(scenario.bridges) and scenario.bridge_links == []


def test_a_loop_without_stp_is_refused_at_the_link_that_closes_it():
    assert problems(BASE.replace("{name: br2, stp: true}", "{name: br2}")) == [
        "lab.yaml:9: bridge-links[2]: this link closes the loop br3 → br2 → br1 → br3, and br2 has no stp: true: a loop without STP "
        "floods the lab namespace forever (every broadcast circles the loop, copied at each bridge); set stp: true on every bridge of the loop"
    ]


def test_a_chain_without_stp_is_fine():
    text = BASE.replace(", stp: true}", "}").replace("  - between: [br3, br1]\n", "")
    assert problems(text) == []


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("between: [br3, br1]", "between: [br3, br9]", "lab.yaml:9: bridge-links[2].between[1]: no bridge named 'br9' (bridges: br1, br2, br3)"),
        ("between: [br3, br1]", "between: [br3, br3]", "lab.yaml:9: bridge-links[2].between: a link from 'br3' to itself: expected two different bridges"),
        ("between: [br3, br1]", "between: [br2, br1]", "lab.yaml:9: bridge-links[2]: br2 and br1 are already joined by bridge-links[0]"),
        ("between: [br3, br1]", "between: [br3, br1, br2]", "lab.yaml:9: bridge-links[2]: between: expected exactly two different bridge names (one per end of the veth pair), got 3"),
        ("{name: br3, stp: true}", "{name: br3, type: ovs}", "lab.yaml:8: bridge-links[1].between[1]: bridge 'br3' is of type ovs: bridge-links join Linux bridges (type linux) only"),
    ],
)
def test_bad_links_are_located(old, new, expected):
    found = problems(BASE.replace(old, new))
    assert expected in found, found
    assert all("loop" not in p for p in found), found  # a bad link closes no loop


def test_stp_on_ovs_and_an_stp_check_without_stp_are_located():
    assert problems(BASE.replace("{name: br1, stp: true}", "{name: br1, stp: true, type: ovs}").replace("  - between: [br1, br2]\n", "").replace("  - between: [br3, br1]\n", "")) == [
        "lab.yaml:3: bridges[0].stp: bridge type ovs takes no stp here: vnetlab turns on the kernel's STP on Linux bridges (type linux) only"
    ]
    no_stp = BASE.replace(", stp: true}", "}").replace("  - between: [br3, br1]\n", "")
    assert problems(with_checks("stp: {blocking: 1}", base=no_stp)) == ["lab.yaml:15: checks[0].stp: no bridge has stp: true: without STP no port ever blocks"]


def test_bounded_broadcast_needs_a_bridge_and_vms_across_joined_bridges_ping_by_name():
    found = problems(with_checks("capture: {interface: eth0, between: [vm1, vm2], expect: [bounded-broadcast]}"))
    assert found == ["lab.yaml:16: checks[0].capture.expect: bounded-broadcast is judged on a bridge (bridge:)"]
    unjoined = BASE.replace("bridge-links:\n  - between: [br1, br2]\n  - between: [br2, br3]\n  - between: [br3, br1]\n", "")
    assert problems(with_checks("ping: {from: vm1, to: vm2}", base=unjoined)) == [
        "lab.yaml:12: checks[0].ping.to: 'vm1' and 'vm2' have no addressed NICs on a common subnet"
    ]


def test_stp_check_blocking_is_a_count():
    assert problems(with_checks("stp: {blocking: -1}")) == ["lab.yaml:16: checks[0].stp.blocking: expected an integer from 0 to 1000, got -1"]


# -- plan, YAML, explain ---------------------------------------------------------------------------


def test_plan_links_resources_and_macs():
    plan = plan_of(BASE)
    part = plan.part("stp")
    assert part.bridges == ("br1", "br2", "br3")
    assert [(link.bridges, link.veths) for link in part.links] == [
        (("br1", "br2"), ("vnlbl0a", "vnlbl0b")), (("br2", "br3"), ("vnlbl1a", "vnlbl1b")), (("br3", "br1"), ("vnlbl2a", "vnlbl2b")),
    ]
    macs = [m for link in part.links for m in link.macs]
    others = {b.mac for b in plan.bridges} | {n.mac for vm in plan.vms for n in vm.nics}
    assert len(set(macs)) == 6 and not set(macs) & others and all(m.startswith("02:00:00:") for m in macs)
    veths = [r for r in plan.resources if r.kind == "veth"]
    assert [r.name for r in veths] == ["vnlbl0a", "vnlbl1a", "vnlbl2a"]
    assert plan_of(BASE).part("stp") == part  # deterministic
    assert all(len(v) <= 15 for link in part.links for v in link.veths)


def test_a_lab_without_stp_or_links_has_no_part():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml"), "x", PlanOptions(kernel=KERNEL))
    assert plan.part("stp", None) is None
    data = plan_data(plan)
    assert "stp" not in data and "bridge-links" not in data
    assert stp.Stp().configure_label(plan) is None and stp.explain_lines(plan) == []


def test_dump():
    plan = plan_of(BASE)
    data = plan_data(plan)
    assert data["stp"] == {"bridges": ["br1", "br2", "br3"], "forward_delay_cs": 200, "hello_time_cs": 100}
    links = data["bridge-links"]
    assert [link["between"] for link in links] == [["br1", "br2"], ["br2", "br3"], ["br3", "br1"]]
    assert links[2]["veths"] == [
        {"name": "vnlbl2a", "mac": plan.part("stp").links[2].macs[0], "bridge": "br3"},
        {"name": "vnlbl2b", "mac": plan.part("stp").links[2].macs[1], "bridge": "br1"},
    ]


def test_explain_turns_stp_on_before_the_links_then_waits():
    plan = plan_of(with_checks("stp: {blocking: 1}"))
    link = plan.part("stp").links[0]
    sections = {s.title: s for s in ex.sections(plan)}
    lines = sections["Spanning tree and links between bridges"].lines
    assert sections["Spanning tree and links between bridges"].stage == "network"
    assert lines[:5] == (
        "ip -n vnl-s-lab link set br1 type bridge stp_state 1 forward_delay 200 hello_time 100    # before the links come up: a loop never forwards unprotected",
        "ip -n vnl-s-lab link set br2 type bridge stp_state 1 forward_delay 200 hello_time 100    # before the links come up: a loop never forwards unprotected",
        "ip -n vnl-s-lab link set br3 type bridge stp_state 1 forward_delay 200 hello_time 100    # before the links come up: a loop never forwards unprotected",
        "# bridge link br1 ↔ br2",
        f"ip -n vnl-s-lab link add vnlbl0a address {link.macs[0]} type veth peer name vnlbl0b address {link.macs[1]}",
    )
    assert lines[5:7] == ("ip -n vnl-s-lab link set vnlbl0a master br1 up", "ip -n vnl-s-lab link set vnlbl0b master br2 up")
    assert lines[-1] == "bridge -n vnl-s-lab link show    # wait until no port is listening or learning (up to 60 s)"
    assert sections["Checks, in scenario order"].lines == ("bridge -n vnl-s-lab link show    # exactly 1 port(s) in state blocking, every other forwarding",)
    assert stp.Stp().configure_label(plan) == "STP: waiting until no port of br1, br2, br3 is listening or learning (up to 60 s)"


def test_links_without_stp_explain_no_stp_and_configure_nothing():
    plan = plan_of(BASE.replace(", stp: true}", "}").replace("  - between: [br3, br1]\n", ""))
    lines = stp.explain_lines(plan)
    assert not any("stp_state" in line for line in lines) and not any(line.startswith("bridge ") for line in lines)
    assert stp.Stp().configure_label(plan) is None


# -- checks, judge, convergence, with stand-ins --------------------------------------------------


def _states(monkeypatch, states):
    monkeypatch.setattr(stp, "port_states", lambda ns: sorted(states))


def test_stp_check_passes_with_exactly_the_blocking_ports(monkeypatch):
    plan = plan_of(BASE)
    tap = plan.vm("vm1").nics[0].tap
    _states(monkeypatch, [("br1", tap, 3), ("br1", "vnlbl0a", 3), ("br2", "vnlbl0b", 3), ("br2", "vnlbl1a", 3), ("br3", "vnlbl1b", 3), ("br3", "vnlbl2a", 4), ("br1", "vnlbl2b", 3)])
    ctx = CheckContext(plan, {}, Path("/nonexistent"))
    ok = stp.run_stp(ctx, stp.StpCheck(blocking=1))
    assert ok.ok and ok.detail == "expected 1 blocking port(s) and every other of the 7 bridge ports forwarding; saw 1 blocking: br3 port vnlbl2a (link br3↔br1)"
    assert ok.data["blocking"] == ["br3/vnlbl2a"]
    wrong = stp.run_stp(ctx, stp.StpCheck(blocking=0))
    assert not wrong.ok


def test_stp_check_fails_on_a_port_still_learning(monkeypatch):
    plan = plan_of(BASE)
    _states(monkeypatch, [("br1", "vnlbl0a", 2), ("br2", "vnlbl0b", 4)])
    result = stp.run_stp(CheckContext(plan, {}, Path("/nonexistent")), stp.StpCheck(blocking=1))
    assert not result.ok
    assert result.detail.endswith("saw 1 blocking: br2 port vnlbl0b (link br2↔br1); not forwarding: br1 port vnlbl0a (link br1↔br2) learning")


def test_wait_converged_polls_until_no_port_moves(monkeypatch):
    rounds = iter([[("br1", "vnlbl0a", 1)], [("br1", "vnlbl0a", 2), ("br9", "x", 1)], [("br1", "vnlbl0a", 3), ("br9", "x", 1)]])
    monkeypatch.setattr(stp, "port_states", lambda ns: next(rounds))
    slept = []
    assert stp.wait_converged("ns", ("br1",), sleep=slept.append) == [("br1", "vnlbl0a", 3)]  # br9 runs no STP: not waited for
    assert slept == [0.2, 0.2]


def test_wait_converged_gives_up_naming_the_ports(monkeypatch):
    monkeypatch.setattr(stp, "port_states", lambda ns: [("br1", "vnlbl0a", 1)])
    with pytest.raises(stp.StpError, match=r"did not converge within 0 s: still br1 port vnlbl0a listening"):
        stp.wait_converged("ns", ("br1",), timeout=0.0, sleep=lambda s: None)


def _subject(plan, frames):
    return CaptureSubject("vm1", plan.vm("vm1").nics[0], "vm2", plan.vm("vm2").nics[0], frames)


def test_bounded_broadcast_counts_broadcasts_only():
    plan = plan_of(with_checks("capture: {bridge: br2, between: [vm1, vm2], expect: [bounded-broadcast]}"))
    check = plan.scenario.checks[0].capture
    arp = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(pdst="10.1.1.2")
    unicast = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / ARP(op=2)
    fine = stp.judge_bounded_broadcast(plan, check, _subject(plan, [arp] * 3 + [unicast] * 500))
    assert fine.ok and fine.seen == "3 broadcast frame(s)" and fine.counts == {"broadcast_frames": 3}
    assert fine.expected == "≤100 broadcast frames on br2 during the checks (a loop without STP gives thousands a second)"
    assert stp.judge_bounded_broadcast(plan, check, _subject(plan, [arp] * 100)).ok
    storm = stp.judge_bounded_broadcast(plan, check, _subject(plan, [arp] * 101))
    assert not storm.ok and storm.counts == {"broadcast_frames": 101}


def test_the_lesson_plan_has_three_links_and_its_second_half_pulls_the_link_to_the_root():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "stp-loop.yaml"), "stp-loop", PlanOptions(kernel=KERNEL))
    assert len(plan.part("stp").links) == 3 and plan.part("stp").priorities == (4096, 8192, 12288)
    assert [c.kind for c in plan.scenario.checks] == ["ping", "ping", "stp", "capture", "ping", "action", "action", "action", "stp"]
    recovery, _, pull, _, after = plan.scenario.checks[4:]
    assert recovery.ping.measure == "recovery" and recovery.ping.recovery_max_s == 6
    assert pull.action.link == ["br3", "br1"] and pull.action.state == "down"
    assert (after.stp.blocking, after.stp.disabled) == (0, 2)


def test_priorities_are_set_with_stp_and_a_bare_true_keeps_the_default():
    scenario = load_scenario(SCENARIOS_DIR / "stp-loop.yaml")
    assert stp.priority(True) == 32768 and stp.priority(False) is None and stp.priority(scenario.bridges[0].stp) == 4096
    lines = stp.explain_lines(make_plan(scenario, "stp-loop", PlanOptions(kernel=KERNEL)))
    assert lines[0].startswith("ip -n vnl-stp-loop link set br1 type bridge stp_state 1 forward_delay 200 hello_time 100 priority 4096    #")
    assert problems(BASE.replace("{name: br1, stp: true}", "{name: br1, stp: {priority: 70000}}")) == ["lab.yaml:3: bridges[0].stp.priority: expected an integer from 0 to 65535, got 70000"]
