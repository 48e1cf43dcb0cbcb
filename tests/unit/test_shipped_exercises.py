"""The shipped exercises (scenarios/ex-*.yaml) hold together for any student, without root.

For two students (the demo id and another): the exercise loads with their params, plans, and every
template of it renders (intro, texts, hints, setup, solutions, answers); each task's reference
answer is right and a wrong one is not; the student's values reach the lab, the texts and the
checks. And what the engine gives the exercises: a NIC's switch port as a template variable, and
the wire signature of a ping from a trunk's sub-interface. tests/e2e/test_exercises.py proves each
exercise on real guests (`vnetlab exercise test`).
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether

from vnetlab.checks.base import Evidence, node_ips
from vnetlab.checks.ping import judge_ping_wire, ping_points, ping_target
from vnetlab.compose import load_scenario
from vnetlab.features.exercise import answer_matches
from vnetlab.model.templates import render
from vnetlab.paths import SCENARIOS_DIR, exercise_files, lesson_files
from vnetlab.plan.planner import make_plan
from vnetlab.plan.variables import plan_variables

SHIPPED = ["ex-bridge-by-hand", "ex-container-nat", "ex-mtu-trouble", "ex-two-vm-ping", "ex-vlan-trunk", "ex-wireguard"]
STUDENTS = ["demo", "s-0042"]


def planned(name: str, student: str):
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml", student)
    return scenario, make_plan(scenario, f"{name}-{student}")


def test_the_six_exercises_are_shipped_and_are_not_lessons():
    assert [p.stem for p in exercise_files()] == SHIPPED
    assert not {p.stem for p in lesson_files()} & set(SHIPPED)


def test_at_least_three_exercises_draw_values_per_student():
    differ = [n for n in SHIPPED if planned(n, STUDENTS[0])[0].param_values != planned(n, STUDENTS[1])[0].param_values]
    assert len(differ) >= 3, differ


@pytest.mark.parametrize("student", STUDENTS)
@pytest.mark.parametrize("name", SHIPPED)
def test_an_exercise_renders_for_a_student_and_its_reference_answers_are_right(name, student):
    scenario, plan = planned(name, student)
    variables = plan_variables(plan)
    ex = scenario.exercise
    nodes = {vm.name for vm in plan.vms} | {n.name for n in plan.nodes}  # switch guests included
    assert ex.title and render(ex.intro, variables).strip() and ex.setup and "docs/intro.md" not in ex.intro
    assert all(step.node in nodes and render(step.run, variables) for step in ex.setup)
    for task in ex.tasks:
        texts = [render(task.text, variables), *(render(h, variables) for h in task.hints)]
        assert texts[0].strip() and not any("{{" in t for t in texts), task.name
        assert task.solve, f"{task.name}: no reference solution"
        assert all(render(s.run, variables) for s in task.solve if s.run is not None)
        for check in (c.answer for c in task.checks if c.answer is not None):
            expect = render(check.expect, variables)
            [given] = [render(s.answer, variables) for s in task.solve if s.answer is not None]
            assert answer_matches(given, expect, check.normalize), (task.name, given, expect)
            wrong = {"mac": "52:54:00:00:00:01", "exact": "p1", "regex": "small1 eth0"}[check.normalize]  # another NIC's
            assert not answer_matches(wrong, expect, check.normalize), (task.name, wrong)


def test_the_students_values_reach_the_lab_the_texts_and_the_checks():
    for student in STUDENTS:
        scenario, plan = planned("ex-wireguard", student)
        port, tun = scenario.param_values["port"], ipaddress.IPv4Network(scenario.param_values["tun"])
        assert [w.listen_port for w in plan.part("wireguard")] == [port, port]
        solve = render(scenario.exercise.tasks[0].solve[0].run, plan_variables(plan))
        assert f"allowed-ips {tun.network_address + 2}/32 endpoint 10.1.1.3:{port}" in solve
        scenario, plan = planned("ex-mtu-trouble", student)
        mtu = scenario.param_values["mtu"]
        pmtus = [c.pmtu for c in scenario.exercise.tasks[1].checks if c.pmtu is not None]
        assert [(p.size, p.expect) for p in pmtus] == [(8972, "success"), (mtu - 28, "success"), (mtu - 27, "frag-needed")]
        assert plan.part("mtu").bridges[1].mtu == mtu


def test_a_nics_switch_port_is_a_template_variable():
    """vm2's port: the switch guest's NIC vnetlab wired to it (a bridge in a guest), else its tap on the host bridge."""
    scenario, plan = planned("ex-bridge-by-hand", "demo")
    [switch] = plan.part("switch-guest").switches
    wired = {p.member: p.port for p in switch.ports}
    variables = plan_variables(plan)
    assert variables["vm2"]["eth0"]["port"] == wired["vm2 eth0"] == "p2" and variables["vm1"]["eth0"]["port"] == "p1"
    assert render(scenario.exercise.tasks[1].checks[0].answer.expect, variables) == "p2"
    _, plain = planned("ex-two-vm-ping", "demo")
    assert plan_variables(plain)["vm2"]["eth0"]["port"] == plain.vm("vm2").nics[0].tap
    _, nat = planned("ex-container-nat", "demo")
    assert plan_variables(nat)["c1"]["eth0"]["port"] == next(n.veth for n in nat.nodes if n.name == "c1")


def _tagged(vid: int, src: str, dst: str, seq: int, reply: bool = False):
    return Ether(bytes(Ether() / Dot1Q(vlan=vid) / IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=9, seq=seq) / (b"x" * 56)))


def test_a_ping_from_a_trunks_sub_interface_is_captured_on_the_trunks_link():
    scenario, plan = planned("ex-vlan-trunk", "demo")
    vid_a = scenario.param_values["vid_a"]
    [back] = [c.ping for c in scenario.exercise.tasks[0].checks if c.ping is not None and c.ping.source == "vm3"]
    assert ping_target(plan, back) == "10.0.10.2" and ping_points(plan, back) == ["vm3.eth0"]
    assert {"10.0.10.5", "10.0.20.5"} <= node_ips(plan, "vm3")
    said = Evidence({"command": "ping", "exit": 0, "stdout": "1 packets transmitted, 1 packets received, 0% packet loss\n", "stderr": ""})
    seen = [_tagged(vid_a, "10.0.10.5", "10.0.10.2", 0), _tagged(vid_a, "10.0.10.2", "10.0.10.5", 0, reply=True)]
    assert judge_ping_wire(plan, back, said, {"vm3.eth0": seen}).ok
    silent = judge_ping_wire(plan, back, said, {"vm3.eth0": seen[:1]})
    assert not silent.ok and silent.seen.startswith("no echo reply crossed vm3.eth0")
