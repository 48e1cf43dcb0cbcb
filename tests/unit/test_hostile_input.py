"""Hostile and broken scenarios: every one is a located ValidationError, never a traceback or a lab.

Bad scenarios are generated from a valid one by one mutation each (wrong type, missing field,
unknown key, duplicate, address outside its subnet, overlong name, metacharacters, huge
numbers, unicode, broken YAML). Valid scenarios with odd-but-allowed values are planned and
every rendered domain XML must parse and give back exactly the values that went in.
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnetlab import cli
from vnetlab.compose import parse_scenario
from vnetlab.model.scenario import IFACE_MAX, RESERVED_IFACES, VM_NAME_MAX
from vnetlab.paths import Layout
from vnetlab.plan.planner import METADATA_NS, PlanOptions, make_plan
from vnetlab.model.typed_yaml import ValidationError

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


non_strings = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))
non_ints = st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))
scalars = st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.booleans())


@st.composite
def wrong_type(draw) -> str:
    doc = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["string", "int", "list", "mapping"]))
    if kind == "string":
        put(doc, draw(st.sampled_from(STRINGS)), draw(non_strings))
    elif kind == "int":
        put(doc, draw(st.sampled_from(INTS)), draw(non_ints))
    elif kind == "list":
        put(doc, draw(st.sampled_from(LISTS)), draw(st.one_of(scalars.filter(lambda v: v is not None), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))))
    else:
        put(doc, draw(st.sampled_from(MAPPINGS)), draw(st.one_of(scalars, st.lists(st.integers(), min_size=1, max_size=2))))
    return dump(doc)


@st.composite
def missing_field(draw) -> str:
    doc = copy.deepcopy(BASE)
    delete(doc, draw(st.sampled_from(REQUIRED)))
    return dump(doc)


@st.composite
def unknown_key(draw) -> str:
    doc = copy.deepcopy(BASE)
    where = draw(st.sampled_from([(), *MAPPINGS]))
    target = get(doc, where)
    key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in target and k not in {"from", "to", "count", "expect", "via"}))
    target[key] = draw(scalars)
    return dump(doc)


@st.composite
def duplicate(draw) -> str:
    doc = copy.deepcopy(BASE)
    which = draw(st.sampled_from(["vm", "bridge", "address", "nic-name", "yaml-key"]))
    if which == "vm":
        doc["vms"][1]["name"] = "vm1"
    elif which == "bridge":
        doc["bridges"].append(copy.deepcopy(doc["bridges"][0]))
    elif which == "address":
        doc["vms"][1]["nics"][0]["address"] = doc["vms"][0]["nics"][0]["address"]
    elif which == "nic-name":
        doc["vms"][0]["nics"].append({"bridge": "br0", "name": "eth0"})
    else:
        return dump(doc).replace("name: hostile\n", "name: hostile\nname: again\n", 1)
    return dump(doc)


@st.composite
def misplaced_address(draw) -> str:
    doc = copy.deepcopy(BASE)
    subnet = ipaddress.IPv4Network("10.1.1.0/24")
    choice = draw(st.sampled_from(["outside", "network", "broadcast", "no-prefix", "other-prefix", "ipv6", "garbage", "in-management", "special"]))
    if choice == "outside":
        ip = draw(st.ip_addresses(v=4).filter(lambda a: a not in subnet))
        address = f"{ip}/24"
    elif choice == "network":
        address = "10.1.1.0/24"
    elif choice == "broadcast":
        address = "10.1.1.255/24"
    elif choice == "no-prefix":
        address = "10.1.1.9"
    elif choice == "other-prefix":
        address = f"10.1.1.9/{draw(st.integers(0, 32).filter(lambda p: p != 24))}"
    elif choice == "ipv6":
        address = f"{draw(st.ip_addresses(v=6))}/64"
    elif choice == "garbage":
        address = draw(st.text(min_size=1, max_size=20).filter(lambda t: not re.fullmatch(r"10\.1\.1\.\d+/24", t)))
    elif choice == "in-management":
        address = "172.30.255.9/24"
        doc["bridges"][0]["subnet"] = "172.30.255.0/24"
    else:  # loopback, 'this network', multicast, reserved: no subnet to hide behind
        special = draw(st.sampled_from(["127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]))
        ip = draw(st.ip_addresses(network=special).filter(lambda a: str(a) not in ("127.0.0.0", "224.0.0.0")))
        address = f"{ip}/{draw(st.integers(8, 30))}"
        del doc["bridges"][0]["subnet"]
        if draw(st.booleans()):
            doc["bridges"][0]["subnet"] = str(ipaddress.IPv4Interface(address).network)
    put(doc, ("vms", draw(st.integers(0, 1)), "nics", 0, "address"), address)
    return dump(doc)


@st.composite
def bad_name(draw) -> str:
    doc = copy.deepcopy(BASE)
    path, max_len = draw(st.sampled_from(NAMES))
    valid = get(doc, path)
    how = draw(st.sampled_from(["too-long", "metachar", "uppercase", "leading-digit", "empty", "reserved"]))
    if how == "too-long":
        name = valid + "a" * draw(st.integers(max_len - len(valid) + 1, 300))
    elif how == "metachar":
        at = draw(st.integers(0, len(valid)))
        name = valid[:at] + draw(st.sampled_from(METACHARACTERS)) + valid[at:]
    elif how == "uppercase":
        name = valid.upper()
    elif how == "leading-digit":
        name = "0" + valid
    elif how == "reserved":
        name = {("bridges", 0, "name"): "lo", ("vms", 0, "nics", 0, "name"): "mgmt0"}.get(path, "")
        if not name:
            path, name = ("bridges", 0, "name"), draw(st.sampled_from(["lo", "vnl-mgmt", "vnlx"]))
    else:
        name = ""
    put(doc, path, name)
    return dump(doc)


@st.composite
def hostile_free_text(draw) -> str:
    """Fields that are not names but must still be addresses, subnets or known targets."""
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from([("checks", 0, "ping", "to"), ("bridges", 0, "subnet"), ("management", "subnet"), ("vms", 1, "nics", 0, "address")]))
    put(doc, path, get(doc, path) + draw(st.sampled_from(METACHARACTERS)) + draw(st.text(max_size=6)))
    return dump(doc)


@st.composite
def huge_number(draw) -> str:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(INTS))
    value = draw(st.one_of(st.integers(min_value=101), st.integers(max_value=0), st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1])))
    if path[-1] == "memory":
        value = value if value > 4096 or value < 64 else 10**9
    text = dump(doc)
    put(doc, path, value)
    if draw(st.booleans()):
        return dump(doc)
    # Literal YAML numbers Python would never produce: 1e400 is inf, 0x/0o forms, underscores.
    literal = draw(st.sampled_from(["1e400", "-.inf", ".nan", "0x7fffffffffffffffff", "1_000_000_000_000", "9" * 400]))
    key = path[-1]
    original = f"{key}: {get(BASE, path)}\n"
    assert original in text
    return text.replace(original, f"{key}: {literal}\n", 1)


@st.composite
def broken_yaml(draw) -> str:
    text = dump(BASE)
    how = draw(st.sampled_from(["truncate", "tab", "top-list", "top-scalar", "empty", "python-tag", "recursive-alias", "control-char", "unclosed", "binary-tag", "merge-key", "many-documents"]))
    if how == "truncate":
        cut = draw(st.integers(1, len(text) - 1))
        text = text[:cut]
        # a cut that still yields a complete, valid document is not broken
        try:
            parse_scenario(text, FILE)
        except ValidationError:
            return text
        return text + "\n  bogus: [\n"
    if how == "tab":
        assert "\n  memory: 128" in text
        return text.replace("\n  memory: 128", "\n\tmemory: 128", 1)
    if how == "top-list":
        return "- " + text.replace("\n", "\n  ")
    if how == "top-scalar":
        return draw(st.sampled_from(["just a string\n", "42\n", "~\n", "true\n"]))
    if how == "empty":
        return draw(st.sampled_from(["", "\n", "# only a comment\n", "---\n"]))
    if how == "python-tag":
        return text.replace("name: hostile", "name: !!python/object/apply:os.system ['echo pwned']", 1)
    if how == "recursive-alias":
        return text.replace("management:\n  subnet: 172.30.255.0/24\n", "management: &m\n  subnet: *m\n", 1)
    if how == "control-char":
        return text.replace("one line", "one\x07line\x00", 1)
    if how == "unclosed":
        return text + "extra: [unclosed\n"
    if how == "binary-tag":
        return text.replace("name: hostile", "name: !!binary aGVsbG8=", 1)
    if how == "merge-key":
        return text.replace("management:\n", "management:\n  <<: {subnet: 10.9.9.0/24}\n", 1)
    return text + "---\n" + text


bad_scenarios = st.one_of(wrong_type(), missing_field(), unknown_key(), duplicate(), misplaced_address(), bad_name(), hostile_free_text(), huge_number(), broken_yaml())


def test_the_base_scenario_is_valid() -> None:
    """Otherwise every mutation would 'fail' for the base's own reason."""
    parse_scenario(dump(BASE), FILE)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_scenarios)
def test_every_bad_scenario_is_a_located_validation_error(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_scenario(text, FILE)
    problems = caught.value.problems
    assert problems
    for problem in problems:
        assert LOCATED.match(str(problem)), str(problem)
        assert "Traceback" not in problem.message


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bad_scenarios)
def test_the_cli_exits_2_with_located_messages(tmp_path: Path, text: str) -> None:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["plan", str(path)])
    assert code == 2, (out, err)
    assert "Traceback" not in err and "unexpected error" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines and all(line.startswith(f"error: {path}") for line in lines), err


SAMPLE = {
    "metachar-vm-name": lambda d: put(d, ("vms", 0, "name"), "vm1'; reboot #"),
    "xml-in-bridge": lambda d: put(d, ("bridges", 0, "name"), "</name><x>"),
    "huge-memory": lambda d: put(d, ("vms", 0, "memory"), 10**30),
    "outside-subnet": lambda d: put(d, ("vms", 1, "nics", 0, "address"), "192.168.0.3/24"),
}


@pytest.mark.parametrize("mutation", SAMPLE, ids=list(SAMPLE))
def test_a_bad_scenario_via_the_real_cli_exits_2_and_builds_nothing(tmp_path: Path, mutation: str) -> None:
    doc = copy.deepcopy(BASE)
    SAMPLE[mutation](doc)
    path = tmp_path / FILE
    path.write_text(dump(doc))
    lab = f"r-hostile-{mutation[:10]}"
    result = subprocess.run([sys.executable, "-m", "vnetlab.cli", "run", str(path), "--name", lab], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and f"error: {path}:" in result.stderr
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
        assert dom.findtext("os/initrd") == str(vm.initrd) and str(vm.initrd).startswith(str(root))
        assert dom.findtext("os/cmdline") == vm.cmdline
        assert dom.find("devices/serial/log").get("file") == str(vm.console_log)
        assert dom.findtext("memory") == str(next(v.memory for v in scenario.vms if v.name == vm.name))
        interfaces = dom.findall("devices/interface")
        assert [(i.find("mac").get("address"), i.find("target").get("dev")) for i in interfaces] == [(n.mac, n.tap) for n in vm.all_nics]
        assert all(len(n.tap) <= IFACE_MAX for n in vm.all_nics)
    macs = [n.mac for vm in plan.vms for n in vm.all_nics]
    assert len(set(macs)) == len(macs)
