"""JSON Schema of scenario files, generated from the model dataclasses and their `spec(...)` metadata.

Generated rather than written by hand so the schema and the loader cannot drift:
a new field, section or kind of check that a feature adds to the composed model
appears here without any edit. Editors
(yaml-language-server) use it for completion and checking; `vnetlab schema` prints it.
Cross-field rules (references, subnet fit, uniqueness) stay in `model.validate`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Union

from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.typed_yaml import yaml_fields, yaml_key

SCHEMA_ID = "https://vnetlab.dev/schema/scenario.schema.json"
PARAM_TEMPLATE = "ParamTemplate"  # a number may be written as a template of params: the loader reads its rendered text as the number
_PARAM_TEMPLATE = {
    "description": "a template of params, e.g. \"{{ params.port }}\" or \"{{ params.mtu - 28 }}\": rendered while the file is read, its text is the number",
    "type": "string",
    "pattern": r"^\s*\{\{[\s\S]*\bparams\b[\s\S]*\}\}\s*$",
}


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    """The field's default as JSON, or MISSING when it has none that JSON can say."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return _asdict_by_key(value)
        return value
    return dataclasses.MISSING


def _asdict_by_key(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {yaml_key(f): _asdict_by_key(getattr(obj, f.name)) for f in yaml_fields(obj)}
    if isinstance(obj, list):
        return [_asdict_by_key(v) for v in obj]
    return obj


def _is_one_of_kinds(cls: type, hints: dict[str, Any]) -> bool:
    """A mapping whose every field is an optional section defaulting to None, of which exactly one is given."""
    fields = dataclasses.fields(cls)
    return bool(fields) and hasattr(cls, "check_shape") and all(
        f.default is None
        and typing.get_origin(hints[f.name]) in (Union, types.UnionType)
        and any(dataclasses.is_dataclass(a) for a in typing.get_args(hints[f.name]))
        for f in fields
    )


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def type_schema(self, tp: Any, meta: typing.Mapping[str, Any]) -> dict:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            # the loader takes YAML null for an optional field; a mapping for the dataclass alternative,
            # a scalar for the first scalar alternative it fits
            nullable = [{"type": "null"}] if type(None) in typing.get_args(tp) else []
            alternatives = [self.type_schema(a, meta) for a in args]
            return {"anyOf": [*(alt for s in alternatives for alt in (s["anyOf"] if set(s) == {"anyOf"} else [s])), *nullable]}
        if dataclasses.is_dataclass(tp):
            return {"$ref": f"#/$defs/{self.define(tp)}"}
        if origin is list:
            item = typing.get_args(tp)[0]
            out: dict[str, Any] = {"type": "array", "items": self.type_schema(item, {})}
            if meta.get("min_items"):
                out["minItems"] = meta["min_items"]
            if meta.get("mapping") and dataclasses.is_dataclass(item):  # also {K: V, …}
                return {"anyOf": [out, self._entries(item, meta)]}
            return out
        if origin is dict:
            names = self.type_schema(str, meta)
            return {"type": "object", "propertyNames": names, "additionalProperties": self.type_schema(typing.get_args(tp)[1], {})}
        if origin is Literal:
            return {"enum": list(typing.get_args(tp))}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int or tp is float:
            out = {"type": "integer" if tp is int else "number"}
            if meta.get("minimum") is not None:
                out["minimum"] = meta["minimum"]
            if meta.get("maximum") is not None:
                out["maximum"] = meta["maximum"]
            self.defs[PARAM_TEMPLATE] = _PARAM_TEMPLATE
            return {"anyOf": [out, {"$ref": f"#/$defs/{PARAM_TEMPLATE}"}]}
        if tp is str:
            out = {"type": "string"}
            if meta.get("pattern") is not None:
                out["pattern"] = f"^(?:{meta['pattern']})$"  # the loader uses re.fullmatch
            if meta.get("max_length") is not None:
                out["maxLength"] = meta["max_length"]
            return out
        raise TypeError(f"no JSON Schema for type hint {tp!r}")

    def _entries(self, item: type, meta: typing.Mapping[str, Any]) -> dict:
        """A list of `item` written as a mapping {key: value, …} (spec(..., mapping=(key, value)))."""
        key, value = meta["mapping"]
        fields = {yaml_key(f): f for f in yaml_fields(item)}
        hints = typing.get_type_hints(item)
        key_field, value_field = fields[key], fields[value]
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.type_schema(hints[value_field.name], value_field.metadata)}
        if hints[key_field.name] is int:
            out["propertyNames"] = {"pattern": "^[0-9]+$"}
        if meta.get("min_items"):
            out["minProperties"] = meta["min_items"]
        return out

    def define(self, cls: type) -> str:
        name = cls.__name__
        if name in self.defs:
            return name
        self.defs[name] = {}  # placeholder: recursive models must not loop
        hints = typing.get_type_hints(cls)
        properties: dict[str, dict] = {}
        required: list[str] = []
        for f in yaml_fields(cls):
            key = yaml_key(f)
            prop = self.type_schema(hints[f.name], f.metadata)
            if f.metadata.get("doc"):
                prop = {"description": f.metadata["doc"], **prop}
            default = _default(f)
            if default is not dataclasses.MISSING:
                prop["default"] = default
            properties[key] = prop
            if _is_required(f):
                required.append(key)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        if cls.__doc__ and not cls.__doc__.startswith(f"{name}("):
            schema["description"] = cls.__doc__.strip().splitlines()[0]
        if _is_one_of_kinds(cls, hints):  # e.g. Check: its check_shape demands exactly one kind per entry
            schema["oneOf"] = [{"required": [k], "properties": {k: {"type": "object"}}} for k in properties]
        self.defs[name] = schema
        return name


def scenario_schema(model: ScenarioModel) -> dict:
    """The JSON Schema (draft 2020-12) of a scenario file of this composed model."""
    builder = _Builder()
    root = builder.define(model.Scenario)
    top = builder.defs.pop(root)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "vnetlab scenario",
        **top,
        "$defs": dict(sorted(builder.defs.items())),
    }


def schema_text(model: ScenarioModel) -> str:
    return json.dumps(scenario_schema(model), indent=2, ensure_ascii=False) + "\n"
