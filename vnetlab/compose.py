"""The composition root: the one place that names every feature.

The registry is the tuple below, in order: a feature's model fields, plan parts,
explain sections and checks appear in this order. `registry()` composes the scenario
model from it once; everything downstream reaches the features through the model
(`scenario.model.features`) and the plan (`plan.features`), never by importing them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from vnetlab.features.base import Feature
from vnetlab.features.commands import Commands
from vnetlab.features.containers import Containers
from vnetlab.features.dhcp import Dhcp
from vnetlab.features.exercise import Exercise
from vnetlab.features.hypervisors import Hypervisors
from vnetlab.features.links import LinkFaults
from vnetlab.features.mtu import Mtu
from vnetlab.features.netem import NetemFeature
from vnetlab.features.nat import Nat
from vnetlab.features.ops import DeviceOps
from vnetlab.features.ovs import OpenVSwitch
from vnetlab.features.perf import Perf
from vnetlab.features.routing import Routing
from vnetlab.features.stp import Stp
from vnetlab.features.switch_guest import SwitchGuestFeature
from vnetlab.features.vlan import Vlan
from vnetlab.features.vxlan import Vxlan
from vnetlab.features.wireguard import WireGuard
from vnetlab.model import validate
from vnetlab.model.scenario import ScenarioModel, compose_model


def default_features() -> tuple[Feature, ...]:
    return (Containers(), Dhcp(), Nat(), Perf(), WireGuard(), OpenVSwitch(), DeviceOps(), Routing(), Mtu(), Stp(), NetemFeature(), LinkFaults(), Vxlan(), Vlan(), SwitchGuestFeature(), Hypervisors(), Commands(), Exercise())


def check_order(features: tuple[Feature, ...]) -> None:
    """Each feature's `requires` must be registered before it; names must be unique."""
    seen: set[str] = set()
    for feature in features:
        if getattr(feature, "check_runners", None):
            raise ValueError(f"feature {feature.name!r} has check_runners: a kind of check is now a CheckKind in check_kinds (collect → evidence → judge; docs/features.md)")
        if feature.name in seen:
            raise ValueError(f"feature {feature.name!r} is registered twice")
        missing = [r for r in feature.requires if r not in seen]
        if missing:
            raise ValueError(f"feature {feature.name!r} requires {', '.join(missing)} to be registered before it")
        seen.add(feature.name)


def compose(features: tuple[Feature, ...]) -> ScenarioModel:
    check_order(features)
    return compose_model((f.model for f in features), features)


@cache
def registry() -> ScenarioModel:
    """The scenario model of vnetlab's own features (immutable, built once)."""
    return compose(default_features())


def parse_scenario(text: str, file: str, student: str | None = None, *, allow_host_paths: bool = False) -> Any:
    return validate.parse_scenario(text, file, registry(), student, allow_host_paths=allow_host_paths)


def load_scenario(path: Path, student: str | None = None, *, allow_host_paths: bool = False) -> Any:
    return validate.load_scenario(path, registry(), student, allow_host_paths=allow_host_paths)
