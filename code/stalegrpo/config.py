"""Run configurations: dataclasses that document themselves, a JSON schema derived from them,
and loading from a YAML file plus ``key=value`` overrides.

Each command's configuration is a ``@dataclass`` whose fields carry a docstring (cleanrl style:
a string literal on the line after the field). :func:`json_schema` turns it into a JSON schema:
types, ``Literal`` choices, defaults, the docstrings as ``description``, no additional
properties, and the bounds of ``field(metadata={...})`` (``minimum``, ``maximum``,
``exclusiveMinimum``, ``exclusiveMaximum``), which for a list field bound each item, plus
``minItems``/``maxItems`` on lists. :func:`describe` renders the same information as text for
``stalegrpo CMD --help``.

:func:`load_config` validates the merged YAML + overrides against that schema before building
the dataclass. A bad key or value raises :class:`ConfigError` naming the key (``a.b`` in a
section, ``a[i]`` for a list item), the file and what was expected. A key that a config class
lists in its ``RENAMED: ClassVar[dict[str, str]]`` (old key → new key, or a phrase completing
"moved to ...") is reported with its new name rather than as unknown.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import re
import textwrap
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

# metadata keys copied into the schema: value bounds (on each item of a list) and list sizes
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
SIZES = ("minItems", "maxItems")


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


def _arrays(prop: dict) -> list[dict]:
    """The array schemas of a property: itself, or its branches for ``list[...] | None``."""
    if prop.get("type") == "array":
        return [prop]
    return [branch for branch in prop.get("anyOf", ()) if branch.get("type") == "array"]


def _add_bounds(prop: dict, f: dataclasses.Field) -> None:
    bounds = {k: f.metadata[k] for k in BOUNDS if k in f.metadata}
    sizes = {k: f.metadata[k] for k in SIZES if k in f.metadata}
    arrays = _arrays(prop)
    if sizes and not arrays:
        raise TypeError(f"field {f.name!r}: {', '.join(sizes)} needs a list type")
    if not arrays:
        prop.update(bounds)
    # on an array, minimum & co. would constrain nothing: they belong to its items
    for array in arrays:
        array["items"].update(bounds)
        array.update(sizes)


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Field name → its docstring (the string literal after the field), whitespace collapsed.

    Read from the source of ``cls`` and of its dataclass bases; empty when the source is not
    available (e.g. a class built with ``make_dataclass``).
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_class_docs(klass))
    return docs


def _class_docs(cls) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _default(f: dataclasses.Field):
    """The field's default value; MISSING for none and for nested sections (they list their own)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return dataclasses.MISSING if dataclasses.is_dataclass(value) else value
    return dataclasses.MISSING


def json_schema(cls) -> dict:
    """The JSON schema of a config dataclass (descriptions, defaults, choices and bounds included)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        _add_bounds(prop, f)
        if docs.get(f.name):
            prop["description"] = docs[f.name]
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        properties[f.name] = prop
    return {
        "type": "object",
        "title": cls.__name__,
        "properties": properties,
        "additionalProperties": False,
    }


def _type_text(tp) -> str:
    """A field type as the help shows it: ``float``, ``{a, b}``, ``list[int] | null``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "{" + ", ".join(map(str, args)) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin in (list, tuple):
        return f"list[{_type_text(args[0]) if args else ''}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _bounds_text(f: dataclasses.Field, is_list: bool) -> str:
    signs = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    signs |= {"minItems": "≥", "maxItems": "≤"}
    parts = [f"{signs[k]} {f.metadata[k]}" for k in BOUNDS if k in f.metadata]
    text = ("items " if is_list and parts else "") + ", ".join(parts)
    sizes = [f"{signs[k]} {f.metadata[k]} items" for k in SIZES if k in f.metadata]
    return ", ".join(filter(None, [text, *sizes]))


def _value_text(value) -> str:
    # as it would be written in the YAML file
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def describe(cls, prefix: str = "", width: int = 100) -> str:
    """Every key of a config dataclass, one entry per key: type, bounds, default and docstring.

    Keys of a nested section are written ``section.key``; ``prefix`` is prepended to all keys
    (``bench.`` for a section given on the command line as ``bench.KEY=VALUE``).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp):
            lines.append(f"{key} (section)" + (f": {docs[f.name]}" if docs.get(f.name) else ""))
            lines.append(describe(tp, f"{key}.", width))
            continue
        is_list = bool(_arrays(_type_schema(tp)))
        default = _default(f)
        facts = [_type_text(tp), _bounds_text(f, is_list)]
        if default is not dataclasses.MISSING:
            facts.append(f"default {_value_text(default)}")
        lines.append(f"{key} ({'; '.join(filter(None, facts))})")
        if docs.get(f.name):
            lines.append(textwrap.fill(docs[f.name], width, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


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


def _key_text(path: typing.Iterable) -> str:
    """A path into the config as the user writes it: ``collapse.kappa``, ``lrs[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _renamed(cls, data: dict, path: tuple = ()) -> dict[tuple, str]:
    """(path of a key given under an old name) → the message for it, nested sections included."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "RENAMED", {})
    section = _key_text(path) + "." if path else ""
    found = {}
    for key, value in data.items():
        if key in fields:
            if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
                found.update(_renamed(hints[key], value, (*path, key)))
        elif key in renamed:
            target = renamed[key]
            # a key name is shown as the new key; anything else says where the key went
            is_key = re.fullmatch(r"[\w.]+", target)
            where = f"renamed to {section + target!r}" if is_key else f"moved to {target}"
            found[(*path, key)] = f"key {section + key!r} was {where}"
    return found


def _expected(e: jsonschema.ValidationError) -> str:
    if e.validator in BOUNDS or e.validator in SIZES or e.validator == "type":
        return f"{e.validator} {e.validator_value!r}"
    if e.validator == "enum":
        return f"one of {e.validator_value!r}"
    return repr({k: v for k, v in e.schema.items() if k not in ("default", "description", "title")})


def _specific(e: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For ``x | None`` (anyOf), the errors of the branch whose type matches the value.

    A bad item of a ``list[float] | None`` is then reported as ``lrs[1]`` against its bound
    rather than as the whole list failing anyOf.
    """
    if e.validator != "anyOf":
        return [e]
    deeper = [c for c in e.context if c.relative_path or c.validator != "type"]
    return [s for c in deeper for s in _specific(c)] if deeper else [e]


def _messages(errors, renamed: dict[tuple, str]) -> list[str]:
    messages = list(renamed.values())
    for e in errors:
        key = _key_text(e.absolute_path)
        if e.validator == "additionalProperties":
            extra = set(e.instance) - set(e.schema["properties"])
            unknown = sorted(k for k in extra if (*e.absolute_path, k) not in renamed)
            if unknown:
                messages.append(
                    f"unknown key(s) {', '.join(map(repr, unknown))}"
                    + (f" in section {key!r}" if key else "")
                    + f"; valid keys: {', '.join(sorted(e.schema['properties']))}"
                )
        else:
            messages.append(f"key {key!r} = {e.instance!r} is invalid: expected {_expected(e)}")
    return messages


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
    errors = [s for e in validator.iter_errors(data) for s in _specific(e)]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    messages = _messages(errors, _renamed(cls, data))
    if messages:
        raise ConfigError(f"bad configuration ({source}): " + "; ".join(messages))
    return _build(cls, data)


def to_dict(config) -> dict:
    """The plain-dict form of a config, for JSON summaries and checkpoints."""
    return dataclasses.asdict(config)
