"""Template variables in users' commands and files: `{{ server.ip }}`, `{{ nodes['web-1'].eth0.address }}`.

Every node by name (VMs and the features' nodes), and `nodes[...]` for names with a dash, has
`.ip` (its first IPv4 data address, no prefix; its first IPv6 one when it has no IPv4), `.ip6`
(its first IPv6 address) and, per interface, `.<nic>.ip`, `.<nic>.address` (with prefix),
`.<nic>.ip6`, `.<nic>.address6`, `.<nic>.link_local` (in a lab that uses IPv6), `.<nic>.mac` and
`.<nic>.port` (the switch port it is plugged into: its port's name in a switch guest, else the
host end, a tap or a veth, that is its bridge's port); a DHCP NIC's address is its reservation,
a SLAAC NIC's the one it forms from its MAC (known once the lab is planned); `bridges[...]` has
`.subnet`, `.subnet6` and `.gateway`. An undefined name
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

from vnetlab.model.addressing import UNKNOWN_MAC, bridge_subnets, formed_ipv6, link_local, nic_addresses, parse_interface, uses_ipv6
from vnetlab.model.params import ParamError, environment
from vnetlab.model.sandbox import TooBig
from vnetlab.model.scenario import feature_nodes

MAC_UNKNOWN = UNKNOWN_MAC  # the model validates templates before MACs are planned
PORT_UNKNOWN = "port"  # nor are ports known then (where a bridge runs is decided by the plan)


class TemplateError(ValueError):
    pass


NicVars = tuple[str, "str | None", "str | None", str, "str | None", str]  # (interface, IPv4 with prefix, IPv6 with prefix, MAC, link-local, switch port)


def _ip(cidr: str | None) -> str | None:
    return cidr.split("/")[0] if cidr else None


def node_variables(nics: Iterable[NicVars]) -> dict[str, Any]:
    """One node: (interface, IPv4 with prefix, IPv6 with prefix, MAC, link-local, switch port) per interface, in order."""
    out: dict[str, Any] = {}
    first4 = first6 = None
    for name, v4, v6, mac, ll, port in nics:
        out[name] = {
            "ip": _ip(v4 or v6), "address": v4 or v6, "ip6": _ip(v6), "address6": v6, "mac": mac, "port": port,
            **({"link_local": _ip(ll)} if ll else {}),
        }
        first4, first6 = first4 or _ip(v4), first6 or _ip(v6)
    out.setdefault("ip", first4 or first6)
    out.setdefault("ip6", first6)
    return out


def vm_nic_variables(scenario: Any, vm: Any, macs: Mapping[tuple[str, str], str], ports: Mapping[tuple[str, str], str]) -> list[NicVars]:
    """A VM's NICs as template variables: a SLAAC address formed from the MAC (a placeholder MAC until planned)."""
    prefixes = {b.name: bridge_subnets(b).ipv6 for b in scenario.bridges}
    ipv6 = uses_ipv6(scenario)
    out: list[NicVars] = []
    for j, nic in enumerate(vm.nics):
        key = (vm.name, vm.nic_name(j))
        mac = macs.get(key, MAC_UNKNOWN)
        addrs = nic_addresses(nic)
        v6 = formed_ipv6(addrs, prefixes.get(nic.bridge), mac)
        out.append((vm.nic_name(j), addrs.ipv4.with_prefixlen if addrs.ipv4 else None, v6.with_prefixlen if v6 else None, mac, str(link_local(mac)) if ipv6 else None, ports.get(key, PORT_UNKNOWN)))
    return out


def by_family(cidr: str | None) -> tuple[str | None, str | None]:
    """An address with prefix as (IPv4, IPv6): a feature node's address is one of them."""
    iface = parse_interface(cidr)
    if iface is None:
        return None, None
    return (cidr, None) if iface.version == 4 else (None, cidr)


def scenario_variables(scenario: Any, macs: Mapping[tuple[str, str], str] | None = None, ports: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The variables of a scenario; `macs` and `ports` ((node, interface) → MAC, switch port) once the plan has them."""
    macs, ports = macs or {}, ports or {}
    nodes_: dict[str, Any] = {}
    for vm in scenario.vms:
        nodes_[vm.name] = node_variables(vm_nic_variables(scenario, vm, macs, ports))
    for node in feature_nodes(scenario):
        nodes_[node.name] = node_variables(
            (iface, *by_family(cidr), macs.get((node.name, iface), MAC_UNKNOWN), None, ports.get((node.name, iface), PORT_UNKNOWN)) for iface, cidr in node.nics
        )
    bridges = {
        b.name: {"subnet": str(nets.ipv4) if nets.ipv4 else b.subnet, "subnet6": str(nets.ipv6) if nets.ipv6 else None, "gateway": getattr(b, "gateway", None)}
        for b in scenario.bridges
        for nets in [bridge_subnets(b)]
    }
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
