"""Reading the typed schema (`icegrt_cli.config`): field docs, choice checks, and help.

Field docs are the string literals written under each dataclass field, read from the source
with `ast`, so the one place a setting is explained is beside its default.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

from omegaconf import DictConfig, ListConfig

from icegrt_cli.errors import ConfigError


@cache
def field_docs(schema: type) -> dict[str, str]:
    """{field name: its docstring} for a dataclass, inherited fields included."""
    docs: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        body = ast.parse(inspect.getsource(cls)).body[0]
        statements = getattr(body, "body", [])
        for node, after in zip(statements, statements[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _nested(schema: type, name: str) -> tuple[type | None, str]:
    """The dataclass a field holds, and how: 'one', 'list' (of it), 'dict' (values), or ''."""
    hint = typing.get_type_hints(schema)[name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return hint, "one"
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return args[0], "list"
    if origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], "dict"
    return None, ""


def walk(schema: type, prefix: str = "") -> Iterator[tuple[str, type, dataclasses.Field]]:
    """(dotted key, owning dataclass, field) for every leaf setting of `schema`, depth first.
    A list of dataclasses is walked through its first element's type (`data.sources.0.kind`
    is documented as `data.sources[].kind`)."""
    for item in dataclasses.fields(schema):
        inner, how = _nested(schema, item.name)
        key = f"{prefix}{item.name}"
        if inner is None:
            yield key, schema, item
        else:
            yield from walk(inner, f"{key}{'[]' if how == 'list' else ''}{'.*' * (how == 'dict')}.")


def dataclasses_in(schema: type) -> list[type]:
    """`schema` and every dataclass its fields hold, each once."""
    found = [schema]
    for item in dataclasses.fields(schema):
        inner, _ = _nested(schema, item.name)
        if inner is not None:
            found += [cls for cls in dataclasses_in(inner) if cls not in found]
    return found


def check_choices(cfg: DictConfig | None, schema: type, prefix: str = "") -> None:
    """Raise ConfigError for the first `one_of` field whose value is not among its choices."""
    if cfg is None:
        return
    for item in dataclasses.fields(schema):
        if item.name not in cfg:
            continue
        value, key = cfg[item.name], f"{prefix}{item.name}"
        choices = item.metadata.get("choices")
        if choices is not None and value not in choices:
            shown = " | ".join("null" if c is None else str(c) for c in choices)
            raise ConfigError(f"{key}: '{value}' is not one of {shown}")
        inner, how = _nested(schema, item.name)
        if how == "one":
            check_choices(value, inner, f"{key}.")
        elif how == "list" and isinstance(value, ListConfig):
            for index, element in enumerate(value):
                check_choices(element, inner, f"{key}.{index}.")
        elif how == "dict" and isinstance(value, DictConfig):
            for name in value:
                check_choices(value[name], inner, f"{key}.{name}.")


def default_of(item: dataclasses.Field) -> Any:
    """A field's default value (its factory called), as plain data."""
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> `a.b.c -> value`. A list of plain values stays one value (`eval.tasks`);
    a list of mappings is indexed (`sft.data.sources.0.path`)."""
    if isinstance(node, dict):
        items = [(str(key), value) for key, value in node.items()]
    elif isinstance(node, list) and any(isinstance(item, (dict, list)) for item in node):
        items = [(str(index), value) for index, value in enumerate(node)]
    else:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def value_text(value: Any) -> str:
    """YAML-like text for a config value: `null`, `true`, `0.05`, `''`, `[a, b]`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or "''"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    return str(value)


def settings_help(schema: type, cfg: DictConfig) -> list[str]:
    """One block per section: `key = value` (the composed value, so group choices show) and
    the field's docstring, wrapped under it. Settings of named entries (an eval task's
    `task.NAME.*`) are left to their own config files."""
    lines: list[str] = []
    section = None
    for key, owner, item in walk(schema):
        head = key.split(".")[0] if "." in key else ""
        if "*" in key or item.name == "stage":
            continue
        if head != section:
            section = head
            lines.append("")
        value = _composed(cfg, key)
        lines.append(f"  {key} = {value_text(value)}")
        doc = field_docs(owner).get(item.name, "")
        lines += [f"      {line}" for line in doc.splitlines()]
    return lines


def _composed(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        part = part.removesuffix("[]")
        if part == "*" or node is None:
            return "(per entry)"
        if isinstance(node, ListConfig):
            node = node[0] if len(node) else None
        node = node.get(part) if isinstance(node, DictConfig) else None
    if isinstance(node, ListConfig | DictConfig):
        return "(see conf/)" if len(str(node)) > 60 else node
    return node
