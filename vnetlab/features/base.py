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
- checks: `check_kinds` (kind → CheckKind: collect → evidence → judge, and its signature on the
  wire), `judges` (capture expectation → judge), `stimuli` (capture expectation → what to do once
  the captures run, so that the traffic it judges happens during the check phase)
- views: `explain(plan)` (sections of commands), `check_commands` (kind → commands),
  `graph(plan, drawing)`, `inspect(plan)` (rows), `summary(results)` (a table under the report),
  `report(plan)` (what the run's report says of its part of the lab once it is configured, e.g.
  the DHCP leases) and `report_lines(data)` (the same for people, under the summary)
- command line: `cli_commands()` (commands of its own, e.g. `vnetlab exercise …`)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from vnetlab.model.scenario import ModelExtension

if TYPE_CHECKING:
    from vnetlab.backends.ssh import GuestSSH
    from vnetlab.checks.base import CheckKind, CheckResult, Judge, Stimulus
    from vnetlab.plan.planner import Plan, PlanContext, PlannedVM, PlanPart
    from vnetlab.run.apply import ApplyContext, SwitchBackend
    from vnetlab.run.state import LabState, RecordedResource
    from vnetlab.tools.explain import Section
    from vnetlab.tools.graph import Drawing
    from vnetlab.tools.inspect import InspectRow

Remover = Callable[["RecordedResource", "LabState", Path], None]  # (resource, state, lab_dir): removes one recorded resource


@dataclass(frozen=True)
class CliContext:
    """What a feature's command gets from the command line: consoles for people (rich), the
    composed scenario model, and a writer for machine output (bytes exactly as given)."""

    out: Any  # rich Console on stdout
    err: Any  # rich Console on stderr
    model: Any  # the composed ScenarioModel (vnetlab.compose.registry())
    write_exact: Callable[[str | bytes], None]


@dataclass(frozen=True)
class CliCommand:
    """A top-level `vnetlab NAME` command a feature adds: `arguments` fills its parser, `run`
    returns the exit code (0 good, 1 failed, 2 bad input; a ValidationError raised is exit 2 with
    its lines, a VnetlabError exit 1 with its message)."""

    name: str
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, CliContext], int]


class Feature:
    """Base class of every feature; all hooks optional."""

    name: str = ""
    requires: tuple[str, ...] = ()  # features that must be registered before this one
    model: ModelExtension = ModelExtension()
    switches: Sequence[SwitchBackend] = ()
    check_kinds: Mapping[str, CheckKind] = {}
    judges: Mapping[str, Judge] = {}
    stimuli: Mapping[str, Stimulus] = {}
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

    def report(self, plan: Plan) -> Mapping[str, Any] | None:
        """JSON for the run's report (`features.<name>`), read from the live lab once it is configured; None: nothing to say."""
        return None

    def report_lines(self, data: Mapping[str, Any]) -> Sequence[str]:
        """What `report` returned, as lines under the run's summary."""
        return ()

    def cli_commands(self) -> Sequence[CliCommand]:
        """Commands of its own on the command line (cli.py adds them; it names no feature)."""
        return ()

    def __repr__(self) -> str:
        return f"<feature {self.name}>"
