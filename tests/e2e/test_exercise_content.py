"""The shipped exercises on real guests, through the CLI alone (before the exercise engine exists).

For each exercise at the values of tests/support/exercises.DEMO: its lab part and its tasks'
checks become a plain scenario (`vnetlab up`); its setup runs with `vnetlab exec`; then, task
by task, the task's checks must fail, its solve runs, and its checks must pass (what
`vnetlab exercise test` will do); at the end every check passes. An answer task has no run-time
check yet: its expected value is compared with what the live lab shows. Each step is printed
(`pytest -s` gives the transcript).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from labtools import vnetlab

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package
from support.exercises import Rendered, Step, exercise_names, render_exercise  # noqa: E402

pytestmark = pytest.mark.e2e
LAB_PREFIX = "xc-"


def _exec(lab: str, step: Step) -> str:
    assert step.node is not None and step.run is not None
    print(f"$ vnetlab exec {lab} {step.node} -- {step.run}")
    done = vnetlab("exec", lab, step.node, "--", step.run)
    print(done.stdout + done.stderr, end="")
    assert done.returncode == 0, f"{step.run} on {step.node}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def _check(lab: str, tmp_path: Path) -> list[dict]:
    report = tmp_path / "check.json"
    done = vnetlab("check", lab, "--report", str(report))
    results = json.loads(report.read_text())["checks"]
    for c in results:
        print(("  ✓ " if c["ok"] else "  ✗ ") + f"{c['name']}: {c['detail']}")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return results


def _by_task(r: Rendered, results: list[dict]) -> list[list[dict]]:
    out, start = [], 0
    for task in r.tasks:
        out.append(results[start:start + len(task.checks)])
        start += len(task.checks)
    assert start == len(results)
    return out


def _confirm_answer(r: Rendered, lab: str, answer: dict) -> None:
    """What the live lab says the answer is, for the exercises that ask one."""
    expect = str(answer["expect"])
    print(f"answer expected: {expect} ({answer.get('normalize', 'exact')})")
    if r.name == "ex-two-vm-ping":  # the MAC that answered vm1's ARP: vm2's eth0
        assert _exec(lab, Step("vm2", "cat /sys/class/net/eth0/address", None)).strip() == expect
    elif r.name == "ex-bridge-by-hand":  # the port sw-br0's bridge learnt vm2's MAC on
        mac = _exec(lab, Step("vm2", "cat /sys/class/net/eth0/address", None)).strip()
        fdb = _exec(lab, Step("sw-br0", "bridge fdb show br br0", None))
        assert f"{mac} dev {expect} master br0" in fdb
    elif r.name == "ex-mtu-trouble":  # in the broken lab: the path MTU crosses, one byte more vanishes; router eth1 is larger
        mtu = r.params["mtu"]
        _exec(lab, Step("jumbo1", f"/usr/bin/ping -M do -c 1 -W 2 -s {mtu - 28} 10.14.0.10", None))
        vanished = vnetlab("exec", lab, "jumbo1", "--", f"/usr/bin/ping -M do -c 1 -W 2 -s {mtu - 27} 10.14.0.10")
        print(vanished.stdout + vanished.stderr, end="")
        assert vanished.returncode == 1 and "Frag needed" not in vanished.stdout + vanished.stderr
        assert int(_exec(lab, Step("small1", "cat /sys/class/net/eth0/mtu", None))) == mtu
        assert int(_exec(lab, Step("router", "cat /sys/class/net/eth1/mtu", None))) == 9000
        assert re.search(expect, "router eth1")
    else:
        raise AssertionError(f"no way to confirm {r.name}'s answer on the live lab")


@pytest.mark.parametrize("name", exercise_names())
def test_setup_breaks_each_task_and_its_solve_mends_it(name, lab_name, tmp_path):
    r = render_exercise(name, lab=lab_name)
    plain = tmp_path / f"{name}.yaml"
    plain.write_text(r.plain_yaml())
    print(f"\n== {name} as lab {lab_name}: params {r.params}\n{r.plain_yaml()}")
    up = vnetlab("up", str(plain), "--name", lab_name, "-q")
    assert up.returncode == 0, up.stdout + up.stderr
    print("== setup")
    for step in r.setup:
        _exec(lab_name, step)
    for k, task in enumerate(r.tasks):
        if task.checks:
            print(f"== before solving {task.name!r}: its checks must fail")
            before = _by_task(r, _check(lab_name, tmp_path))[k]
            assert not all(c["ok"] for c in before), f"{task.name}: passes before its solve"
        print(f"== solve {task.name!r}")
        for step in task.solve:
            if step.answer is not None:
                print(f"answer: {step.answer}")
            else:
                _exec(lab_name, step)
        for answer in task.answers:
            given = [s.answer for s in task.solve if s.answer is not None]
            assert given and (re.search(answer["expect"], given[0]) if answer.get("normalize") == "regex" else given[0] == str(answer["expect"]))
            _confirm_answer(r, lab_name, answer)
        if task.checks:
            print(f"== after solving {task.name!r}: its checks must pass")
            after = _by_task(r, _check(lab_name, tmp_path))[k]
            assert all(c["ok"] for c in after), f"{task.name}: fails after its solve"
    print("== at the end: every check passes, also run again at once")
    for _ in range(2):
        assert all(c["ok"] for c in _check(lab_name, tmp_path))
