# Tests: tests/test_config.py, tests/test_config_fuzz.py
"""
A TOML table turned into frozen attrs classes, from declarations on the fields.

Each config class declares, on its attrs fields, everything the file format
needs: the Python type (from the annotation), the default, the checks (attrs
validators built from :data:`Check` functions, so a value built in code is
checked too) and, in :func:`setting`'s metadata, the TOML key, the doc line
and whether the value is a secret.  One walker, :func:`build`, reads a table
into such a class: every unknown key, wrong type and failed check becomes a
:class:`ConfigError` naming the dotted key (``routing.rules[0].match.tools``,
``prices."gpt-4.1".input``).  Rules that relate several objects stay in the
caller, hand written.

Secrets: a type error never shows a value (only its TOML type), checks on a
``secret`` field are written not to, and the walker removes the raw value
from any message about that field as a last guard.
"""

from __future__ import annotations

import collections.abc
import json
import math
import re
import typing
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, Union

import attrs

from .secret import Secret

__all__ = [
    "ABSENT",
    "Check",
    "ConfigError",
    "Fill",
    "Invalid",
    "Setting",
    "build",
    "describe_type",
    "dotted",
    "fields_of",
    "setting",
    "setting_of",
    "toml_key",
    "type_hints",
    "unwrap_optional",
]

T = TypeVar("T")

Check = Callable[[Any], None]
"""A per-field check: returns when the value is good, raises :class:`Invalid`."""

Fill = Callable[[dict[str, Any], Mapping[str, Any], str], None]
"""
A class's contextual defaults: given the values read so far, the raw table and
its dotted key, fill in what depends on context (a name, the environment).
"""

_METADATA_KEY = "dd0c_route.setting"
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
_MAX_SEGMENT = 100
_BARE_SEGMENT = re.compile(r"[A-Za-z0-9_:-]+")


class ConfigError(Exception):
    """
    The configuration is wrong; the message names the key and the problem.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


class Invalid(ValueError):
    """
    A check failed.  ``problem`` is in words, without a secret's value;
    ``field`` (set by the validator) is the attribute, ``None`` for a rule on
    the whole table; ``sub`` locates an item inside the value (an index or a
    mapping key).
    """

    def __init__(self, problem: str, *sub: Union[int, str], field: Optional[str] = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.sub = sub
        self.field = field

    def inside(self, *outer: Union[int, str]) -> Invalid:
        """The same failure, one container further out."""
        return Invalid(self.problem, *outer, *self.sub, field=self.field)


@attrs.frozen
class Setting:
    """What the file format knows about one attribute (see :func:`setting`)."""

    doc: str
    key: Optional[str] = None
    secret: bool = False
    toml: bool = True
    required: bool = False
    toml_default: Any = ABSENT
    read_as: Any = None
    convert: Optional[Callable[[Any], Any]] = None
    one_or_many: bool = False
    keyed_by: Optional[str] = None


def _validator(check: Check) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        try:
            check(value)
        except Invalid as error:
            raise Invalid(error.problem, *error.sub, field=attribute.name) from None

    return validate


def setting(
    default: Any = attrs.NOTHING,
    *,
    doc: str,
    check: Union[Check, tuple[Check, ...]] = (),
    factory: Optional[Callable[[], Any]] = None,
    converter: Optional[Callable[[Any], Any]] = None,
    repr: Union[bool, Callable[[Any], str]] = True,  # attrs's own name
    kw_only: bool = False,
    **meta: Any,
) -> Any:
    """
    An attrs field that the walker can read from TOML.

    ``meta`` are :class:`Setting` options: ``key`` (the TOML name when it is
    not the attribute's), ``secret``, ``toml=False`` (given by the parent, not
    read), ``required`` (must be in the file although code may omit it),
    ``toml_default`` (a raw TOML value read when the key is absent),
    ``read_as`` + ``convert`` (the file's shape, turned into the attribute's),
    ``one_or_many`` (a string is a one-item list), ``keyed_by`` (a table of
    tables whose keys fill that attribute of each item).
    """
    checks = check if isinstance(check, tuple) else (check,)
    return attrs.field(
        default=attrs.Factory(factory) if factory is not None else default,
        validator=attrs.validators.and_(*(_validator(c) for c in checks)) if checks else None,
        converter=converter,
        repr=repr,
        kw_only=kw_only,
        metadata={_METADATA_KEY: Setting(doc=doc, **meta)},
    )


def setting_of(field: attrs.Attribute[Any]) -> Setting:
    """The declaration on ``field`` (a plain attrs field reads as a bare setting)."""
    found = field.metadata.get(_METADATA_KEY)
    return found if isinstance(found, Setting) else Setting(doc="")


def toml_key(field: attrs.Attribute[Any]) -> str:
    return setting_of(field).key or field.name


def dotted(prefix: str, segment: Union[int, str]) -> str:
    """
    ``prefix`` extended by a table key or an array index, readable as TOML.

    A key is quoted when it would make the path ambiguous (a dot in
    ``gpt-4.1``, a space, an empty key) and shortened when it is long: the key
    of a hostile file must not make the message unreadable.
    """
    if isinstance(segment, int):
        return f"{prefix}[{segment}]"
    text = segment if len(segment) <= _MAX_SEGMENT else segment[:_MAX_SEGMENT] + "…"
    if not _BARE_SEGMENT.fullmatch(text):
        text = json.dumps(text, ensure_ascii=False)
    return f"{prefix}.{text}" if prefix else text


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls`` (string annotations need its module's names)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, collections.abc.Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def describe_type(tp: Any, one_or_many: bool = False) -> str:
    """``tp`` in the words an operator knows from TOML."""
    tp = unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Union:
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        many = f"array of {describe_type(item)}s"
        return f"{describe_type(item)} or {many}" if one_or_many else many
    if origin is collections.abc.Mapping or origin is dict:
        return f"table of {describe_type(typing.get_args(tp)[1])}s"
    if attrs.has(tp):
        return "table"
    return {
        str: "string", int: "integer", float: "number", bool: "boolean",
        Decimal: "decimal", Secret: "string (secret)",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _scalar(tp: Any, value: Any) -> Any:
    """``value`` as ``tp``, or raise :class:`Invalid` naming only its TOML type."""
    wrong = Invalid(f"must be {_article(describe_type(tp))}, not {_toml_type(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is str or tp is Secret:
        if not isinstance(value, str):
            raise wrong
        return Secret(value) if tp is Secret else value
    if isinstance(value, bool):
        raise wrong
    if tp is int:
        if not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        if not isinstance(value, (int, float)):
            raise wrong
        try:
            number = float(value)
        except OverflowError:
            raise Invalid("must be a finite number (it is too large)") from None
        if not math.isfinite(number):
            raise Invalid("must be a finite number")
        return number
    if tp is Decimal:
        if not isinstance(value, (int, float, str)):
            raise wrong
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise Invalid("must be a decimal number (such as 1.25 or \"1.25\")") from None
        if not amount.is_finite():
            raise Invalid("must be a finite number")
        return amount
    raise TypeError(f"no TOML reading for {tp!r}")


def _article(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _read(tp: Any, value: Any, key: str, decl: Setting, fill: Mapping[type, Fill]) -> Any:
    tp = unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        return build(tp, value, key, fill=fill)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if decl.keyed_by is not None:
            table = _table(value, key)
            return tuple(
                build(item, entry, dotted(key, name), given={decl.keyed_by: name}, fill=fill)
                for name, entry in table.items()
            )
        if decl.one_or_many and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(key, f"must be {_article(describe_type(tp, decl.one_or_many))}, not {_toml_type(value)}")
        return tuple(_read(item, v, dotted(key, i), Setting(doc=""), fill) for i, v in enumerate(value))
    if origin is collections.abc.Mapping or origin is dict:
        item = typing.get_args(tp)[1]
        table = _table(value, key)
        return {name: _read(item, v, dotted(key, name), Setting(doc=""), fill) for name, v in table.items()}
    if origin is Union:
        for alternative in typing.get_args(tp):
            try:
                return _scalar(alternative, value)
            except Invalid:
                continue
        raise ConfigError(key, f"must be {_article(describe_type(tp))}, not {_toml_type(value)}")
    try:
        return _scalar(tp, value)
    except Invalid as error:
        raise ConfigError(key, error.problem) from None


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, collections.abc.Mapping):
        raise ConfigError(key or "(top level)", f"must be a table, not {_toml_type(value)}")
    return value


def fields_of(cls: type) -> Iterator[attrs.Attribute[Any]]:
    """The fields of ``cls`` that the file sets."""
    for field in attrs.fields(cls):
        if setting_of(field).toml:
            yield field


def build(
    cls: type[T],
    value: Any,
    path: str = "",
    *,
    given: Optional[Mapping[str, Any]] = None,
    fill: Optional[Mapping[type, Fill]] = None,
) -> T:
    """
    Read the TOML table ``value`` (found at ``path``) into ``cls``.

    ``given`` are attributes the parent knows (a table's key); ``fill`` maps a
    class to its contextual defaults (see :data:`Fill`).
    """
    fill = fill or {}
    table = _table(value, path)
    by_key = {toml_key(f): f for f in fields_of(cls)}
    for name in table:
        if name not in by_key:
            raise ConfigError(
                dotted(path, name), "unknown key (allowed: " + ", ".join(sorted(by_key)) + ")"
            )
    hints = type_hints(cls)
    values: dict[str, Any] = dict(given or {})
    for key, field in by_key.items():
        decl = setting_of(field)
        if key in table:
            raw = table[key]
        elif decl.toml_default is not ABSENT:
            raw = decl.toml_default
        else:
            continue
        read = _read(decl.read_as or hints[field.name], raw, dotted(path, key), decl, fill)
        values[field.name] = _checked(cls, field, read, path, table)
    if cls in fill:
        fill[cls](values, table, path)
    for key, field in by_key.items():
        decl = setting_of(field)
        if field.name not in values and (decl.required or field.default is attrs.NOTHING):
            raise ConfigError(dotted(path, key), "is required")
    try:
        return cls(**values)
    except Invalid as error:
        raise _located(cls, error, path, table) from None


def _checked(cls: type, field: attrs.Attribute[Any], value: Any, path: str, table: Mapping[str, Any]) -> Any:
    """
    ``value`` converted and checked as the field declares, now: a bad value
    is reported before a missing one that a contextual default would need.
    """
    decl = setting_of(field)
    if decl.convert is not None:
        value = decl.convert(value)
    if callable(field.converter):
        value = field.converter(value)
    if field.validator is not None:
        try:
            field.validator(None, field, value)
        except Invalid as error:
            raise _located(cls, error, path, table) from None
    return value


def _located(cls: type, error: Invalid, path: str, table: Mapping[str, Any]) -> ConfigError:
    key = path
    problem = error.problem
    if error.field is not None:
        field = attrs.fields_dict(cls)[error.field]
        decl = setting_of(field)
        if decl.toml:
            key = dotted(path, toml_key(field))
            raw = table.get(toml_key(field))
            if decl.secret and isinstance(raw, str) and raw:
                problem = problem.replace(raw, "***")
    for segment in error.sub:
        key = dotted(key, segment)
    return ConfigError(key or "(top level)", problem)

