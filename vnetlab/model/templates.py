"""Template variables in users' commands and files: `{{ server.ip }}`, `{{ nodes['web-1'].eth0.address }}`.

Every node by name (VMs and the features' nodes), and `nodes[...]` for names with a dash, has
`.ip` (its first data address, no prefix) and, per interface, `.<nic>.ip`, `.<nic>.address`
(with prefix) and `.<nic>.mac`; `bridges[...]` has `.subnet` and `.gateway`. An undefined name
is an error (StrictUndefined), reported by the model with the line of the template.

Templates come with scenarios and are rendered by root while the scenario is checked: they
render in the bounded sandbox of vnetlab.model.sandbox, set up with the scenario's filters in one
place (vnetlab.model.params.environment); a limit reached, a MemoryError or a RecursionError is a
TemplateError like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2

from vnetlab.model.params import ParamError, environment
from vnetlab.model.sandbox import TooBig
from vnetlab.model.validate import feature_nodes

MAC_UNKNOWN = "00:00:00:00:00:00"  # the model validates templates before MACs are planned


class TemplateError(ValueError):
    pass


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
    nodes_: dict[str, Any] = {}
    for vm in scenario.vms:
        nodes_[vm.name] = node_variables((vm.nic_name(j), nic.address, macs.get((vm.name, vm.nic_name(j)), MAC_UNKNOWN)) for j, nic in enumerate(vm.nics))
    for node in feature_nodes(scenario):
        nodes_[node.name] = node_variables((iface, cidr, macs.get((node.name, iface), MAC_UNKNOWN)) for iface, cidr in node.nics)
    bridges = {b.name: {"subnet": b.subnet, "gateway": getattr(b, "gateway", None)} for b in scenario.bridges}
    return {**nodes_, "nodes": nodes_, "bridges": bridges, "params": dict(scenario.param_values)}


def render(template: str, variables: Mapping[str, Any]) -> str:
    """The template with its variables; TemplateError says what is wrong (an undefined name, a syntax
    error, a limit reached)."""
    if "{{" not in template and "{%" not in template:
        return template
    try:
        return "".join(environment().from_string(template).generate(**variables))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template variable {exc.message} (variables: every node by name, nodes['…'], bridges['…'])") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from None
    except TooBig as exc:
        raise TemplateError(f"template too costly: {exc}") from None
    except MemoryError:
        raise TemplateError("template too costly: it ran out of memory") from None
    except RecursionError:
        raise TemplateError("template too costly: it nests or recurses too deeply") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, ParamError) as exc:
        raise TemplateError(f"template error: {exc}") from None
