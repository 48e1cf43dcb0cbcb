"""A plan as stable, readable YAML: shown by `vnetlab plan` and pinned by golden tests."""

from __future__ import annotations

import yaml

from vnetlab.features.nat import FORWARD_SYSCTL, ruleset
from vnetlab.plan.planner import Plan


def plan_data(plan: Plan) -> dict:
    return {
        "lab": plan.lab,
        "scenario": plan.scenario.name,
        "namespace": plan.namespace,
        "domain_type": plan.domain_type,
        "lab_dir": str(plan.lab_dir),
        "management_gateway": plan.mgmt_gateway,
        "bridges": [
            {"name": b.name, "type": b.type, "mac": b.mac, **({"address": b.cidr} if b.cidr else {}), **({"capture_port": b.capture_port} if b.capture_port else {})}
            for b in plan.bridges
        ],
        "vms": [
            {
                "name": vm.name,
                "domain": vm.domain,
                "memory_mib": vm.memory,
                "vcpus": vm.vcpus,
                "cmdline": vm.cmdline,
                "nics": [
                    {"guest": n.guest_name, "bridge": n.bridge, "tap": n.tap, "mac": n.mac, "address": n.cidr}
                    for n in vm.all_nics
                ],
            }
            for vm in plan.vms
        ],
        **({"wireguard": [
            {
                "tunnel": w.tunnel,
                "vm": w.vm,
                "address": w.address,
                "listen_port": w.listen_port,
                "private_key": str(w.key_file),
                "peers": [{"vm": p.vm, "endpoint": p.endpoint, "allowed_ips": p.allowed_ips} for p in w.peers],
            }
            for w in plan.wireguard
        ]} if plan.wireguard else {}),
        **({"nodes": [
            {
                "name": n.name,
                "kind": n.kind,
                "namespace": n.namespace,
                "nic": {"name": n.iface, "mac": n.mac, "address": n.cidr, **({"gateway": n.gateway} if n.gateway else {})},
                "veth": {"name": n.veth, "mac": n.veth_mac, **({"bridge": n.bridge} if n.bridge else {"address": n.veth_cidr})},
            }
            for n in plan.nodes
        ]} if plan.nodes else {}),
        **({"nat": {"sysctl": "=".join(FORWARD_SYSCTL), "nft": ruleset(plan.nat).splitlines()}} if plan.nat else {}),
        "resources": [f"{r.kind} {r.name}" + (f" ({r.vm})" if r.vm else "") for r in plan.resources],
    }


def plan_summary(plan: Plan) -> str:
    return yaml.safe_dump(plan_data(plan), sort_keys=False, allow_unicode=True, width=200)
