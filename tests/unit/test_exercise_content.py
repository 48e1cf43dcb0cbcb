"""The shipped exercises (scenarios/ex-*.yaml) hold together before the exercise engine exists.

At the values they were proven with on real guests (tests/e2e/test_exercise_content.py) and at the
edges of every param's range: the lab part and every task's checks load in vnetlab's model and
plan; every template in texts, hints, checks and steps renders; setup and solve name nodes the lab
has; each task can be graded and solved. The values themselves are legal draws of the params.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest
import yaml

from vnetlab.paths import exercise_files, scenario_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package
from support.exercises import DEMO, EDGES, exercise_names, exercise_path, render_exercise  # noqa: E402

SHIPPED = ["ex-bridge-by-hand", "ex-container-nat", "ex-mtu-trouble", "ex-two-vm-ping", "ex-vlan-trunk", "ex-wireguard"]


def test_the_six_exercises_are_shipped_and_are_not_lessons():
    assert exercise_names() == SHIPPED
    assert not {p.stem for p in scenario_files()} & set(SHIPPED)
    assert {p.name for p in exercise_files()} == {f"{n}.yaml" for n in SHIPPED}


def test_at_least_three_exercises_draw_values_per_student():
    with_params = [n for n in SHIPPED if yaml.safe_load(exercise_path(n).read_text()).get("params")]
    assert len(with_params) >= 3, with_params


def _fits(kind: dict, value: object) -> bool:
    if "range" in kind:
        low, high = kind["range"]
        return isinstance(value, int) and low <= value <= high
    if "choice" in kind:
        return value in kind["choice"]
    if "subnet-of" in kind:
        net = ipaddress.ip_network(str(value))
        return net.prefixlen == kind["prefix"] and net.subnet_of(ipaddress.ip_network(kind["subnet-of"]))
    raise AssertionError(f"unknown param kind {kind}")


@pytest.mark.parametrize("values", [DEMO, EDGES], ids=["demo", "edges"])
@pytest.mark.parametrize("name", SHIPPED)
def test_the_test_values_are_draws_the_params_allow(name, values):
    declared = yaml.safe_load(exercise_path(name).read_text()).get("params", {})
    assert set(values[name]) == set(declared)
    for key, kind in declared.items():
        assert _fits(kind, values[name][key]), (key, kind, values[name][key])


@pytest.mark.parametrize("values", [DEMO, EDGES], ids=["demo", "edges"])
@pytest.mark.parametrize("name", SHIPPED)
def test_an_exercise_loads_plans_and_renders(name, values):
    r = render_exercise(name, values[name])  # the lab with every task's checks through the model, then the plan
    nodes = {vm.name for vm in r.plan.vms} | {n.name for n in r.plan.nodes}  # switch guests included
    assert r.title and r.intro and r.setup
    for step in r.setup:
        assert step.node in nodes and step.run
    names = [t.name for t in r.tasks]
    assert len(set(names)) == len(names)
    for task in r.tasks:
        assert task.text.strip() and (task.checks or task.answers), task.name
        assert task.hint_cost <= task.points, task.name
        assert task.solve, f"{task.name}: no reference solution"
        for step in task.solve:
            assert (step.node in nodes and step.run) or step.answer is not None, (task.name, step)
        for answer in task.answers:
            assert answer.get("expect") not in (None, ""), task.name
            [given] = [s.answer for s in task.solve if s.answer is not None]
            if answer.get("normalize") == "regex":
                assert re.search(answer["expect"], given), task.name
                assert not re.search(answer["expect"], "small1 eth0"), task.name
            else:
                assert given == str(answer["expect"]), task.name
        assert "{{" not in task.text + "".join(task.hints), task.name


def test_values_reach_the_lab_the_texts_and_the_steps():
    """One param set against another: the student's values are everywhere the exercise names them."""
    demo, edges = render_exercise("ex-wireguard", DEMO["ex-wireguard"]), render_exercise("ex-wireguard", EDGES["ex-wireguard"])
    assert [w.listen_port for w in demo.plan.part("wireguard")] == [51111, 51111]
    assert [w.listen_port for w in edges.plan.part("wireguard")] == [60000, 60000]
    assert "192.168.255.2/32 endpoint 10.1.1.3:60000" in edges.tasks[0].solve[0].run and "60000" in edges.tasks[0].text
    mtu = render_exercise("ex-mtu-trouble", EDGES["ex-mtu-trouble"])
    assert [(c["pmtu"]["size"], c["pmtu"].get("expect", "success")) for c in mtu.tasks[1].checks if "pmtu" in c] == [(8972, "success"), (1252, "success"), (1253, "frag-needed")]
    assert [re.search(mtu.tasks[0].answers[0]["expect"], a) is not None for a in ("router eth1", "Router.eth1", " router:eth1 ", "router eth0", "small1 eth0")] == [True, True, True, False, False]
    bridge = render_exercise("ex-bridge-by-hand")
    [switch] = bridge.plan.part("switch-guest").switches  # the answer is the port vnetlab gives vm2's NIC
    assert bridge.tasks[1].answers == [{"expect": next(p.port for p in switch.ports if p.member == "vm2 eth0"), "normalize": "exact"}]
