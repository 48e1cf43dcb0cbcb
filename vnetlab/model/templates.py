"""Template variables in users' commands and files: `{{ server.ip }}`, `{{ nodes['web-1'].eth0.address }}`.

Every node by name (VMs and the features' nodes), and `nodes[...]` for names with a dash, has
`.ip` (its first data address, no prefix) and, per interface, `.<nic>.ip`, `.<nic>.address`
(with prefix), `.<nic>.mac` and `.<nic>.port` (the switch port it is plugged into: its port's name
in a switch guest, else the host end, a tap or a veth, that is its bridge's port); `bridges[...]`
has `.subnet` and `.gateway`. An undefined name
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
from vnetlab.model.scenario import feature_nodes

MAC_UNKNOWN = "00:00:00:00:00:00"  # the model validates templates before MACs are planned
PORT_UNKNOWN = "port"  # nor are ports known then (where a bridge runs is decided by the plan)


class TemplateError(ValueError):
    pass


def node_variables(nics: Iterable[tuple[str, str | None, str, str]]) -> dict[str, Any]:
    """One node: (interface, address with prefix or None, MAC, switch port) per interface, in order."""
    out: dict[str, Any] = {}
    for name, cidr, mac, port in nics:
        out[name] = {"ip": cidr.split("/")[0] if cidr else None, "address": cidr, "mac": mac, "port": port}
        if "ip" not in out and cidr:
            out["ip"] = cidr.split("/")[0]
    out.setdefault("ip", None)
    return out


def scenario_variables(scenario: Any, macs: Mapping[tuple[str, str], str] | None = None, ports: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The variables of a scenario; `macs` and `ports` ((node, interface) → MAC, switch port) once the plan has them."""
    macs, ports = macs or {}, ports or {}

    def nic(node: str, iface: str, cidr: str | None) -> tuple[str, str | None, str, str]:
        return iface, cidr, macs.get((node, iface), MAC_UNKNOWN), ports.get((node, iface), PORT_UNKNOWN)

    nodes_: dict[str, Any] = {}
    for vm in scenario.vms:
        nodes_[vm.name] = node_variables(nic(vm.name, vm.nic_name(j), n.address) for j, n in enumerate(vm.nics))
    for node in feature_nodes(scenario):
        nodes_[node.name] = node_variables(nic(node.name, iface, cidr) for iface, cidr in node.nics)
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
