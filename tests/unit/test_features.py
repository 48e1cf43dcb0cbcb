"""The feature interface: composing the registry, and the worked example of docs/features.md.

The `motd` feature is taken verbatim from the documentation's code block, so the guide
cannot drift from the interface: it is composed into a registry next to vnetlab's own
features and every hook it has is driven here (the SSH session is a stand-in).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CheckContext
from vnetlab.compose import check_order, compose, default_features, registry
from vnetlab.features.base import Feature
from vnetlab.model.schema import scenario_schema
from vnetlab.model.scenario import ModelExtension, decl
from vnetlab.model.typed_yaml import ValidationError, spec
from vnetlab.model.validate import parse_scenario
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import make_plan
from vnetlab.tools.explain import explain

GUIDE = Path(__file__).parents[2] / "docs" / "features.md"
BASE = """\
name: motd-lab
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
"""


def load_guide_module():
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S)[1]
    spec_ = importlib.util.spec_from_loader("motd_example", loader=None)
    module = importlib.util.module_from_spec(spec_)
    sys.modules["motd_example"] = module  # dataclasses resolve annotations through sys.modules
    exec(compile(code, str(GUIDE), "exec"), module.__dict__)  # noqa: S102 — our own documentation
    return module


@pytest.fixture(scope="module")
def model():
    motd = load_guide_module().Motd()
    return compose((*default_features(), motd))


@dataclass
class FakeSSH:
    files: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        self.commands.append(command)
        if command.startswith("printf"):
            self.files["/etc/motd"] = command.split(" ", 2)[2].rsplit(" > ", 1)[0].strip("'") + "\n"
        return CommandResult(command, 0, self.files.get("/etc/motd", "") if command == "cat /etc/motd" else "", "")


def test_the_guide_example_adds_a_key_a_check_a_step_and_explain_lines(model, tmp_path):
    text = BASE + 'motd: "welcome to the bridge lab"\nchecks:\n  - motd: {on: vm1}\n'
    scenario = parse_scenario(text, "lab.yaml", model)
    plan = make_plan(scenario, "motd-lab")
    feature = next(f for f in plan.features if f.name == "motd")
    assert plan.part("motd") == "welcome to the bridge lab"
    assert feature.configure_label(plan) == "Message of the day"
    ssh = FakeSSH()
    feature.configure(plan, {"vm1": ssh}, tmp_path)
    assert ssh.files["/etc/motd"] == "welcome to the bridge lab\n"
    result = feature.check_kinds["motd"].run(CheckContext(plan, {"vm1": ssh}, tmp_path), scenario.checks[0].spec)
    assert result.ok and result.kind == "motd"
    assert "vm1$ printf '%s\\n' 'welcome to the bridge lab' > /etc/motd" in explain(plan)
    assert "motd" in scenario_schema(model)["properties"] and "motd" in scenario_schema(model)["$defs"]["Check"]["properties"]


def test_the_guide_example_rules_are_located(model):
    with pytest.raises(ValidationError) as bad:
        parse_scenario(BASE + "motd: 3\n", "lab.yaml", model)
    assert [str(p) for p in bad.value.problems] == ["lab.yaml:5: motd: expected a string, got 3"]
    with pytest.raises(ValidationError) as bad:
        parse_scenario(BASE + "checks:\n  - motd: {on: vm9}\n", "lab.yaml", model)
    assert [str(p) for p in bad.value.problems] == ["lab.yaml:6: checks[0].motd.on: no VM named 'vm9'"]


def test_without_the_feature_its_key_is_unknown():
    with pytest.raises(ValidationError) as bad:
        parse_scenario(BASE + 'motd: "hi"\n', "lab.yaml", registry())
    assert "motd: unknown key" in str(bad.value)


def test_registry_order_and_names_are_checked():
    class Needy(Feature):
        name = "needy"
        requires = ("nowhere",)

    with pytest.raises(ValueError, match="requires nowhere"):
        check_order((*default_features(), Needy()))
    with pytest.raises(ValueError, match="registered twice"):
        check_order((*default_features(), default_features()[0]))


def test_two_features_cannot_claim_one_key():
    class Clash(Feature):
        name = "clash"
        model = ModelExtension(sections=(decl("wireguard", str | None, spec("a second wireguard key", default=None)),))

    with pytest.raises(ValueError, match="Scenario.wireguard"):
        compose((*default_features(), Clash()))


def test_the_plan_yaml_gets_each_feature_part_in_registry_order():
    from vnetlab.compose import load_scenario
    from vnetlab.paths import SCENARIOS_DIR

    data = plan_data(make_plan(load_scenario(SCENARIOS_DIR / "container-bridge-nat.yaml"), "x"))
    keys = list(data)
    assert keys.index("vms") < keys.index("nodes") < keys.index("nat") < keys.index("resources")
