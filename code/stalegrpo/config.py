"""Run configurations: dataclasses that document themselves, a JSON schema derived from them,
and loading from a YAML file plus ``key=value`` overrides.

Each command's configuration is a ``@dataclass`` whose fields carry a one-line docstring
(cleanrl style). :func:`json_schema` turns it into a JSON schema (types, ``Literal`` choices,
bounds from ``field(metadata={"minimum": ...})``, no additional properties), and
:func:`load_config` validates the merged YAML + overrides against that schema before building
the dataclass. A bad key or value raises :class:`ConfigError` naming the key, the file and what
was expected.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration file or override that does not match the schema."""


class _Loader(yaml.SafeLoader):
    """YAML with the YAML 1.2 float rule, so that ``1e-4`` is a float and not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _type_schema(tp) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if dataclasses.is_dataclass(tp):
        return json_schema(tp)
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    if origin is dict or tp is dict:
        return {"type": "object"}
    raise TypeError(f"no JSON schema for field type {tp!r}")


def json_schema(cls) -> dict:
    """The JSON schema of a config dataclass (defaults, choices and bounds included)."""
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        for key in ("minimum", "maximum", "exclusiveMinimum"):
            if key in f.metadata:
                prop[key] = f.metadata[key]
        if f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        properties[f.name] = prop
    return {
        "type": "object",
        "title": cls.__name__,
        "properties": properties,
        "additionalProperties": False,
    }


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), _yaml(raw) if raw.strip() else ""


def _build(cls, data: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            value = _build(tp, value)
        elif isinstance(value, int) and not isinstance(value, bool) and tp is float:
            value = float(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def load_config(cls, path: str | Path | None = None, overrides: typing.Sequence[str] = ()):
    """Build ``cls`` from an optional YAML file and ``key=value`` overrides, validated."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        loaded = _yaml(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
        data = loaded or {}
        source = str(path)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value

    validator = jsonschema.Draft202012Validator(json_schema(cls))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        messages = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path)
            if e.validator == "additionalProperties":
                unknown = sorted(set(e.instance) - set(e.schema["properties"]))
                messages.append(
                    f"unknown key(s) {', '.join(map(repr, unknown))}"
                    + (f" in section {key!r}" if key else "")
                    + f"; valid keys: {', '.join(sorted(e.schema['properties']))}"
                )
            else:
                expected = {k: v for k, v in e.schema.items() if k != "default"}
                messages.append(f"key {key!r} = {e.instance!r} is invalid: expected {expected}")
        raise ConfigError(f"bad configuration ({source}): " + "; ".join(messages))
    return _build(cls, data)


def to_dict(config) -> dict:
    """The plain-dict form of a config, for JSON summaries and checkpoints."""
    return dataclasses.asdict(config)
