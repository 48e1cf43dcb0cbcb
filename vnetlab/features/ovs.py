"""Open vSwitch bridges (`type: ovs`): a switch backend with daemons private to the lab.

The mechanics (daemons, ovs-vsctl, mirrors) live in vnetlab.backends.ovs; this module
plugs them into the pipeline: the `ovs` bridge type, the daemons and bridges as
resources, their teardown, and the commands `--explain` shows for them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from vnetlab.backends import ovs
from vnetlab.backends.daemon import Records
from vnetlab.features.base import Feature
from vnetlab.model.scenario import ModelExtension
from vnetlab.plan.planner import Plan, PlannedBridge, Resource
from vnetlab.run.state import LabState, RecordedResource


def _paths(plan: Plan) -> ovs.OvsPaths:
    return ovs.OvsPaths(ovs.ovs_dir(plan.lab_dir))


def _vsctl(plan: Plan, args: list[str]) -> str:
    return shlex.join(ovs.vsctl_argv(_paths(plan), *args))


class OvsBackend:
    """The `ovs` switch backend: userspace datapath, a mirror port per bridge for captures."""

    kind = "ovs"
    bridge_resource = "ovs-bridge"

    def capture_port(self, index: int) -> str | None:
        return f"vnlmir{index}"

    def setup_resources(self) -> Sequence[str]:
        return ovs.DAEMONS

    def start(self, plan: Plan, records: Records) -> None:
        ovs.OvsSwitch.for_lab(plan.namespace, plan.lab_dir).start(records)

    def create_bridge(self, plan: Plan, bridge: PlannedBridge) -> None:
        switch = ovs.OvsSwitch.for_lab(plan.namespace, plan.lab_dir)
        switch.create_bridge(bridge.name, bridge.mac)
        if bridge.capture_port:
            switch.add_mirror(bridge.name, bridge.capture_port)

    def attach_port(self, plan: Plan, port: str, bridge: str) -> None:
        ovs.OvsSwitch.for_lab(plan.namespace, plan.lab_dir).attach_port(port, bridge)

    def explain_setup(self, plan: Plan) -> list[str]:
        paths, ns = _paths(plan), plan.namespace
        return [
            "# Open vSwitch, userspace datapath, daemons private to this lab (vnetlab runs them in the foreground",
            "# as its children and records their PIDs; by hand, --detach puts them in the background)",
            shlex.join(["mkdir", "-p", str(paths.dir)]),
            shlex.join(["ovsdb-tool", "create", str(paths.db), str(ovs.SCHEMA)]),
            shlex.join(["ip", "netns", "exec", ns, *ovs.daemon_argv(paths, "ovsdb-server"), "--detach"]),
            _vsctl(plan, ["--no-wait", "init"]),
            shlex.join(["ip", "netns", "exec", ns, *ovs.daemon_argv(paths, "ovs-vswitchd"), "--detach"]),
        ]

    def explain_bridge(self, plan: Plan, b: PlannedBridge) -> list[str]:
        lines = [_vsctl(plan, ovs.bridge_args(b.name, b.mac))]
        if b.capture_port:
            lines += [
                f"# mirror every frame of {b.name} to {b.capture_port}: its own port only sees what is flooded to it",
                _vsctl(plan, ovs.mirror_args(b.name, b.capture_port)),
                shlex.join(["ip", "-n", plan.namespace, "link", "set", b.capture_port, "up"]),
            ]
        return lines

    def explain_attach(self, plan: Plan, port: str, bridge: str) -> list[str]:
        return [_vsctl(plan, ["add-port", bridge, port]), shlex.join(["ip", "-n", plan.namespace, "link", "set", port, "up"])]

    def explain_teardown(self, plan: Plan, resource: Resource) -> list[str]:
        if resource.kind == self.bridge_resource:
            return [_vsctl(plan, ["--if-exists", "del-br", resource.name])]
        return [f"kill $(cat {shlex.quote(str(_paths(plan).pidfile(resource.name)))})"]


def _remove_bridge(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    ovs.OvsSwitch.for_lab(state.namespace, lab_dir).delete_bridge(resource.name)


def _stop_daemon(resource: RecordedResource, state: LabState, lab_dir: Path) -> None:
    ovs.stop_process(lab_dir, resource.name, state.namespace)


class OpenVSwitch(Feature):
    name = "ovs"
    model = ModelExtension(bridge_types=("ovs",))
    switches = (OvsBackend(),)
    removers = {"ovs-bridge": _remove_bridge, "process": _stop_daemon}
