"""The shipped exercises (scenarios/ex-*.yaml) at fixed param values, for tests that prove them before
the exercise engine exists — and a stand-in for what that engine must do with a file.

An exercise is a scenario with `params:` and an `exercise:` section. Here, with the values of DEMO
(not the engine's per-student draw), its lab part becomes a plain scenario, its tasks' checks
become that scenario's `checks:` (an `answer` has no run-time check yet: it is kept aside), and its
setup, solve steps, task texts and hints are rendered with the lab's own variables. What the
engine must do the same way, and what this module assumes of it:
- `{{ params.x }}` anywhere; `host(n)` gives the n-th address of a subnet param;
- a value that is a single template (`listen-port: "{{ params.port }}"`) takes its field's type:
  a rendered integer is an int;
- task texts, hints, checks and steps also see every node's variables (vnetlab.model.templates:
  `{{ vm2.eth0.address }}`, `.ip`, `.mac`);
- `students-reach:` (the engine's key: nodes a student gets a terminal on) is the engine's alone.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from vnetlab.compose import parse_scenario
from vnetlab.features.commands import plan_variables
from vnetlab.paths import SCENARIOS_DIR, exercise_files
from vnetlab.plan.planner import Plan, PlanOptions, make_plan

# Each exercise's param values: those it was proven with on real guests, and a set at the edges of each range.
VALUES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ex-two-vm-ping": ({"net": "10.77.5.0/24", "host2": 42}, {"net": "10.255.254.0/24", "host2": 250}),
    "ex-bridge-by-hand": ({"net": "10.20.30.0/24"}, {"net": "10.0.0.0/24"}),
    "ex-wireguard": ({"tun": "192.168.57.0/24", "port": 51111}, {"tun": "192.168.255.0/24", "port": 60000}),
    "ex-container-nat": ({"inside": "10.44.0.0/24"}, {"inside": "10.0.0.0/24"}),
    "ex-vlan-trunk": ({"vid_a": 110, "vid_b": 2200}, {"vid_a": 1999, "vid_b": 3999}),
    "ex-mtu-trouble": ({"mtu": 1450}, {"mtu": 1280}),
}
DEMO = {name: values[0] for name, values in VALUES.items()}
EDGES = {name: values[1] for name, values in VALUES.items()}
_SINGLE = re.compile(r"^\{\{[^{}]*\}\}$")


def _environment() -> jinja2.sandbox.SandboxedEnvironment:
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["host"] = lambda net, n: str(ipaddress.ip_network(net)[int(n)])
    return env


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Every string in value rendered; a string that is one template and renders to an integer becomes an int."""
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    text = _environment().from_string(value).render(**variables)
    return int(text) if _SINGLE.match(value.strip()) and re.fullmatch(r"-?[0-9]+", text) else text


@dataclass(frozen=True)
class Step:
    node: str | None  # None for an answer
    run: str | None
    answer: str | None


@dataclass(frozen=True)
class Task:
    name: str
    text: str
    points: float
    hints: list[str]
    hint_cost: float
    checks: list[dict]  # the run-time checks (answer checks left out)
    answers: list[dict]  # the answer checks, rendered
    solve: list[Step]


@dataclass
class Rendered:
    name: str
    params: dict[str, Any]
    lab: dict  # the plain scenario: the lab part with the tasks' run-time checks, in task order
    plan: Plan
    title: str
    intro: str
    setup: list[Step]
    tasks: list[Task] = field(default_factory=list)

    def plain_yaml(self) -> str:
        return yaml.safe_dump(self.lab, sort_keys=False, width=200)


def exercise_path(name: str) -> Path:
    return SCENARIOS_DIR / f"{name}.yaml"


def exercise_names() -> list[str]:
    return [p.stem for p in exercise_files()]


def _step(raw: dict, variables: dict[str, Any]) -> Step:
    done = render(raw, variables)
    return Step(done.get("node"), done.get("run"), str(done["answer"]) if "answer" in done else None)


def render_exercise(name: str, params: dict[str, Any] | None = None, lab: str | None = None) -> Rendered:
    """The exercise `name` with `params` (default: DEMO), planned for lab `lab` (its MACs follow the lab name)."""
    params = DEMO[name] if params is None else params
    doc = yaml.safe_load(exercise_path(name).read_text())
    exercise = doc.pop("exercise")
    doc.pop("params", None)
    base = render(doc, {"params": params})
    tasks_raw = exercise["tasks"]
    checks = [c for t in tasks_raw for c in t["checks"] if "answer" not in c]
    plain = {**copy.deepcopy(base), "name": f"exl-{name.removeprefix('ex-')}", "description": f"{name} as a plain scenario, at fixed param values"}
    plain["checks"] = render(checks, {"params": params})  # node variables come next, once planned
    scenario = parse_scenario(yaml.safe_dump({**plain, "checks": []}), f"{name}.yaml")
    plan = make_plan(scenario, lab or name, PlanOptions())
    variables = plan_variables(plan)
    variables["params"] = params
    plain["checks"] = render(checks, variables)
    tasks = []
    for t in tasks_raw:
        tasks.append(Task(
            t["name"],
            render(t["text"], variables),
            t.get("points", 1),
            [render(h, variables) for h in t.get("hints", [])],
            t.get("hint-cost", 0),
            [render(c, variables) for c in t["checks"] if "answer" not in c],
            [render(c["answer"], variables) for c in t["checks"] if "answer" in c],
            [_step(s, variables) for s in t.get("solve", [])],
        ))
    return Rendered(name, params, plain, plan, render(exercise["title"], variables), render(exercise.get("intro", ""), variables),
                    [_step(s, variables) for s in exercise.get("setup", [])], tasks)
