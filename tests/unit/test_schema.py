"""The generated JSON Schema and the loader never disagree.

Documents are generated from the schema itself (mostly well-formed, with random
breakage: wrong types, unknown keys, out-of-range values, missing fields), written
as YAML and given to both jsonschema and the loader.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnetlab.compose import load_scenario, registry
from vnetlab.model.validate import validate
from vnetlab.paths import SCHEMA_FILE, scenario_files
from vnetlab.model.schema import PARAM_TEMPLATE, scenario_schema, schema_text
from vnetlab.model.typed_yaml import Problem, ValidationError, load_typed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared golden helper
from goldens import compare_golden  # noqa: E402

COMMITTED = SCHEMA_FILE

# What JSON Schema cannot say, so only the loader checks it. Each is a regex on a problem's message.
LOADER_ONLY = {
    # cross-field rules (model.validate) ------------------------------------------------------
    "references to other entries": r"no (VM|bridge|WireGuard tunnel|routed uplink|uplink|bridge or uplink)\b.* named|no VM, container or host named|is not a member of tunnel",
    "addresses fit their subnets, subnets do not clash": r"is not in (the tunnel's )?subnet|overlaps|too small|network or broadcast address",
    "unique names and addresses": r"duplicate|is already (used by|the name of|an interface|the port of)|are already joined by|clashes with",
    "reserved names": r"reserved|'lo' is the lab namespace's loopback",
    "checks that could prove nothing": r"pinging itself|against itself|two different|has no route|no (IPv[46] )?addressed NICs on a common subnet|has no (IPv[46]-)?(addressed )?NIC on bridge|needs both nodes addressed|no bridge has stp: true",
    "fields that depend on other fields": r"needs (an address|the VM|the bridge's subnet|a gateway|a WireGuard tunnel|a container)|takes no|a gateway needs|device operations work on linux bridges|is judged (between|on)|with via, expected|is too little for a \w+ guest|extra packages need kind: debian|is of type \w+(:|, which takes no)",
    "VLANs: declared on the bridge, access or trunk": r"declares no vlans|is not one of bridge '[^']*''s vlans|has vlans: this NIC needs|expected one of vlan \(an access port\) or trunk|a trunk's own interface stays unaddressed|sub-interface '[^']*' would be longer|share no VLAN|a bridge with vlans has one subnet per VLAN",
    "a bridge in a switch guest: what it cannot have yet, its guest's name": r"in a switch guest|is the name of bridge '[^']*''s switch guest|in: is where a Linux bridge runs",
    "a capture's link: an existing NIC of one of the two": r"link is VM\.NIC|has no NIC named|carries its own frames only",
    "hypervisors: one is this machine, simulated or real, what each needs, what runs elsewhere": (
        r"there is no hypervisors: section|no hypervisor named|exactly one hypervisor must be this machine|cannot share a lab|simulate: true makes|"
        r"expected a qemu\+ssh://|URI parameter|is neither an IP address nor a host name|no host: write|is not a user name|no password in the URI|the path must be /system|no fragment|"
        r"must be an absolute path of letters|no_tty is 0 or 1|the URI has blanks|the port in|the query|needs underlay|this machine needs underlay|simulated hypervisors|shares: are folders of this machine|only Linux bridges are stretched|overlay expectation judges|a mapping of vxlan: settings is for labs|stretches its bridges with VXLAN itself|a stretched bridge runs on each hypervisor|VLANs on a bridge stretched over hypervisors"
    ),
    "exercises: task names and costs, solutions and answers, the intro's file, the time limit": (
        r"reads as a task number|a hint costs .* but the task is worth|has no answer check to give it to|an answer check grades a student's answer|"
        r"is not an answer of its kind|a time limit of no time|an intro of one line ending in \.md is a file|expected exactly one of: run \(with node\), answer|"
        r"run needs node|an answer is given to the task, not run on a node"
    ),
    "params: one kind each, drawn and used (JSON Schema lists the keys, not which go together)": (
        r"unknown param kind|expected exactly one kind of param|subnet-of needs a prefix|expected \[lowest, highest\]|word: true \(or write|"
        r"is too small for a /|param \S+ is used but not defined|found clear of the scenario's other subnets|the scenario's name cannot use params"
    ),
    "IPv6, DHCP and router advertisements: families per NIC and bridge, ranges, what each needs of its bridge": (
        r"at most one per family|expected one of: (subnet, subnets|address, addresses) \(|is an IPv[46] address, but|"
        r"needs (a DHCP server|router advertisements|the bridge's IPv4 subnet|an IPv[46] address)|is not inside subnet|the first address is after the last|"
        r"overlaps static addresses|has no address left for this NIC|is left for the DHCP server|dnsmasq's shortest lease|SLAAC forms addresses in a /64|"
        r"is not the IPv6 subnet|sends the (router )?advertisements|cannot ask the bridge's DHCP server|is judged for (one node|a DHCP client|a node that takes them)|"
        r"expected a VM with a NIC on bridge|subnet-router anycast|not usable on a lab segment|has no IPv6|family \d but"
    ),
    # value formats the model leaves to Python's ipaddress (no regex in the spec) -----------------
    "IPv4 and IPv6 network and address formats": (
        r"expected an IPv4 (or IPv6 )?(network|address|prefix)|expected an IPv6 prefix|expected a VM(, container or host)? name or an IPv4( or IPv6)? address|"
        r"needs its prefix length|expected seconds or a number with s, m, h or d|expected FIRST-LAST"
    ),
    # the host's files, and what needs rendering or compiling (users' own labs) ------------------
    "files and folders on the host": r"no (file|folder) /|outside the scenario's folder|never copies or shares|the host's whole file system|is not a plain absolute path|template: true needs a UTF-8 text file|bytes in all; at most|shares per VM|image file /",
    "Debian package names (checked against apt's rules)": r"not a Debian package name",
    "netem values: units and ranges": r"expected (a duration|a percentage|a rate) like|is out of range \(|expected at least one of: delay, jitter, loss, rate|needs a delay to vary around",
    "templates and regular expressions": r"template (variable|syntax error|error|not allowed|too costly)|not a regular expression|repeats multiply out|the rendered text is|one attempt only",
    # shape rules in check_shape that the generated schema does not express ---------------------
    "exactly two peers / exactly one of two fields": r"expected exactly two (VM|node) names|expected exactly one of: \w+( \(.*\))?, \w+",
    # link faults: the links a check list acts on, and pings that measure a recovery ---------------
    "actions and recoveries": (
        r"state: missing \(expected up or down|state goes with link|no bridge-link joins|a link between bridges is \[br1, br2\]|expected NODE\.NIC|has no interface named|"
        r"is behind a routed uplink|netem impairs a VM NIC|clear takes no|recovery-max-s bounds a measured recovery|a recovery is measured on a ping|cannot see an outage|nothing after this ping acts"
    ),
    "exercise tasks: names, what grades them, what they are worth": (
        r"has no checks: nothing would grade it|reads as a task number: name it with words|a time limit of no time|a hint costs .* at most its points|"
        r"has no answer check to give it to|belongs in an exercise task|is not an answer of its kind|run needs node: the node|an answer is given to the task, not run on a node"
    ),
    "ping targets by NIC or across routers": r"has no (IPv[46] )?addressed interface named|has no (IPv[46] )?address to ping|\(to: is a node, NODE\.NIC or an IPv4( or IPv6)? address\)|has no address: there is no exchange",
}
_LOADER_ONLY_RE = re.compile("|".join(f"(?:{r})" for r in LOADER_ONLY.values()))

SCHEMA = scenario_schema(registry())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# YAML-safe text; no trailing newline: Python's `$` (used by jsonschema) accepts one, ECMA's and re.fullmatch do not
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False, width=32), _TEXT, st.just([]), st.just({}), st.just({"x": 1}))


class Yaml12Booleans(yaml.SafeLoader):
    """As editors read a scenario (YAML 1.2): only true/false are booleans, so a VM's `on:` key
    stays the string "on" (PyYAML's YAML 1.1 would make it True; vnetlab's loader reads keys as written)."""


Yaml12Booleans.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Booleans.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        resolved = SCHEMA["$defs"][ref.rsplit("/", 1)[1]]
        return {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


@st.composite
def document(draw):
    """A scenario-shaped document: fitting the schema, or broken in a few places (one node in `rate`)."""
    rate = draw(st.sampled_from([0, 0, 60, 20]))
    return draw(instance(SCHEMA, rate))


@st.composite
def instance(draw, schema: dict, rate: int, depth: int = 0):
    schema = _resolve(schema)

    def broken() -> bool:
        return rate > 0 and draw(st.integers(0, rate - 1)) == 0

    if depth > 0 and broken():
        return draw(_JUNK)
    if "anyOf" in schema:  # not a template of params: what it renders to is the loader's to judge (LOADER_ONLY's params)
        alternatives = [a for a in schema["anyOf"] if a.get("$ref") != f"#/$defs/{PARAM_TEMPLATE}"]
        return draw(instance(draw(st.sampled_from(alternatives)), rate, depth + 1))
    if "enum" in schema:
        return draw(_TEXT) if broken() else draw(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    if kind == "null":
        return None
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 1000)
        return draw(st.integers(lo - 2, hi + 2) if broken() else st.integers(lo, hi))
    if kind == "number":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 1000)
        lo, hi = (lo - 2, hi + 2) if broken() else (lo, hi)
        return draw(st.one_of(st.integers(lo, hi), st.floats(lo, hi, allow_nan=False, allow_infinity=False)))
    if kind == "string":
        limit = schema.get("maxLength", 30)
        if broken():
            return draw(_TEXT)
        if "pattern" in schema:
            regex = schema["pattern"].removeprefix("^(?:").removesuffix(")$")
            return draw(st.one_of(st.sampled_from(["vm1", "vm2", "br0", "br1"]), st.from_regex(regex, fullmatch=True).filter(lambda s: len(s) <= limit)))
        doc = str(schema.get("description", ""))
        if "subnet" in doc:
            return draw(st.sampled_from(["10.1.1.0/24", "10.1.2.0/24", "10.1.1.1/24", "172.30.255.0/24", "192.168.0.0/30", "10.0.0.0/8"]))
        if "IPv4" in doc:
            return draw(st.sampled_from(["10.1.1.2/24", "10.1.1.3/24", "10.1.2.2/24", "10.1.1.0/24", "10.1.1.3", "10.1.1.2", "vm1", "vm2"]))
        return draw(st.sampled_from(["vm1", "vm2", "br0", "a lab", ""]))
    if kind == "array":
        low = schema.get("minItems", 0)
        if broken():
            low = max(0, low - 1)
        return draw(st.lists(instance(schema["items"], rate, depth + 1), min_size=low, max_size=low + 3))
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:  # entries by name
        numbered = schema.get("propertyNames", {}).get("pattern") == "^[0-9]+$"  # a list written as a mapping {10: …} (vlans, trunk)
        names = draw(st.lists(st.sampled_from(["10", "20", "30"] if numbered else ["hv1", "hv2", "hv3"]) if not broken() else _TEXT, max_size=3, unique=True))
        return {name: draw(instance(schema["additionalProperties"], rate, depth + 1)) for name in names}
    if kind == "object":
        props: dict = schema["properties"]
        required = set(schema.get("required", []))
        if "oneOf" in schema:  # exactly one kind of a one-of-kinds mapping; none or two when broken
            keys = draw(st.lists(st.sampled_from(sorted(props)), max_size=2, unique=True)) if broken() else [draw(st.sampled_from(sorted(props)))]
        else:
            keys = [k for k in props if (k in required and not broken()) or (k not in required and draw(st.booleans()))]
        chosen = {key: draw(instance(props[key], rate, depth + 1)) for key in keys}
        if broken():
            chosen[draw(st.sampled_from(["adress", "nic", "extra"]))] = 1
        return chosen
    raise AssertionError(f"generator does not know {schema}")


def _loader_problems(doc: dict) -> tuple[list[str], list[str]]:
    """(shape problems from loading, cross-field problems from validate) for doc written as YAML,
    each as 'field: message'."""
    shape, cross = _loader_problem_objects(doc)
    return [f"{p.field}: {p.message}" for p in shape], [f"{p.field}: {p.message}" for p in cross]


def _loader_problem_objects(doc: dict) -> tuple[list[Problem], list[Problem]]:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    try:
        located = load_typed(text, registry().Scenario, "gen.yaml")
    except ValidationError as exc:
        return exc.problems, []
    try:
        validate(located.value, "gen.yaml", located.lines)
    except ValidationError as exc:
        return [], exc.problems
    return [], []


def _field(path) -> str:
    """A JSON path (deque of keys and indexes) as the loader names fields: a.b[0].c, odd keys quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = part if re.fullmatch(r"[\w-]+", part) else repr(part)
            out += f".{part}" if out else part
    return out


def _where_the_loader_must_object(error: jsonschema.ValidationError) -> tuple[set[str], bool]:
    """(fields, or_below): where a shape problem must be for this schema error. A missing key or an
    unknown key is the loader's problem at that key; anyOf/oneOf (an optional mapping, one kind of
    check) at the node or inside it; any other keyword (type, pattern, range, length, enum, items)
    exactly at the node."""
    here = _field(error.absolute_path)
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required":
        return {_field([*error.absolute_path, key]) for key in error.validator_value if key not in instance}, False
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        return {_field([*error.absolute_path, key]) for key in instance if key not in known}, False
    if error.validator in ("anyOf", "oneOf", "allOf") or "propertyNames" in error.absolute_schema_path:
        return {here}, True  # an entry's name is the loader's problem at that entry: below the mapping
    return {here}, False


def _objects_at(problems: list[Problem], fields: set[str], or_below: bool) -> bool:
    def under(field: str, top: str) -> bool:
        return field == top or not top or field.startswith(top + ".") or field.startswith(top + "[")

    return any(p.field in fields or (or_below and any(under(p.field, f) for f in fields)) for p in problems)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_every_shipped_scenario_validates_against_the_schema(path):
    load_scenario(path)
    VALIDATOR.validate(yaml.load(path.read_text(), Yaml12Booleans))


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_carries_the_spec_metadata():
    vm = SCHEMA["$defs"]["VM"]
    assert vm["additionalProperties"] is False and vm["required"] == ["name", "nics"]
    assert vm["properties"]["memory"] == {
        "description": "guest RAM in MiB (default: 128 for tiny, 256 for debian, 512 for a file image)",
        "anyOf": [{"type": "integer", "minimum": 64, "maximum": 4096}, {"$ref": f"#/$defs/{PARAM_TEMPLATE}"}, {"type": "null"}],
        "default": None,
    }
    assert vm["properties"]["name"]["maxLength"] == 20 and vm["properties"]["nics"]["minItems"] == 1
    ping = SCHEMA["$defs"]["PingCheck"]
    assert "from" in ping["properties"] and "source" not in ping["properties"]  # YAML key, not the attribute
    assert ping["properties"]["expect"]["enum"] == ["success", "failure", "no-reply"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(document())
def test_schema_and_loader_agree(doc):
    schema_errors = list(VALIDATOR.iter_errors(doc))
    shape, cross = _loader_problem_objects(doc)
    if schema_errors:
        # Not "some problem": a shape problem (the loader's counterpart of a schema rule) where
        # the schema found it, for every schema error.
        reported = [f"{p.field}: {p.message}" for p in shape + cross]
        for error in schema_errors:
            fields, or_below = _where_the_loader_must_object(error)
            assert _objects_at(shape, fields, or_below), (
                f"the schema rejects {_field(error.absolute_path) or '(top level)'} ({error.validator}: {error.message}) but the loader "
                f"reports no shape problem at {sorted(fields)}{' or below' if or_below else ''}; it reports {reported}\n{doc}"
            )
        return
    unexpected = [f"{p.field}: {p.message}" for p in shape + cross if not _LOADER_ONLY_RE.search(f"{p.field}: {p.message}")]
    assert not unexpected, f"the schema accepts but the loader reports a problem the schema could have caught: {unexpected}\n{doc}"


def test_loader_rejects_what_the_schema_rejects_on_known_cases():
    base = yaml.safe_load((scenario_files()[0]).read_text())
    for broken in (
        {**base, "bogus": 1},
        {**base, "vms": []},
        {**base, "name": "Bad Name"},
        {**base, "checks": [{}]},
        {**base, "checks": [{"ping": {"from": "vm1", "to": "vm2"}, "capture": {"bridge": "br0", "between": ["vm1", "vm2"], "expect": ["arp"]}}]},
    ):
        errors = list(VALIDATOR.iter_errors(broken))
        assert errors, broken
        shape, _ = _loader_problem_objects(broken)
        for error in errors:
            assert _objects_at(shape, *_where_the_loader_must_object(error)), (error.message, [str(p) for p in shape])


def test_committed_copy_is_up_to_date():
    """schema/scenario.schema.json is what editors point at; regenerate with VNETLAB_UPDATE_GOLDEN=1
    (that run fails on purpose: review the diff, run again) or `vnetlab schema -o`."""
    text = schema_text(registry())
    assert json.loads(text) == SCHEMA
    compare_golden(COMMITTED, text, parse=json.loads)


def test_vnetlab_schema_prints_it():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "vnetlab", "schema"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout) == SCHEMA
