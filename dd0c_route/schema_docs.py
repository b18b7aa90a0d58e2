# Tests: tests/test_config.py
"""
The config schema as documentation: one row per key the file may set, read
from the same declarations the walker uses, so ``docs/configuration.md``
cannot describe a key that does not exist (a test compares them).
"""

from __future__ import annotations

import collections.abc
import json
import typing
from typing import Any, Iterator

import attrs

from .schema import ABSENT, Setting, describe_type, dotted, fields_of, setting_of, toml_key, type_hints, unwrap_optional

__all__ = ["markdown_table", "rows"]


def _default_text(field: attrs.Attribute[Any], decl: Setting) -> str:
    if decl.toml_default is not ABSENT and not isinstance(decl.toml_default, collections.abc.Mapping):
        return f"`{json.dumps(decl.toml_default)}` (`{json.dumps(field.default)}` without the table)"
    default = field.default
    factory = getattr(default, "factory", None)
    if isinstance(default, attrs.Factory) and callable(factory):  # type: ignore[arg-type]
        default = factory()
    if default is attrs.NOTHING:
        return "required" if decl.toml else "(the table's key)"
    if default is None:
        return "unset"
    if isinstance(default, tuple) and len(default) > 3:
        return f"{len(default)} entries (see below)"
    if isinstance(default, (str, int, float, bool, tuple, dict)):
        return f"`{json.dumps(default)}`"
    return "see below"


def rows(cls: type, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """``(key, type, default, doc)`` for every key the file may set under ``cls``, nested tables too."""
    hints = type_hints(cls)
    for field in fields_of(cls):
        decl = setting_of(field)
        tp = unwrap_optional(decl.read_as or hints[field.name])
        key = dotted(prefix, toml_key(field))
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if attrs.has(tp):
            if tp is not decl.read_as or decl.required:
                yield key, "table", "required" if decl.required else "", decl.doc
            yield from rows(tp, key)
        elif origin is tuple and attrs.has(args[0]):
            inner = f"{key}.{decl.keyed_by.upper()}" if decl.keyed_by else f"{key}[]"
            yield key, "table of tables" if decl.keyed_by else "array of tables", "", decl.doc
            yield from rows(args[0], inner)
        elif origin is collections.abc.Mapping and attrs.has(args[1]):
            yield key, "table of tables", "", decl.doc
            yield from rows(args[1], f"{key}.NAME")
        else:
            yield key, describe_type(tp, decl.one_or_many), _default_text(field, decl), decl.doc


def markdown_table(cls: type) -> str:
    """The schema of ``cls`` as a Markdown table (docs/configuration.md embeds it)."""
    lines = ["| Key | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for key, kind, default, doc in rows(cls):
        lines.append(f"| `{key}` | {kind} | {default} | {doc} |")
    return "\n".join(lines) + "\n"
