"""YAML → typed dataclasses, with every problem located by file, line and field.

Lab files are written by hand, often by students: one bad key should produce
`two-vm-ping.yaml:12: vms[1].nics[0].adress: unknown key (expected one of: …)`,
not a traceback. The dataclasses declare their constraints in field metadata
(see `spec`), which also lets the JSON Schema be generated from the same source.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ValidationError(Exception):
    """Raised with every problem found, so a user fixes a file in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def spec(
    doc: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    key: str | None = None,
    pattern: str | None = None,
    max_length: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    min_items: int | None = None,
    mapping: tuple[str, str] | None = None,
) -> Any:
    """A dataclass field carrying its YAML key, documentation and constraints. `mapping` (on a list
    of dataclasses): the list may also be written as a mapping {K: V, …}, read as [{key: K, value: V}, …]
    for mapping = (key, value), e.g. `vlans: {10: 10.0.10.0/24}` for [{vlan: 10, subnet: 10.0.10.0/24}]."""
    meta = {
        "mapping": mapping,
        "doc": doc,
        "key": key,
        "pattern": pattern,
        "max_length": max_length,
        "minimum": minimum,
        "maximum": maximum,
        "min_items": min_items,
    }
    return field(default=default, default_factory=default_factory, metadata=meta)


def yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def yaml_fields(cls: Any) -> list[dataclasses.Field]:
    """The fields a YAML file may set: all but the internal ones (set by the loader, e.g. the source file)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def describe(tp: Any) -> str:
    """Human wording of a type hint, for 'expected …' messages."""
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping of names to entries"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp) if a is not type(None))
    return str(tp)


def join_path(path: str, part: str | int) -> str:
    """The field path of a child: `vms[1]`, `vms[1].nics`, `params.'odd key'`."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    if not re.fullmatch(r"[\w-]+", part):  # a key with blanks, dots, quotes or control characters stays visible
        part = repr(part)
    return f"{path}.{part}" if path else part


class _Converter:
    def __init__(self, file: str, loader: yaml.SafeLoader, rendered: set[int] | None = None):
        self.file = file
        self.loader = loader
        self.problems: list[Problem] = []
        self.rendered = rendered or set()  # ids of scalar nodes whose text a template gave (a number there is a number)
        self.aliases: dict[str, int] = {}  # lines of paths the file spells another way (a list written as a mapping)

    def problem(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(self.file, line, path, message))

    def convert(self, node: yaml.Node, tp: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if self._is_null(node) and type(None) in typing.get_args(tp):
                return None
            if len(args) == 1:
                return self.convert(node, args[0], path, meta)
            return self.convert_alternatives(node, args, path, meta)
        if dataclasses.is_dataclass(tp):
            return self.convert_dataclass(node, tp, path)
        if origin is list:
            return self.convert_list(node, typing.get_args(tp)[0], path, meta)
        if origin is dict:
            return self.convert_named(node, typing.get_args(tp)[1], path, meta)
        return self.convert_scalar(node, tp, path, meta)

    def convert_alternatives(self, node: yaml.Node, args: list[Any], path: str, meta: typing.Mapping[str, Any]) -> Any:
        """`str | Step`, `int | Literal["nonzero"]`, `list[Spec] | Spec`: a mapping takes the dataclass, a
        list the list, a scalar the first alternative it converts to (their problems are kept only if none fits)."""
        if isinstance(node, yaml.MappingNode):
            mapping = next((a for a in args if dataclasses.is_dataclass(a)), None)
            if mapping is not None:
                return self.convert(node, mapping, path, meta)
        if isinstance(node, yaml.SequenceNode):  # `list[Spec] | Spec`: a list takes the list, with its items' own problems
            listed = next((a for a in args if typing.get_origin(a) is list), None)
            if listed is not None:
                return self.convert(node, listed, path, meta)
        for arg in args:
            if dataclasses.is_dataclass(arg):
                continue
            before = len(self.problems)
            value = self.convert(node, arg, path, meta)
            if len(self.problems) == before:
                return value
            del self.problems[before:]
        self.problem(node, path, f"expected {describe(Union[tuple(args)])}, got {self._kind(node)}")
        return None

    def _is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def convert_list(self, node: yaml.Node, item: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if isinstance(node, yaml.MappingNode) and meta.get("mapping") and dataclasses.is_dataclass(item):
            node = self.as_entries(node, path, meta["mapping"])
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, f"expected a list, got {self._kind(node)}")
            return None
        min_items = meta.get("min_items")
        if min_items and len(node.value) < min_items:
            self.problem(node, path, f"expected at least {min_items} item(s), got {len(node.value)}")
        return [self.convert(child, item, join_path(path, i), {}) for i, child in enumerate(node.value)]

    def as_entries(self, node: yaml.MappingNode, path: str, names: tuple[str, str]) -> yaml.SequenceNode:
        """{K: V, …} as the list [{key: K, value: V}, …] it stands for: each entry's fields keep the
        lines of K and V (and the paths `path[i].key`, `path[i].value` find them)."""
        key, value = names
        entries = []
        for i, (k, v) in enumerate(node.value):
            if isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:str" and re.fullmatch(r"[0-9]{1,9}", k.value):
                k = yaml.ScalarNode("tag:yaml.org,2002:int", k.value, k.start_mark, k.end_mark)  # '10': as JSON spells every key
            entry = join_path(path, i)
            self.aliases.update({entry: k.start_mark.line + 1, join_path(entry, key): k.start_mark.line + 1, join_path(entry, value): v.start_mark.line + 1})
            fields = [(yaml.ScalarNode("tag:yaml.org,2002:str", key, k.start_mark, k.end_mark), k), (yaml.ScalarNode("tag:yaml.org,2002:str", value, v.start_mark, v.end_mark), v)]
            entries.append(yaml.MappingNode("tag:yaml.org,2002:map", fields, k.start_mark, v.end_mark))
        return yaml.SequenceNode("tag:yaml.org,2002:seq", entries, node.start_mark, node.end_mark)

    def convert_named(self, node: yaml.Node, item: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
        """`dict[str, Spec]`: entries named by their keys (e.g. `hypervisors: {hv1: {...}}`); the field's
        pattern and max_length apply to the keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping of names to entries, got {self._kind(node)}")
            return None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str" else None
            if not isinstance(key, str):
                self.problem(key_node, path, "names must be plain strings")
                continue
            if key in out:
                self.problem(key_node, join_path(path, key), "duplicate name")
                continue
            self.convert_scalar(key_node, str, join_path(path, key), meta)  # the name's own pattern and length
            out[key] = self.convert(value_node, item, join_path(path, key), {})
        return out

    def convert_dataclass(self, node: yaml.Node, cls: Any, path: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping, got {self._kind(node)}")
            return None
        fields = {yaml_key(f): f for f in yaml_fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        seen: set[str] = set()
        ok = True
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, path, "mapping keys must be plain strings")
                ok = False
                continue
            if key in seen:
                self.problem(key_node, join_path(path, key), "duplicate key")
                ok = False
                continue
            seen.add(key)
            f = fields.get(key)
            if f is None:
                self.problem(key_node, join_path(path, key), "unknown key (expected one of: " + ", ".join(fields) + ")")
                ok = False
                continue
            before = len(self.problems)
            values[f.name] = self.convert(value_node, hints[f.name], join_path(path, key), f.metadata)
            ok = ok and len(self.problems) == before
        for key, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if key not in seen and required:
                self.problem(node, join_path(path, key), f"missing (expected {describe(hints[f.name])}: {f.metadata['doc']})")
                ok = False
        if not ok:
            return None
        obj = cls(**values)
        check = getattr(obj, "check_shape", None)
        if check is not None:
            for message in check():
                self.problem(node, path, message)
        return obj

    def convert_scalar(self, node: yaml.Node, tp: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, path, f"expected {describe(tp)}, got {self._kind(node)}")
            return None
        try:
            value = self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            self.problem(node, path, f"unreadable value: {exc}")
            return None
        if id(node) in self.rendered and isinstance(value, str) and tp in (int, float):
            value = _number(value, tp)
        if typing.get_origin(tp) is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed:
                self.problem(node, path, f"expected one of: {', '.join(map(str, allowed))}; got {value!r}")
                return None
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self.problem(node, path, f"expected true or false, got {value!r}")
                return None
            return value
        if tp is int or tp is float:
            kinds = (int,) if tp is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value)):
                self.problem(node, path, f"expected {describe(tp)}, got {value!r}")
                return None
            lo, hi = meta.get("minimum"), meta.get("maximum")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                self.problem(node, path, f"expected {describe(tp)} from {lo} to {hi}, got {value}")
                return None
            return tp(value)
        if tp is str:
            if not isinstance(value, str):
                self.problem(node, path, f"expected a string, got {value!r}")
                return None
            max_length = meta.get("max_length")
            if max_length is not None and len(value) > max_length:
                self.problem(node, path, f"{value!r} is {len(value)} characters long; at most {max_length} allowed")
                return None
            pattern = meta.get("pattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                self.problem(node, path, f"{value!r} does not match {pattern} ({meta['doc']})")
                return None
            return value
        raise TypeError(f"unsupported type hint {tp!r} at {path}")

    @staticmethod
    def _kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return f"{node.value!r}"


def _number(text: str, tp: type) -> object:
    """A template's rendered text read as the number its field wants; the text itself when it is none."""
    try:
        return tp(text.strip()) if re.fullmatch(r"\s*[-+]?[0-9]{1,18}(\.[0-9]{1,18})?\s*", text) and (tp is float or "." not in text) else text
    except ValueError:
        return text


@dataclass
class Located:
    """A converted object plus the YAML nodes by path, for semantic checks that need a line."""

    value: Any
    lines: dict[str, int]


def _index_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                out.setdefault(join_path(path, str(key_node.value)), key_node.start_mark.line + 1)
                _index_lines(value_node, join_path(path, str(key_node.value)), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _index_lines(child, join_path(path, i), out)


Prepare = Callable[[yaml.Node, yaml.SafeLoader], "set[int]"]  # rewrites the node tree before conversion; returns the ids of the scalars it rendered


def convert_section(node: yaml.Node, tp: Any, path: str, meta: typing.Mapping[str, Any], file: str, loader: yaml.SafeLoader) -> Any:
    """One part of a file converted ahead of the rest (e.g. `params:`, which the rest depends on); ValidationError with lines."""
    converter = _Converter(file, loader)
    value = converter.convert(node, tp, path, meta)
    if converter.problems:
        raise ValidationError(converter.problems)
    return value


def node_lines(node: yaml.Node, path: str) -> dict[str, int]:
    """The line of every field under `node`, by path."""
    lines: dict[str, int] = {}
    _index_lines(node, path, lines)
    return lines


def load_typed(text: str, cls: type, file: str, prepare: Prepare | None = None) -> Located:
    """Parse `text` into `cls`; raise ValidationError listing every problem. `prepare` may rewrite
    the YAML nodes first (their lines stay), e.g. render per-student params into them."""
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects control characters right here
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ValidationError([Problem(file, line, "", f"not valid YAML: character {exc.character:#06x} is not allowed (control character)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ValidationError([Problem(file, line, "", f"not valid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    if node is None:
        raise ValidationError([Problem(file, 1, "", "the file is empty (expected a mapping)")])
    rendered = prepare(node, loader) if prepare is not None else set()
    converter = _Converter(file, loader, rendered)
    value = converter.convert(node, cls, "", {})
    if converter.problems:
        raise ValidationError(converter.problems)
    lines: dict[str, int] = {}
    _index_lines(node, "", lines)
    for path, line in converter.aliases.items():
        lines.setdefault(path, line)
    return Located(value, lines)


def read_text(path: Path) -> str:
    """Read a scenario file, turning OS and encoding errors into a located problem."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError([Problem(str(path), None, "", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise ValidationError([Problem(str(path), None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise ValidationError([Problem(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
