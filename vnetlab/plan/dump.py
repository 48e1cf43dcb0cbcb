"""A plan as stable, readable YAML: shown by `vnetlab plan` and pinned by golden tests."""

from __future__ import annotations

import yaml

from vnetlab.model.params import DEFAULT_STUDENT
from vnetlab.plan.planner import Plan


def plan_data(plan: Plan) -> dict:
    return {
        "lab": plan.lab,
        "scenario": plan.scenario.name,
        **({"student": plan.scenario.student or DEFAULT_STUDENT, "params": dict(plan.scenario.param_values)} if plan.scenario.param_values else {}),
        "namespace": plan.namespace,
        "domain_type": plan.domain_type,
        "lab_dir": str(plan.lab_dir),
        "management_gateway": plan.mgmt_gateway,
        "bridges": [
            {"name": b.name, "type": b.type, "mac": b.mac, **({"address": b.cidr} if b.cidr else {}), **({"capture_port": b.capture_port} if b.capture_port else {}), **({"in_guest": b.guest} if b.guest else {})}
            for b in plan.bridges
        ],
        "vms": [
            {
                "name": vm.name,
                **({"role": vm.role} if vm.role != "vm" else {}),
                "domain": vm.domain,
                "image": vm.image.label(),
                "memory_mib": vm.memory,
                "vcpus": vm.vcpus,
                **({"cmdline": vm.cmdline} if vm.cmdline else {}),
                **({"disk": str(vm.disk), "base_disk": str(vm.boot.disk)} if vm.disk and vm.boot else {}),
                **({"seed": str(vm.seed)} if vm.seed else {}),
                "nics": [
                    {
                        "guest": n.guest_name, "bridge": n.bridge, **({"port_of": n.attach} if n.attach else {}), "tap": n.tap, "mac": n.mac, "address": n.cidr,
                        **({"dhcp": True} if n.dhcp else {}), **({"address6": n.cidr6} if n.cidr6 else {}), **({"slaac": True} if n.slaac else {}),
                        **({"link_local": n.link_local} if n.link_local else {}),
                    }
                    for n in vm.all_nics
                ],
            }
            for vm in plan.vms
        ],
        **{key: value for feature in plan.features for key, value in feature.dump(plan).items()},
        "resources": [f"{r.kind} {r.name}" + (f" ({r.vm})" if r.vm else "") for r in plan.resources],
    }


def plan_summary(plan: Plan) -> str:
    """YAML that loads back as the plan data: no line folding (a long kernel command line or path stays whole)."""
    return yaml.safe_dump(plan_data(plan), sort_keys=False, allow_unicode=True, width=float("inf"))
