"""Hostile and broken scenarios: every one is a located ValidationError, never a traceback or a lab.

Bad scenarios are generated from a valid one by one mutation each (wrong type, missing field,
unknown key, duplicate, address outside its subnet or in a special range, overlong name,
metacharacters, huge numbers, unicode, broken YAML). Each generated case names the problem it
must cause — the field (path) and a pattern of the message — and the loader must report exactly
that: the expected problems and no other. A mutation that would break something else too (an
address that no longer fits, so a ping check has no common subnet) removes what it would break,
so no case can pass because of another rule. Valid scenarios with odd-but-allowed values are
planned and every rendered domain XML must parse and give back exactly the values that went in.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import ipaddress
import re
import typing
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vnetlab import cli
from vnetlab.compose import parse_scenario, registry
from vnetlab.model.addressing import TOKENS, parse_address, parse_interface
from vnetlab.model.scenario import IFACE_MAX, NAME, RESERVED_IFACES, VM_NAME_MAX
from vnetlab.paths import Layout
from vnetlab.plan.planner import METADATA_NS, PlanOptions, make_plan
from vnetlab.model.typed_yaml import Problem, ValidationError, yaml_key

FILE = "bad.yaml"
LOCATED = re.compile(rf"^{re.escape(FILE)}:\d+: \S")

BASE: dict[str, Any] = {
    "name": "hostile",
    "description": "one line",
    "bridges": [{"name": "br0", "subnet": "10.1.1.0/24"}],
    "vms": [
        {"name": "vm1", "memory": 128, "vcpus": 1, "nics": [{"bridge": "br0", "address": "10.1.1.2/24", "name": "eth0"}]},
        {"name": "vm2", "nics": [{"bridge": "br0", "address": "10.1.1.3/24"}]},
    ],
    "checks": [
        {"ping": {"from": "vm1", "to": "vm2", "count": 3}},
        {"capture": {"bridge": "br0", "between": ["vm1", "vm2"], "expect": ["arp", "icmp-echo"]}},
    ],
    "management": {"subnet": "172.30.255.0/24"},
}

# Paths into BASE by the kind of value they hold.
STRINGS = [
    ("name",), ("description",), ("bridges", 0, "name"), ("bridges", 0, "subnet"), ("vms", 0, "name"),
    ("vms", 0, "nics", 0, "bridge"), ("vms", 0, "nics", 0, "address"), ("vms", 0, "nics", 0, "name"),
    ("checks", 0, "ping", "from"), ("checks", 0, "ping", "to"), ("checks", 1, "capture", "bridge"),
    ("checks", 1, "capture", "between", 0), ("management", "subnet"),
]
INTS = [("vms", 0, "memory"), ("vms", 0, "vcpus"), ("checks", 0, "ping", "count")]
LISTS = [("bridges",), ("vms",), ("vms", 0, "nics"), ("checks",), ("checks", 1, "capture", "between"), ("checks", 1, "capture", "expect")]
MAPPINGS = [("management",), ("bridges", 0), ("vms", 1), ("vms", 0, "nics", 0), ("checks", 0), ("checks", 0, "ping")]
REQUIRED = [
    ("name",), ("bridges",), ("vms",), ("bridges", 0, "name"), ("vms", 0, "name"), ("vms", 1, "nics"),
    ("vms", 0, "nics", 0, "bridge"), ("checks", 0, "ping", "from"), ("checks", 0, "ping", "to"),
    ("checks", 1, "capture", "between"), ("checks", 1, "capture", "expect"),
]
# Fields whose value must be a name (pattern + length); (path, max length).
NAMES = [
    (("bridges", 0, "name"), IFACE_MAX), (("vms", 0, "name"), VM_NAME_MAX), (("vms", 0, "nics", 0, "name"), IFACE_MAX),
    (("vms", 0, "nics", 0, "bridge"), IFACE_MAX), (("checks", 0, "ping", "from"), VM_NAME_MAX), (("name",), 40),
    (("checks", 1, "capture", "bridge"), IFACE_MAX),
]
METACHARACTERS = list("'\"<>&/;$`|\\ \t\n!*?{}[]#%:=,()~^") + ["$(reboot)", "`id`", "]]>", "<!--", "&amp;", "../", "\u00e9", "\u540d", "\U0001f642", "\u200b", "\u0430"]


def put(doc: dict, path: tuple, value: Any) -> None:
    *parents, last = path
    target: Any = doc
    for part in parents:
        target = target[part]
    target[last] = value


def get(doc: dict, path: tuple) -> Any:
    target: Any = doc
    for part in path:
        target = target[part]
    return target


def delete(doc: dict, path: tuple) -> None:
    *parents, last = path
    del get(doc, tuple(parents))[last]


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


class Case(NamedTuple):
    """A bad scenario and the problems it must cause: (field, message pattern) pairs; a pattern
    is matched at the start of the message (re.match), `$` pins its end."""

    text: str
    expected: tuple[tuple[str, str], ...]


def case(doc_or_text: Any, *expected: tuple[str, str]) -> Case:
    return Case(doc_or_text if isinstance(doc_or_text, str) else dump(doc_or_text), tuple(expected))


def field_of(path: tuple) -> str:
    """('vms', 0, 'nics', 0, 'address') → 'vms[0].nics[0].address', as problems name fields."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = part if re.fullmatch(r"[\w-]+", part) else repr(part)  # odd keys are quoted
            out += f".{part}" if out else part
    return out


def unmatched(problems: list[Problem], expected: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, str]], list[str]]:
    """(expected problems nobody reported, reported problems nobody expected)."""
    hits = lambda p, e: p.field == e[0] and re.match(e[1], p.message) is not None  # noqa: E731
    missing = [e for e in expected if not any(hits(p, e) for p in problems)]
    extra = [f"{p.field}: {p.message}" for p in problems if not any(hits(p, e) for e in expected)]
    return missing, extra


def assert_exactly(text: str, expected: tuple[tuple[str, str], ...]) -> list[Problem]:
    """The scenario is refused with the expected problems and no other."""
    try:
        parse_scenario(text, FILE)
    except ValidationError as exc:
        problems = exc.problems
    else:
        raise AssertionError(f"accepted, expected {expected}:\n{text}")
    missing, extra = unmatched(problems, expected)
    assert not missing and not extra, f"expected {missing or expected} — not reported: {missing}; reported besides: {extra}\n{text}"
    return problems


def no_checks(doc: dict) -> dict:
    """Checks read addresses and names too; a case about one field drops them (no second reason to fail)."""
    doc.pop("checks", None)
    return doc


def _yaml_keys() -> set[str]:
    """Every key the scenario language knows, at any depth (an 'unknown' key must be none of them)."""
    keys: set[str] = set()
    todo, seen = [registry().Scenario], set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in dataclasses.fields(cls):
            keys.add(yaml_key(f))
        for hint in typing.get_type_hints(cls).values():
            stack = [hint]
            while stack:
                tp = stack.pop()
                if dataclasses.is_dataclass(tp):
                    todo.append(tp)
                stack.extend(typing.get_args(tp))
    return keys


KNOWN_KEYS = _yaml_keys()
INT_RANGES = {"memory": (64, 4096), "vcpus": (1, 8), "count": (1, 1000)}
SPECIAL = {  # blocks no lab segment may use, as the message names them
    "0.0.0.0/8": "'this network'",
    "127.0.0.0/8": "loopback",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved and broadcast",
}
MGMT = ipaddress.IPv4Network("172.30.255.0/24")


def name_mismatch(name: str) -> str:
    return rf"{re.escape(repr(name))} does not match {re.escape(NAME)} \("

non_strings = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))
non_ints = st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))
scalars = st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.booleans())


@st.composite
def wrong_type(draw) -> Case:
    doc = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["string", "int", "list", "mapping"]))
    if kind == "string":
        path, message = draw(st.sampled_from(STRINGS)), "expected a string, got "
        put(doc, path, draw(non_strings))
    elif kind == "int":
        path, message = draw(st.sampled_from(INTS)), "expected an integer, got "
        put(doc, path, draw(non_ints))
    elif kind == "list":
        path, message = draw(st.sampled_from(LISTS)), "expected a list, got "
        put(doc, path, draw(st.one_of(scalars.filter(lambda v: v is not None), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))))
    else:
        path, message = draw(st.sampled_from(MAPPINGS)), "expected a mapping, got "
        put(doc, path, draw(st.one_of(scalars, st.lists(st.integers(), min_size=1, max_size=2))))
    return case(doc, (field_of(path), re.escape(message)))


@st.composite
def missing_field(draw) -> Case:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(REQUIRED))
    delete(doc, path)
    return case(doc, (field_of(path), r"missing \(expected "))


@st.composite
def unknown_key(draw) -> Case:
    doc = copy.deepcopy(BASE)
    where = draw(st.sampled_from([(), *MAPPINGS]))
    target = get(doc, where)
    # a key YAML gives back as written (PyYAML emits U+0085 and friends raw, and reads them as line breaks)
    key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_KEYS and yaml.safe_load(dump({k: 0})) == {k: 0}))
    target[key] = draw(scalars)
    return case(doc, (field_of((*where, key)), r"unknown key \(expected one of: "))


@st.composite
def duplicate(draw) -> Case:
    doc = copy.deepcopy(BASE)
    which = draw(st.sampled_from(["vm", "bridge", "address", "nic-name", "yaml-key"]))
    if which == "vm":
        doc["vms"][1]["name"] = "vm1"
        return case(no_checks(doc), ("vms[1].name", "duplicate VM name 'vm1'$"))  # checks would name a missing vm2
    if which == "bridge":
        doc["bridges"].append(copy.deepcopy(doc["bridges"][0]))
        return case(doc, ("bridges[1].name", "duplicate bridge name 'br0'$"))
    if which == "address":
        doc["vms"][1]["nics"][0]["address"] = doc["vms"][0]["nics"][0]["address"]
        return case(doc, ("vms[1].nics[0].address", r"10\.1\.1\.2 is already used by vm1 eth0$"))
    if which == "nic-name":
        doc["vms"][0]["nics"].append({"bridge": "br0", "name": "eth0"})
        return case(doc, ("vms[0].nics[1].name", "duplicate interface name 'eth0' in VM 'vm1'$"))
    return case(dump(doc).replace("name: hostile\n", "name: hostile\nname: again\n", 1), ("name", "duplicate key$"))


@st.composite
def misplaced_address(draw) -> Case:
    """A VM's NIC address that no rule may let through. The checks are dropped: a ping between
    addresses that no longer share a subnet would fail for that reason instead."""
    doc = no_checks(copy.deepcopy(BASE))
    k = draw(st.integers(0, 1))
    path = ("vms", k, "nics", 0, "address")
    subnet = ipaddress.IPv4Network("10.1.1.0/24")
    not_an_address = "expected an IPv4 or IPv6 address with prefix like 10.1.1.2/24 or fd00:1::2/64, dhcp or slaac, got "
    choice = draw(st.sampled_from(["outside", "network", "broadcast", "no-prefix", "other-prefix", "ipv6", "garbage", "in-management", "special"]))
    if choice == "outside":
        ip = draw(st.ip_addresses(v=4).filter(lambda a: a not in subnet))
        address, message = f"{ip}/24", rf"{re.escape(f'{ip}/24')} is not in subnet 10\.1\.1\.0/24 of bridge 'br0'$"
    elif choice in ("network", "broadcast"):
        ip = "10.1.1.0" if choice == "network" else "10.1.1.255"
        address, message = f"{ip}/24", rf"{re.escape(ip)} is the network or broadcast address of 10\.1\.1\.0/24$"
    elif choice == "no-prefix":
        address, message = "10.1.1.9", re.escape("10.1.1.9 needs its prefix length: expected an address with prefix like 10.1.1.9/24") + "$"
    elif choice == "other-prefix":
        address = f"10.1.1.9/{draw(st.integers(0, 32).filter(lambda p: p != 24))}"
        message = rf"{re.escape(address)} is not in subnet 10\.1\.1\.0/24 of bridge 'br0'$"
    elif choice == "ipv6":
        address = f"{draw(st.ip_addresses(v=6))}/64"  # on a bridge with an IPv4 subnet only
        message = re.escape(f"{address} is an IPv6 address, but bridge 'br0' has only the IPv4 subnet 10.1.1.0/24") + ".*$"
    elif choice == "garbage":  # a character no IPv4 address/prefix (or netmask) form has, and no IPv6 address or dhcp/slaac either
        address = draw(st.text(min_size=1, max_size=20).filter(lambda t: set(t) - set("0123456789./") and parse_interface(t) is None and parse_address(t) is None and t not in TOKENS))
        message = re.escape(not_an_address)
    elif choice == "in-management":  # the bridge has no subnet: only the management rule can object
        ip = draw(st.ip_addresses(network="172.30.255.0/24").filter(lambda a: str(a) not in ("172.30.255.0", "172.30.255.255")))
        net = ipaddress.IPv4Interface(f"{ip}/{draw(st.integers(16, 24))}").network
        address, message = f"{ip}/{net.prefixlen}", rf"{re.escape(str(net))} overlaps the management subnet 172\.30\.255\.0/24$"
        del doc["bridges"][0]["subnet"]
    else:  # loopback, 'this network', multicast, reserved: the bridge has no subnet to hide behind
        block = draw(st.sampled_from(sorted(SPECIAL)))
        ip = draw(st.ip_addresses(network=block))
        address = f"{ip}/{draw(st.integers(8, 30))}"
        message = rf"{re.escape(f'{ip}/32')} overlaps {re.escape(block)} \({re.escape(SPECIAL[block])} addresses\): not usable on a lab segment$"
        del doc["bridges"][0]["subnet"]
    put(doc, path, address)
    return case(doc, (field_of(path), message))


@st.composite
def misplaced_subnet(draw) -> Case:
    """A bridge's or the management subnet in a range no lab segment may use, or clashing."""
    doc = copy.deepcopy(BASE)
    choice = draw(st.sampled_from(["bridge-special", "bridge-host-bits", "bridge-in-management", "management-special", "management-too-small", "management-host-bits"]))
    if choice in ("bridge-special", "management-special"):
        block = draw(st.sampled_from(sorted(SPECIAL)))
        base = ipaddress.IPv4Network(block)
        net = ipaddress.IPv4Interface(f"{draw(st.ip_addresses(network=block))}/{draw(st.integers(base.prefixlen, 30))}").network
        message = rf"{re.escape(str(net))} overlaps {re.escape(block)} \({re.escape(SPECIAL[block])} addresses\): not usable on a lab segment$"
        if choice == "management-special":
            doc["management"]["subnet"] = str(net)
            return case(doc, ("management.subnet", message))
        for vm in doc["vms"]:  # unaddressed NICs: no address can fail to fit the special subnet
            vm["nics"][0].pop("address")
        doc["bridges"][0]["subnet"] = str(net)
        return case(no_checks(doc), ("bridges[0].subnet", message))
    if choice == "bridge-host-bits":  # the NICs keep their addresses: an unusable subnet constrains nothing
        doc["bridges"][0]["subnet"] = "10.1.1.5/24"
        return case(doc, ("bridges[0].subnet", re.escape("expected an IPv4 or IPv6 network like 10.1.1.0/24 or fd00:1::/64 (host bits zero), got '10.1.1.5/24'") + "$"))
    if choice == "bridge-in-management":
        net = ipaddress.IPv4Network(f"172.30.255.0/{draw(st.integers(16, 24))}", strict=False)
        for vm in doc["vms"]:
            vm["nics"][0].pop("address")
        doc["bridges"][0]["subnet"] = str(net)
        return case(no_checks(doc), ("bridges[0].subnet", rf"{re.escape(str(net))} overlaps the management subnet 172\.30\.255\.0/24 \(change management\.subnet\)$"))
    if choice == "management-too-small":
        doc["management"]["subnet"] = f"172.30.255.0/{draw(st.integers(30, 32))}"
        return case(doc, ("management.subnet", re.escape("too small: needs room for a gateway and every VM (use /24)") + "$"))
    doc["management"]["subnet"] = "172.30.255.1/24"
    return case(doc, ("management.subnet", re.escape("expected an IPv4 network like 172.30.255.0/24, got '172.30.255.1/24'") + "$"))


@st.composite
def bad_name(draw) -> Case:
    doc = copy.deepcopy(BASE)
    path, max_len = draw(st.sampled_from(NAMES))
    valid = get(doc, path)
    how = draw(st.sampled_from(["too-long", "metachar", "uppercase", "leading-digit", "empty", "reserved"]))
    if how == "reserved":  # names the pattern allows but the lab or the guest keeps for itself
        which = draw(st.sampled_from(["lo", "vnl-mgmt", "vnlx", "mgmt0", "nic-lo"]))
        if which in ("mgmt0", "nic-lo"):
            name = "lo" if which == "nic-lo" else "mgmt0"
            put(doc, ("vms", 0, "nics", 0, "name"), name)
            return case(doc, ("vms[0].nics[0].name", f"'{name}' is reserved inside the guest$"))
        doc["bridges"][0]["name"] = which  # and every reference to br0 follows, so only the name is wrong
        for vm in doc["vms"]:
            vm["nics"][0]["bridge"] = which
        doc["checks"][1]["capture"]["bridge"] = which
        if which == "lo":
            return case(doc, ("bridges[0].name", "'lo' is the lab namespace's loopback interface$"))
        return case(doc, ("bridges[0].name", "names starting with 'vnl' are reserved for vnetlab's own devices$"))
    if how == "too-long":
        name = valid + "a" * draw(st.integers(max_len - len(valid) + 1, 300))
    elif how == "metachar":
        at = draw(st.integers(0, len(valid)))
        name = valid[:at] + draw(st.sampled_from(METACHARACTERS)) + valid[at:]
    elif how == "uppercase":
        name = valid.upper()
    elif how == "leading-digit":
        name = "0" + valid
    else:
        name = ""
    put(doc, path, name)
    if len(name) > max_len:
        return case(doc, (field_of(path), rf"{re.escape(repr(name))} is {len(name)} characters long; at most {max_len} allowed$"))
    return case(doc, (field_of(path), name_mismatch(name)))


@st.composite
def hostile_free_text(draw) -> Case:
    """Fields that are not names but must still be addresses, subnets or known targets."""
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from([("checks", 0, "ping", "to"), ("bridges", 0, "subnet"), ("management", "subnet"), ("vms", 1, "nics", 0, "address")]))
    value = get(doc, path) + draw(st.sampled_from(METACHARACTERS)) + draw(st.text(max_size=6))
    assume("{{" not in value and "{%" not in value)  # the start of a template: its syntax is the params' problem (test_params)
    put(doc, path, value)
    message = {
        "to": "expected a VM name or an IPv4 or IPv6 address, got ",
        "subnet": "expected an IPv4 or IPv6 network like 10.1.1.0/24 or fd00:1::/64 (host bits zero), got " if path[0] == "bridges" else "expected an IPv4 network like 172.30.255.0/24, got ",
        "address": "expected an IPv4 or IPv6 address with prefix like 10.1.1.2/24 or fd00:1::2/64, dhcp or slaac, got ",
    }[path[-1]]
    if path[-1] == "address":
        no_checks(doc)  # a ping to vm2 would have no address to reach
    if path[-1] == "to" and ("{{" in get(doc, path) or "{%" in get(doc, path)):
        return case(doc, (field_of(path), r"template (syntax error|variable|error|not allowed)|expected a VM name or an IPv4 or IPv6 address, got "))  # `to:` may be a template
    if path[-1] == "to" and "." in get(doc, path):  # vm2.x reads as NODE.NIC; vm2'.x names a node vm2' that is not there
        return case(doc, (field_of(path), re.escape(message) + r"|'vm2' has no addressed interface named .* \(expected NODE\.NIC like vm2\.eth0; its addressed interfaces: eth0\)$"
                          + r"|no VM named .* \(to: is a node, NODE\.NIC or an IPv4 or IPv6 address\)$"))
    return case(doc, (field_of(path), re.escape(message)))


@st.composite
def huge_number(draw) -> Case:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(INTS))
    lo, hi = INT_RANGES[path[-1]]
    out_of_range = rf"expected an integer from {lo} to {hi}, got -?\d+$"
    value = draw(st.one_of(st.integers(min_value=101), st.integers(max_value=0), st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1])))
    if path[-1] in ("memory", "count"):
        value = value if value > hi or value < lo else 10**9
    text = dump(doc)
    put(doc, path, value)
    if draw(st.booleans()):
        return case(doc, (field_of(path), out_of_range))
    # Literal YAML numbers Python would never produce: 1e400 is a string to YAML 1.1, .inf/.nan
    # floats, 0x/underscore forms integers.
    literal = draw(st.sampled_from(["1e400", "-.inf", ".nan", "0x7fffffffffffffffff", "1_000_000_000_000", "9" * 400]))
    key = path[-1]
    original = f"{key}: {get(BASE, path)}\n"
    assert original in text
    message = {"1e400": "expected an integer, got '1e400'$", "-.inf": "expected an integer, got -inf$", ".nan": "expected an integer, got nan$"}.get(literal, out_of_range)
    return case(text.replace(original, f"{key}: {literal}\n", 1), (field_of(path), message))


NOT_YAML = "not valid YAML: "


def truncated(text: str, cut: int) -> str:
    """The document cut anywhere, then an unclosed flow list: never a complete document."""
    return text[:cut] + "\n  bogus: [\n"


@st.composite
def broken_yaml(draw) -> Case:
    text = dump(BASE)
    how = draw(st.sampled_from(["truncate", "tab", "top-list", "top-scalar", "empty", "python-tag", "recursive-alias", "control-char", "unclosed", "binary-tag", "merge-key", "many-documents"]))
    if how == "truncate":
        return case(truncated(text, draw(st.integers(1, len(text) - 1))), ("", NOT_YAML))
    if how == "tab":
        assert "\n  memory: 128" in text
        return case(text.replace("\n  memory: 128", "\n\tmemory: 128", 1), ("", re.escape(NOT_YAML + "found character '\\t' that cannot start any token") + "$"))
    if how == "top-list":
        return case("- " + text.replace("\n", "\n  "), ("", "expected a mapping, got a list$"))
    if how == "top-scalar":
        scalar = draw(st.sampled_from(["just a string", "42", "~", "true"]))
        return case(scalar + "\n", ("", re.escape(f"expected a mapping, got {scalar!r}") + "$"))
    if how == "empty":
        empty = draw(st.sampled_from(["", "\n", "# only a comment\n", "---\n"]))
        if empty == "---\n":  # an explicit document holding nothing is a null node, not an empty file
            return case(empty, ("", "expected a mapping, got ''$"))
        return case(empty, ("", re.escape("the file is empty (expected a mapping)") + "$"))
    if how == "python-tag":
        return case(text.replace("name: hostile", "name: !!python/object/apply:os.system ['echo pwned']", 1), ("name", "expected a string, got a list$"))
    if how == "recursive-alias":
        return case(text.replace("management:\n  subnet: 172.30.255.0/24\n", "management: &m\n  subnet: *m\n", 1), ("management.subnet", "expected a string, got a mapping$"))
    if how == "control-char":
        return case(text.replace("one line", "one\x07line\x00", 1), ("", re.escape(NOT_YAML + "character 0x0007 is not allowed (control character)") + "$"))
    if how == "unclosed":
        return case(text + "extra: [unclosed\n", ("", re.escape(NOT_YAML + "expected ',' or ']'")))
    if how == "binary-tag":
        return case(text.replace("name: hostile", "name: !!binary aGVsbG8=", 1), ("name", "expected a string, got b'hello'$"))
    if how == "merge-key":  # the loader does not merge: `<<` is just a key nobody knows
        return case(text.replace("management:\n", "management:\n  <<: {subnet: 10.9.9.0/24}\n", 1), ("management.'<<'", re.escape("unknown key (expected one of: subnet)") + "$"))
    return case(text + "---\n" + text, ("", re.escape(NOT_YAML + "but found another document") + "$"))


bad_scenarios = st.one_of(wrong_type(), missing_field(), unknown_key(), duplicate(), misplaced_address(), misplaced_subnet(), bad_name(), hostile_free_text(), huge_number(), broken_yaml())


def test_the_base_scenario_is_valid() -> None:
    """Otherwise every mutation would 'fail' for the base's own reason."""
    parse_scenario(dump(BASE), FILE)
    parse_scenario(dump(no_checks(copy.deepcopy(BASE))), FILE)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_scenarios)
def test_every_bad_scenario_is_exactly_its_located_problem(bad: Case) -> None:
    problems = assert_exactly(bad.text, bad.expected)
    for problem in problems:
        assert LOCATED.match(str(problem)), str(problem)
        assert "Traceback" not in problem.message


@pytest.mark.parametrize("cut", range(1, len(dump(BASE))))
def test_a_document_cut_anywhere_is_not_valid_yaml(cut: int) -> None:
    """Every cut point, not a sample: the truncation case's expectation holds for each."""
    problems = assert_exactly(truncated(dump(BASE), cut), (("", NOT_YAML),))
    assert all(LOCATED.match(str(p)) for p in problems)


def test_each_special_range_is_refused_by_its_own_rule() -> None:
    """One fixed case per block and per place (a VM address with no subnet around it, a bridge
    subnet, the management subnet): each names the block, whatever else is in the scenario."""
    for block, what in SPECIAL.items():
        net = ipaddress.IPv4Network(block)
        ip = str(net.network_address + 5)
        doc = no_checks(copy.deepcopy(BASE))
        del doc["bridges"][0]["subnet"]
        doc["vms"][1]["nics"][0]["address"] = f"{ip}/24"
        assert_exactly(dump(doc), (("vms[1].nics[0].address", re.escape(f"{ip}/32 overlaps {block} ({what} addresses)")),))
        doc = no_checks(copy.deepcopy(BASE))
        doc["bridges"][0]["subnet"] = block
        for vm in doc["vms"]:
            vm["nics"][0].pop("address")
        assert_exactly(dump(doc), (("bridges[0].subnet", re.escape(f"{block} overlaps {block} ({what} addresses)")),))
        doc = copy.deepcopy(BASE)
        doc["management"]["subnet"] = block
        assert_exactly(dump(doc), (("management.subnet", re.escape(f"{block} overlaps {block} ({what} addresses)")),))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def cli_line(path: Path, expected: tuple[str, str]) -> re.Pattern:
    """How the CLI prints one expected problem: `error: FILE:LINE: FIELD: MESSAGE`."""
    field, message = expected
    return re.compile(rf"error: {re.escape(str(path))}:\d+: {re.escape(field or '(top level)')}: (?:{message.removesuffix('$')})")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bad_scenarios)
def test_the_cli_exits_2_with_located_messages(tmp_path: Path, bad: Case) -> None:
    path = tmp_path / FILE
    path.write_text(bad.text, encoding="utf-8")
    code, out, err = run_cli(["plan", str(path)])
    assert code == 2, (out, err)
    assert "Traceback" not in err and "unexpected error" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines and all(line.startswith(f"error: {path}") for line in lines), err
    for expected in bad.expected:
        assert any(cli_line(path, expected).match(line) for line in lines), (expected, err)


SAMPLE = {
    "metachar-vm-name": (lambda d: put(d, ("vms", 0, "name"), "vm1'; reboot #"), ("vms[0].name", name_mismatch("vm1'; reboot #"))),
    "xml-in-bridge": (lambda d: put(d, ("bridges", 0, "name"), "</name><x>"), ("bridges[0].name", name_mismatch("</name><x>"))),
    "huge-memory": (lambda d: put(d, ("vms", 0, "memory"), 10**30), ("vms[0].memory", f"expected an integer from 64 to 4096, got {10**30}$")),
    "outside-subnet": (lambda d: put(d, ("vms", 1, "nics", 0, "address"), "192.168.0.3/24"), ("vms[1].nics[0].address", re.escape("192.168.0.3/24 is not in subnet 10.1.1.0/24 of bridge 'br0'"))),
}


@pytest.mark.parametrize("mutation", SAMPLE, ids=list(SAMPLE))
def test_a_bad_scenario_via_the_real_cli_exits_2_and_builds_nothing(tmp_path: Path, mutation: str) -> None:
    doc = copy.deepcopy(BASE)
    mutate, expected = SAMPLE[mutation]
    mutate(doc)
    path = tmp_path / FILE
    path.write_text(dump(doc))
    lab = f"r-hostile-{mutation[:10]}"
    result = subprocess.run([sys.executable, "-m", "vnetlab.cli", "run", str(path), "--name", lab], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and f"error: {path}:" in result.stderr
    assert any(cli_line(path, expected).match(line) for line in result.stderr.splitlines()), result.stderr
    assert not Layout().lab_dir(lab).exists()


# -- valid scenarios with odd-but-allowed values --------------------------------------------

name_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=8)


def odd_name(max_len: int) -> st.SearchStrategy[str]:
    return st.builds(lambda first, rest: (first + rest)[:max_len], st.sampled_from("abcdefghijklmnopqrstuvwxyz"), name_chars).filter(lambda n: not n.startswith("vnl") and n not in RESERVED_IFACES)


@st.composite
def odd_valid_scenario(draw) -> tuple[str, str, Path]:
    vm_names = draw(st.lists(odd_name(VM_NAME_MAX), min_size=2, max_size=4, unique=True))
    bridge = draw(odd_name(IFACE_MAX))
    prefix = draw(st.integers(16, 29))
    net = ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)) & ~((1 << (32 - prefix)) - 1), prefix))
    mgmt = ipaddress.IPv4Network("172.30.255.0/24")
    if net.is_multicast or net.is_loopback or net.is_reserved or net.overlaps(ipaddress.IPv4Network("0.0.0.0/8")) or net.overlaps(mgmt) or net.num_addresses - 2 < len(vm_names):
        net = ipaddress.IPv4Network("10.77.0.0/16")
    hosts = net.hosts()
    description = draw(st.text(max_size=60).filter(lambda t: "\x00" not in t))
    doc = {
        "name": draw(odd_name(40)),
        "description": description,
        "bridges": [{"name": bridge, "subnet": str(net)}],
        "vms": [{"name": n, "memory": draw(st.integers(64, 4096)), "vcpus": draw(st.integers(1, 8)), "nics": [{"bridge": bridge, "address": f"{next(hosts)}/{net.prefixlen}"}]} for n in vm_names],
        "checks": [{"ping": {"from": vm_names[0], "to": vm_names[1], "count": draw(st.integers(1, 100))}}],
    }
    lab = draw(odd_name(24))
    # A state root with XML and shell metacharacters: the kernel, initrd and console paths carry it.
    root = Path("/tmp") / draw(st.sampled_from(["a'b", 'q"uote', "x<y>&z", "sp ace", "\u540d\u524d", "]]>", "amp&amp;"]))
    return dump(doc), lab, root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_valid_scenario())
def test_odd_but_valid_values_round_trip_through_the_domain_xml(case: tuple[str, str, Path]) -> None:
    text, lab, root = case
    scenario = parse_scenario(text, "odd.yaml")
    layout = Layout(root)
    kernel = root / "images" / "vmlinux"
    plan = make_plan(scenario, lab, PlanOptions("qemu", kernel, layout))
    assert len(plan.vms) == len(scenario.vms)
    for vm in plan.vms:
        dom = ET.fromstring(vm.xml)  # raises on any injection that breaks the document
        assert dom.findtext("name") == vm.domain == f"vnl-{lab}-{vm.name}"
        meta = dom.find(f"metadata/{{{METADATA_NS}}}lab")
        assert meta is not None
        assert (meta.get("name"), meta.get("scenario"), meta.get("vm"), meta.get("namespace")) == (lab, scenario.name, vm.name, f"vnl-{lab}")
        assert dom.findtext("os/kernel") == str(kernel)
        assert dom.findtext("os/initrd") == str(vm.boot.initrd)  # the image's, shared by every guest
        assert dom.find("sysinfo/entry").get("file") == str(vm.secrets) and str(vm.secrets).startswith(str(root))
        assert dom.findtext("os/cmdline") == vm.cmdline
        assert dom.find("devices/serial/log").get("file") == str(vm.console_log)
        assert dom.findtext("memory") == str(next(v.memory for v in scenario.vms if v.name == vm.name))
        interfaces = dom.findall("devices/interface")
        assert [(i.find("mac").get("address"), i.find("target").get("dev")) for i in interfaces] == [(n.mac, n.tap) for n in vm.all_nics]
        assert all(len(n.tap) <= IFACE_MAX for n in vm.all_nics)
    macs = [n.mac for vm in plan.vms for n in vm.all_nics]
    assert len(set(macs)) == len(macs)
