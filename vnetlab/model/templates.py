"""Template variables in users' commands and files: `{{ server.ip }}`, `{{ nodes['web-1'].eth0.address }}`.

Every node by name (VMs and the features' nodes), and `nodes[...]` for names with a dash, has
`.ip` (its first data address, no prefix) and, per interface, `.<nic>.ip`, `.<nic>.address`
(with prefix) and `.<nic>.mac`; `bridges[...]` has `.subnet` and `.gateway`. An undefined name
is an error (StrictUndefined), reported by the model with the line of the template. Templates
are rendered in jinja2's sandbox: a scenario may come from anyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
import jinja2.sandbox

from vnetlab.model.params import ParamError, environment
from vnetlab.model.validate import feature_nodes

MAC_UNKNOWN = "00:00:00:00:00:00"  # the model validates templates before MACs are planned
MAX_RENDERED = 256 * 1024


class TemplateError(ValueError):
    pass


def _environment() -> jinja2.sandbox.SandboxedEnvironment:
    return environment()  # the sandbox with the address filters (host, prefixlen, netmask)


def node_variables(nics: Iterable[tuple[str, str | None, str]]) -> dict[str, Any]:
    """One node: (interface, address with prefix or None, MAC) per interface, in order."""
    out: dict[str, Any] = {}
    for name, cidr, mac in nics:
        out[name] = {"ip": cidr.split("/")[0] if cidr else None, "address": cidr, "mac": mac}
        if "ip" not in out and cidr:
            out["ip"] = cidr.split("/")[0]
    out.setdefault("ip", None)
    return out


def scenario_variables(scenario: Any, macs: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The variables of a scenario; `macs` ((node, interface) → MAC) once the plan has them."""
    macs = macs or {}
    nodes: dict[str, Any] = {}
    for vm in scenario.vms:
        nodes[vm.name] = node_variables((vm.nic_name(j), nic.address, macs.get((vm.name, vm.nic_name(j)), MAC_UNKNOWN)) for j, nic in enumerate(vm.nics))
    for node in feature_nodes(scenario):
        nodes[node.name] = node_variables((iface, cidr, macs.get((node.name, iface), MAC_UNKNOWN)) for iface, cidr in node.nics)
    bridges = {b.name: {"subnet": b.subnet, "gateway": getattr(b, "gateway", None)} for b in scenario.bridges}
    return {**nodes, "nodes": nodes, "bridges": bridges, "params": dict(scenario.param_values)}


def render(template: str, variables: Mapping[str, Any]) -> str:
    """The template with its variables; TemplateError says what is wrong (an undefined name, a syntax error)."""
    if "{{" not in template and "{%" not in template:
        return template
    try:
        text = _environment().from_string(template).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template variable {exc.message} (variables: every node by name, nodes['…'], bridges['…'])") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, ParamError) as exc:
        raise TemplateError(f"template error: {exc}") from None
    if len(text) > MAX_RENDERED:
        raise TemplateError(f"the rendered text is {len(text)} characters long; at most {MAX_RENDERED}")
    return text
