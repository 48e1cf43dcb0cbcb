"""The feature interface: one module adds one capability to every step of the pipeline.

A feature subclasses `Feature` and overrides only the hooks it needs; every hook has
a default that does nothing. The pipeline (plan, apply, configure, checks, report,
teardown, and explain/graph/inspect) calls the hooks of the features that composed
the scenario's model, in registration order (vnetlab.compose), and never imports a
feature. A feature imports the core, never another feature: what it needs of another
(NAT needs the uplinks of outside hosts) it reads from the scenario or the plan by
name and declares in `requires`.

Hooks, by step:
- model: `model` (a ModelExtension: its scenario keys, rules, nodes, routes, overlays)
- plan: `plan(ctx) -> PlanPart` (its records, namespace nodes, resources), `dump(plan)`
  (its part of `vnetlab plan`'s YAML); `switches` (switch backends for bridge types)
- apply: `apply(plan, ctx)`, recording each resource in the state before it exists; `boot` for
  guests it placed on another hypervisor (and `console` to read their serial logs there);
  `removers` for resource kinds it introduces (teardown works from the state file alone)
- configure: `configure_label(plan)` and `configure(plan, sessions, run_dir)` over SSH
- checks: `check_runners` (kind → runner), `judges` (capture expectation → judge)
- views: `explain(plan)` (sections of commands), `check_commands` (kind → commands),
  `graph(plan, drawing)`, `inspect(plan)` (rows), `summary(results)` (a table under the report)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from vnetlab.model.scenario import ModelExtension

if TYPE_CHECKING:
    from vnetlab.backends.ssh import GuestSSH
    from vnetlab.checks.base import CheckResult, Judge, Runner
    from vnetlab.plan.planner import Plan, PlanContext, PlannedVM, PlanPart
    from vnetlab.run.apply import ApplyContext, SwitchBackend
    from vnetlab.run.state import LabState, RecordedResource
    from vnetlab.tools.explain import Section
    from vnetlab.tools.graph import Drawing
    from vnetlab.tools.inspect import InspectRow

Remover = Callable[["RecordedResource", "LabState", Path], None]  # (resource, state, lab_dir): removes one recorded resource


class Feature:
    """Base class of every feature; all hooks optional."""

    name: str = ""
    requires: tuple[str, ...] = ()  # features that must be registered before this one
    model: ModelExtension = ModelExtension()
    switches: Sequence[SwitchBackend] = ()
    check_runners: Mapping[str, Runner] = {}
    judges: Mapping[str, Judge] = {}
    removers: Mapping[str, Remover] = {}
    check_commands: Mapping[str, Callable[[Plan, Any], list[str]]] = {}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        return None

    def dump(self, plan: Plan) -> dict[str, Any]:
        return {}

    def apply(self, plan: Plan, ctx: ApplyContext) -> None:
        return None

    def boot(self, plan: Plan, state: LabState, conn: Any, vm: PlannedVM) -> bool:
        """Boot a guest this feature placed on another hypervisor (its files, taps and domain, each
        recorded before it exists); False: not one of its guests."""
        return False

    def console(self, plan: Plan, vm: PlannedVM) -> AbstractContextManager[Callable[[], BinaryIO]] | None:
        """How to open a guest's console log when it is not a file on this machine; None: not one of its guests."""
        return None

    def links_of(self, plan: Plan, vm: PlannedVM) -> dict[str, dict] | None:
        """For inspect: the links of the lab namespace a guest it placed on another hypervisor is
        in (name → state, master, addresses), read there; None: not one of its guests."""
        return None

    def configure_label(self, plan: Plan) -> str | None:
        """The progress line of its configure step; None: nothing to configure in this lab."""
        return None

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        """Work in the guests (and namespace nodes) after addressing; output worth keeping goes to run_dir."""
        return None

    def explain(self, plan: Plan) -> Sequence[Section]:
        return ()

    def graph(self, plan: Plan, drawing: Drawing) -> None:
        return None

    def inspect(self, plan: Plan) -> Sequence[InspectRow]:
        return ()

    def summary(self, results: list[CheckResult]) -> Any | None:
        return None

    def __repr__(self) -> str:
        return f"<feature {self.name}>"
