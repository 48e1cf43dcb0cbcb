"""Per-student values (`params:`), drawn from the student's id and rendered into the scenario as it is read.

    params:
      net: {subnet-of: 10.0.0.0/8, prefix: 24}   # a /24 inside 10/8
      host2: {range: [10, 250]}
      colour: {choice: [red, green, blue]}
      secret: word                                # or {word: true}: a word from a small list

Each value is drawn from SHA-256 of (scenario name, student id, param name), so the same id
always gives the same values, a teacher recomputes any student's, and adding a param changes
no other. Without a student id the values are those of student `demo`. Subnets drawn from a
parent overlap neither each other nor any subnet or address written in the scenario.

`{{ params.x }}` may appear in any string of the scenario but its name. A string whose
template uses only params is rendered while the file is read, before the model checks it, so
a bridge's subnet or a NIC's address drawn per student is validated with the line it is on;
a string that also names nodes (`{{ vm2.eth0.mac }}`) is rendered later, with the plan's
variables and the params. Filters for addresses: `host(N)` (the N-th address of a subnet, from
the end when negative), `prefixlen`, `netmask`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml

from vnetlab.model.addressing import parse_interface
from vnetlab.model.sandbox import BoundedEnvironment, TooBig
from vnetlab.model.typed_yaml import Problem, ValidationError, convert_section, join_path, node_lines, spec

DEFAULT_STUDENT = "demo"
STUDENT_ID = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"  # e-mail addresses and registration numbers; no blanks or slashes
PARAM_NAME = r"[a-z][a-z0-9_]{0,31}"  # a template names it as params.NAME: an identifier
KINDS = ("range", "choice", "subnet-of", "word")
MAX_PARAMS = 32
MAX_DRAWS = 256  # tries at a subnet clear of the others before saying the parent is too crowded
SEED_VERSION = "vnetlab-params/1"  # part of every seed: a change of the drawing would give every student new values
DEFAULT_MANAGEMENT = ipaddress.IPv4Network("172.30.255.0/24")  # kept clear (vnetlab.model.scenario's default management subnet)
# Short, unambiguous, nothing YAML reads as another type (yes, no, on, off, null …).
WORDS = (
    "amber", "anchor", "apple", "arrow", "badger", "basil", "beacon", "birch", "bison", "cactus", "canyon", "cedar",
    "cobalt", "comet", "coral", "cricket", "delta", "dune", "ember", "falcon", "fern", "fjord", "garnet", "glacier",
    "harbor", "hazel", "heron", "indigo", "island", "jasper", "juniper", "kestrel", "lagoon", "lantern", "lemon", "lotus",
    "maple", "marble", "meadow", "nectar", "nickel", "oasis", "orchid", "otter", "pebble", "pepper", "pine", "quartz",
    "quill", "raven", "reef", "saffron", "salmon", "sierra", "tundra", "tulip", "umber", "velvet", "violet", "walnut",
    "willow", "yarrow", "zephyr", "zinc",
)


@dataclass(frozen=True)
class Param:
    """One per-student value: exactly one kind (range, choice, subnet-of with prefix, word)."""

    range: list[int] | None = spec("[lowest, highest]: an integer between them, both included", default=None, min_items=2)
    choice: list[int | str] | None = spec("one of these values", default=None, min_items=1)
    subnet_of: str | None = spec("a parent IPv4 network, e.g. 10.0.0.0/8: a subnet of it (with prefix)", key="subnet-of", default=None)
    prefix: int | None = spec("with subnet-of: the drawn subnet's prefix length", default=None, minimum=8, maximum=30)
    word: bool | None = spec("true: a word from a small built-in list", default=None)


PARAMS_DOC = "per-student values, drawn from the student id (same id, same values): {range: [a, b]}, {choice: [...]}, {subnet-of: CIDR, prefix: N}, word; used as {{ params.NAME }} anywhere in the scenario"
PARAM_TYPE = Param | Literal["word"]


def params_field() -> tuple[str, Any, Any]:
    return ("params", dict[str, PARAM_TYPE], spec(PARAMS_DOC, default_factory=dict, pattern=PARAM_NAME, max_length=32))


class ParamError(ValueError):
    pass


# -- jinja2: the environment every template of a scenario renders in ------------------------------------


def _host(value: Any, n: Any) -> str:
    """`"10.4.7.0/24" | host(2)` → 10.4.7.2; host(-1) is the last usable address (10.4.7.254)."""
    try:
        net = ipaddress.ip_network(str(value), strict=False)
        index = int(n)
    except (TypeError, ValueError) as exc:
        raise ParamError(f"host(): expected a subnet and a number, got {value!r} and {n!r}: {exc}") from None
    reserved = net.prefixlen < net.max_prefixlen - 1  # a network and a broadcast address to skip
    usable = net.num_addresses - (2 if reserved else 0)
    if index == 0 or abs(index) > usable:
        raise ParamError(f"host({index}): {net} has hosts 1 to {usable} (or -1 to -{usable} from the end)")
    first, last = (net.network_address + 1, net.broadcast_address - 1) if reserved else (net.network_address, net.broadcast_address)
    return str(first + (index - 1) if index > 0 else last + (index + 1))


def _prefixlen(value: Any) -> int:
    return ipaddress.ip_network(str(value), strict=False).prefixlen


def _netmask(value: Any) -> str:
    return str(ipaddress.ip_network(str(value), strict=False).netmask)


FILTERS: dict[str, Callable[..., Any]] = {"host": _host, "prefixlen": _prefixlen, "netmask": _netmask}


def environment() -> BoundedEnvironment:
    """A fresh environment for one rendering: the bounded sandbox (a scenario may come from anyone;
    its budget is this rendering's own), undefined names an error, the address filters."""
    return BoundedEnvironment(FILTERS)


# -- drawing the values --------------------------------------------------------------------------------


def check_student(student: str) -> str:
    if not re.fullmatch(STUDENT_ID, student):
        raise ParamError(f"student id {student!r} is not usable: 1 to 64 letters, digits and . _ @ + - (starting with a letter or digit)")
    return student


def _number(scenario: str, student: str, name: str, attempt: int = 0) -> int:
    digest = hashlib.sha256("\0".join((SEED_VERSION, scenario, student, name, str(attempt))).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _overlaps(net: ipaddress.IPv4Network, taken: list[ipaddress.IPv4Network]) -> bool:
    return any(net.overlaps(t) for t in taken)


def draw(params: dict[str, Any], scenario: str, student: str, literals: list[ipaddress.IPv4Network] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Every param's value for this student, in declaration order. `literals`: networks written in the
    scenario, which drawn subnets keep clear of. ParamError names the param that cannot be drawn."""
    values: dict[str, Any] = {}
    taken = [DEFAULT_MANAGEMENT, *literals]
    for name, p in params.items():
        n = _number(scenario, student, name)
        if p == "word" or (isinstance(p, Param) and p.word):
            values[name] = WORDS[n % len(WORDS)]
        elif p.range is not None:
            low, high = p.range
            values[name] = low + n % (high - low + 1)
        elif p.choice is not None:
            values[name] = p.choice[n % len(p.choice)]
        else:
            parent = ipaddress.IPv4Network(p.subnet_of)
            count = 2 ** (p.prefix - parent.prefixlen)
            for attempt in range(MAX_DRAWS):
                index = _number(scenario, student, name, attempt) % count
                net = ipaddress.IPv4Network((int(parent.network_address) + index * 2 ** (32 - p.prefix), p.prefix))
                if not _overlaps(net, taken):
                    break
            else:
                raise ParamError(f"no /{p.prefix} inside {parent} found clear of the scenario's other subnets in {MAX_DRAWS} draws (give it a larger parent)")
            taken.append(net)
            values[name] = str(net)
    return values


# -- reading `params:` from the YAML nodes, before the rest -------------------------------------------------


def _mapping_items(node: yaml.Node) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and isinstance(key.value, str):
                yield key.value, key, value


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _param_problems(file: str, name: str, node: yaml.Node) -> list[Problem]:
    """Problems the loader's types would word less clearly: an unknown kind, two kinds, a parent too small."""
    path = join_path("params", name)
    if isinstance(node, yaml.ScalarNode):
        return [] if node.value == "word" else [Problem(file, _line(node), path, f"unknown param kind {node.value!r} (kinds: {', '.join(KINDS)})")]
    keys = {key: key_node for key, key_node, _ in _mapping_items(node)}
    problems = [Problem(file, _line(key_node), join_path(path, key), f"unknown param kind {key!r} (kinds: {', '.join(KINDS)}; prefix goes with subnet-of)") for key, key_node in keys.items() if key not in (*KINDS, "prefix")]
    kinds = [k for k in keys if k in KINDS]
    if problems:
        return problems
    if len(kinds) != 1:
        return [Problem(file, _line(node), path, f"expected exactly one kind of param ({', '.join(KINDS)}), got {', '.join(kinds) or 'none'}")]
    if ("prefix" in keys) != (kinds[0] == "subnet-of"):
        return [Problem(file, _line(node), path, "subnet-of needs a prefix (the drawn subnet's length), and only subnet-of takes one")]
    return []


def _semantic_problems(file: str, lines: dict[str, int], params: dict[str, Any]) -> list[Problem]:
    problems = []
    for name, p in params.items():
        path = join_path("params", name)
        if not isinstance(p, Param):
            continue
        if p.range is not None:
            if len(p.range) != 2 or p.range[0] > p.range[1]:
                problems.append(Problem(file, lines.get(f"{path}.range"), f"{path}.range", f"expected [lowest, highest] with lowest ≤ highest, got {p.range}"))
        elif p.subnet_of is not None:
            try:
                parent = ipaddress.IPv4Network(p.subnet_of)
            except ValueError:
                problems.append(Problem(file, lines.get(f"{path}.subnet-of"), f"{path}.subnet-of", f"expected an IPv4 network like 10.0.0.0/8 (host bits zero), got {p.subnet_of!r}"))
                continue
            if p.prefix is not None and p.prefix < parent.prefixlen:
                problems.append(Problem(file, lines.get(f"{path}.prefix"), f"{path}.prefix", f"{parent} is too small for a /{p.prefix}: the prefix must be at least {parent.prefixlen}"))
        elif p.word is False:
            problems.append(Problem(file, lines.get(f"{path}.word"), f"{path}.word", "word: true (or write the param as `NAME: word`)"))
    return problems


def _typed_params(root: yaml.Node, loader: yaml.SafeLoader, file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """`params:` read with the loader's own rules (lines, types), and the lines of its fields."""
    node = next((value for key, _, value in _mapping_items(root) if key == "params"), None)
    if node is None:
        return {}, {}
    problems = [p for name, _, value in _mapping_items(node) for p in _param_problems(file, name, value)]
    if problems:
        raise ValidationError(problems)
    _, tp, field_spec = params_field()
    params = convert_section(node, tp, "params", field_spec.metadata, file, loader)
    if len(params) > MAX_PARAMS:
        raise ValidationError([Problem(file, _line(node), "params", f"{len(params)} params; at most {MAX_PARAMS}")])
    lines = node_lines(node, "params")
    problems = _semantic_problems(file, lines, params)
    if problems:
        raise ValidationError(problems)
    return params, lines


def _scalars(node: yaml.Node, path: str, seen: set[int] | None = None) -> Iterator[tuple[yaml.ScalarNode, str]]:
    """Every scalar under node, each once (an alias is a node already seen: YAML may nest one in itself)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        yield node, path
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            yield from _scalars(child, join_path(path, i), seen)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(value, join_path(path, str(getattr(key, "value", "?"))), seen)


def _literal_networks(root: yaml.Node) -> list[ipaddress.IPv4Network]:
    """Subnets and addresses written out in the scenario (drawn subnets keep clear of them)."""
    out = []
    for node, path in _scalars(root, ""):
        if path.startswith("params"):
            continue  # a parent to draw from is no subnet of the lab
        if isinstance(node.value, str) and "{" not in node.value:
            iface = parse_interface(node.value.strip())
            if isinstance(iface, ipaddress.IPv4Interface):  # drawn subnets are IPv4
                out.append(iface.network)
    return out


def params_used(ast: jinja2.nodes.Template) -> set[str]:
    """The params a template names as params.NAME or params['NAME']."""
    used = {n.attr for n in ast.find_all(jinja2.nodes.Getattr) if isinstance(n.node, jinja2.nodes.Name) and n.node.name == "params"}
    used |= {str(n.arg.value) for n in ast.find_all(jinja2.nodes.Getitem) if isinstance(n.node, jinja2.nodes.Name) and n.node.name == "params" and isinstance(n.arg, jinja2.nodes.Const)}
    return used


@dataclass
class Resolved:
    """What resolve() found: the values drawn, and the scalar nodes it rendered."""

    values: dict[str, Any]
    rendered: set[int]


def resolve(root: yaml.Node, loader: yaml.SafeLoader, file: str, student: str | None) -> Resolved:
    """Draw the params for `student` (None: demo) and render every string whose template uses only
    params; check every other template names only params that exist. ValidationError with lines."""
    params, _ = _typed_params(root, loader, file)
    name_node = next((value for key, _, value in _mapping_items(root) if key == "name"), None)
    scenario = name_node.value if isinstance(name_node, yaml.ScalarNode) and isinstance(name_node.value, str) else ""
    try:
        values = draw(params, scenario, check_student(student or DEFAULT_STUDENT), _literal_networks(root))
    except ParamError as exc:
        raise ValidationError([Problem(file, None, "params", str(exc))]) from None
    env = environment()
    problems: list[Problem] = []
    rendered: set[int] = set()
    seen: set[int] = set()
    for key, _, value in _mapping_items(root):
        for node, path in _scalars(value, key, seen):
            text = node.value
            if not isinstance(text, str) or ("{{" not in text and "{%" not in text):
                continue
            if key in ("params", "name"):
                if key == "name" and "params" in text:
                    problems.append(Problem(file, _line(node), path, "the scenario's name cannot use params: the params are drawn from it"))
                continue
            try:
                ast = env.parse(text)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(Problem(file, _line(node), path, f"template syntax error: {exc.message}"))
                continue
            free = jinja2.meta.find_undeclared_variables(ast)
            if "params" not in free:
                continue
            unknown = sorted(params_used(ast) - set(values))
            if unknown:
                defined = f"params: {', '.join(values)}" if values else "the scenario has no params: section"
                problems.append(Problem(file, _line(node), path, f"param {', '.join(unknown)} is used but not defined ({defined})"))
                continue
            if free != {"params"}:
                continue  # also names nodes: rendered once the lab is planned
            try:
                node.value = environment().from_string(text).render(params=values)  # each rendering its own budget
            except TooBig as exc:
                problems.append(Problem(file, _line(node), path, f"template too costly: {exc}"))
                continue
            except MemoryError:
                problems.append(Problem(file, _line(node), path, "template too costly: it ran out of memory"))
                continue
            except RecursionError:
                problems.append(Problem(file, _line(node), path, "template too costly: it nests or recurses too deeply"))
                continue
            except (jinja2.TemplateError, ParamError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
                problems.append(Problem(file, _line(node), path, f"template error: {exc}"))
                continue
            rendered.add(id(node))
    if problems:
        raise ValidationError(problems)
    return Resolved(values, rendered)
