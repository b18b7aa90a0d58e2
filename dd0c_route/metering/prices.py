# Tests: tests/test_prices.py
"""
What tokens cost: a versioned price table, and exact Decimal arithmetic on it.

The default table is package data (``prices.toml``), list prices as of the
date it records.  Two checks guard it at load, for two different failures:

* a **schema check** (every entry has exactly the four prices, each a finite,
  non-negative Decimal with at most 6 decimals, and
  ``cached_input <= input <= cache_write``; aliases point at entries) catches
  an edit that is wrong — a missing field, a typo'd key, swapped columns;
* a **pinned sha256** of the file catches an edit that is *unreviewed*: the
  table that prices a bill must be exactly the one this code release was
  reviewed with, so that ``version`` + ``sha256`` in a usage record name the
  prices used, and a price change is a deliberate two-line diff.

Operators change prices through ``with_overrides`` (config), never by editing
the installed file.  An unknown model has no price: ``None``, never zero,
so that unpriced usage stays visible instead of looking free.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import hashlib
import re
import tomllib
import types
from decimal import Decimal
from importlib import resources
from itertools import chain
from typing import Any, Mapping, Optional, Union

import attrs
from zope.interface import implementer

from dd0c_route.metering.interfaces import IPriceTable
from dd0c_route.metering.model_names import normalize_model

__all__ = [
    "DEFAULT_TABLE_SHA256",
    "PRICE_FIELDS",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "PriceValue",
]

DEFAULT_TABLE_SHA256 = "507c9abd28b740a6ebf17abe60910f70754d8b3b98e65dfd6dd533b6da3a5743"
"""sha256 of ``prices.toml`` as reviewed; update together with the file."""

PRICE_FIELDS: tuple[str, ...] = ("input", "output", "cached_input", "cache_write")

PriceValue = Union[str, int, float, Decimal]
"""What an override may give for a price: parsed exactly, floats via repr."""

_DATA_FILE = "prices.toml"
_MAX_DECIMALS = 6
_MAX_TOKENS = 10**15
_MILLION_EXPONENT = -6
_COST_QUANTUM = Decimal(1).scaleb(_MILLION_EXPONENT - _MAX_DECIMALS)
_EXACT = decimal.Context(
    prec=60,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow],
)
# Prices have <= 6 decimals and token counts < 1e15, so every cost is exact at
# 1e-12 USD in 60 digits; the Inexact trap turns any violation of that
# reasoning into an error instead of a silently rounded bill.

_DATED_SUFFIX = re.compile(r"(?:-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview|v\d+(?::\d+)?))+")


class PriceTableError(ValueError):
    """The price data (shipped or overridden) is malformed; nothing was loaded."""


def _to_price(model: str, field: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise PriceTableError(
            f"A price must be a decimal string or number: model={model!r} field={field!r} type={type(value).__name__}"
        )
    try:
        price = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except decimal.InvalidOperation:
        raise PriceTableError(
            f"A price must be a decimal number: model={model!r} field={field!r} value={value!r}"
        ) from None
    if not price.is_finite() or price < 0:
        raise PriceTableError(
            f"A price must be finite and non-negative: model={model!r} field={field!r} value={value!r}"
        )
    exponent = price.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -_MAX_DECIMALS and price != price.quantize(Decimal(1).scaleb(-_MAX_DECIMALS)):
        raise PriceTableError(
            f"A price per million tokens may have at most {_MAX_DECIMALS} decimals: "
            f"model={model!r} field={field!r} value={value!r}"
        )
    return price


def _price_key(model: str) -> str:
    """
    ``normalize_model``, except that fine-tunes stay fine-tunes.

    OpenAI bills a fine-tuned model above its base model, so
    ``ft:gpt-4o-mini-2024-07-18:org::id`` must not take gpt-4o-mini's price:
    it is keyed ``ft:gpt-4o-mini-2024-07-18`` and is unknown unless config
    prices ``ft:gpt-4o-mini``.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        return "ft:" + normalize_model(name)
    return normalize_model(name)


def _check_price(instance: Any, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    _to_price(getattr(instance, "model", "?"), attribute.name, value)


def _check_tokens(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_TOKENS:
        raise ValueError(f"A token count must be an int between 0 and {_MAX_TOKENS}: {name}={value!r}")


@attrs.frozen
class ModelPrice:
    """One model's prices in USD per million tokens (see ``prices.toml``)."""

    model: str
    input: Decimal = attrs.field(validator=_check_price)
    output: Decimal = attrs.field(validator=_check_price)
    cached_input: Decimal = attrs.field(validator=_check_price)
    cache_write: Decimal = attrs.field(validator=_check_price)

    def cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        *,
        prompt_includes_cached: bool = True,
    ) -> Decimal:
        """
        The exact cost in USD, with 12 decimals.

        Providers report cache use two ways.  OpenAI's ``prompt_tokens``
        *includes* ``cached_tokens`` (``prompt_includes_cached=True``, the
        default): the cached part is moved from the input rate to the cached
        rate.  Anthropic's ``input_tokens`` *excludes* cache reads and writes
        (pass ``False``): each is billed on top at its own rate.
        """
        _check_tokens("prompt_tokens", prompt_tokens)
        _check_tokens("completion_tokens", completion_tokens)
        _check_tokens("cached_tokens", cached_tokens)
        _check_tokens("cache_creation_tokens", cache_creation_tokens)
        uncached = prompt_tokens
        if prompt_includes_cached:
            uncached = prompt_tokens - cached_tokens - cache_creation_tokens
            if uncached < 0:
                raise ValueError(
                    "Cached tokens exceed the prompt they are part of; is this "
                    "Anthropic-style usage (prompt_includes_cached=False)? "
                    f"prompt_tokens={prompt_tokens} cached_tokens={cached_tokens} "
                    f"cache_creation_tokens={cache_creation_tokens}"
                )
        with decimal.localcontext(_EXACT):
            per_million = (
                uncached * self.input
                + cached_tokens * self.cached_input
                + cache_creation_tokens * self.cache_write
                + completion_tokens * self.output
            )
            return per_million.scaleb(_MILLION_EXPONENT).quantize(_COST_QUANTUM)


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@implementer(IPriceTable)
@attrs.frozen(eq=False)
class PriceTable:
    """
    Prices by model id, with the provenance a bill needs.

    ``version``, ``taken`` and ``sha256`` describe the shipped file;
    ``overridden`` names the entries that config changed on top of it.
    """

    version: int
    taken: datetime.date
    sha256: str
    models: Mapping[str, ModelPrice] = attrs.field(converter=_frozen_map)
    aliases: Mapping[str, str] = attrs.field(converter=_frozen_map, factory=dict)
    overridden: frozenset[str] = frozenset()

    @classmethod
    def load_default(cls) -> PriceTable:
        """The shipped table, verified; parsed once per process (it is immutable)."""
        return _load_default()

    @classmethod
    def from_toml(cls, data: bytes, *, expected_sha256: Optional[str] = None) -> PriceTable:
        """
        Parse and validate a table in the ``prices.toml`` format.

        Numbers are parsed straight to ``Decimal``: a float never exists, not
        even transiently.
        """
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise PriceTableError(
                "The price table is not the reviewed one; if you changed prices "
                "deliberately, bump its version and update DEFAULT_TABLE_SHA256: "
                f"expected={expected_sha256} actual={digest}"
            )
        try:
            raw = tomllib.loads(data.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PriceTableError(f"The price table is not valid TOML: {e}") from e
        return cls._from_mapping(raw, digest)

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any], digest: str) -> PriceTable:
        expected_keys = {"version", "taken", "currency", "unit", "aliases", "models"}
        if set(raw) != expected_keys:
            raise PriceTableError(
                f"The price table must have exactly the top-level keys {sorted(expected_keys)}: got={sorted(raw)}"
            )
        version = raw["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PriceTableError(f"version must be a positive integer: version={version!r}")
        try:
            taken = datetime.date.fromisoformat(str(raw["taken"]))
        except ValueError:
            raise PriceTableError(f"taken must be an ISO date (YYYY-MM-DD): taken={raw['taken']!r}") from None
        if raw["currency"] != "USD" or raw["unit"] != "per_million_tokens":
            raise PriceTableError(
                f"Prices must be in USD per million tokens: currency={raw['currency']!r} unit={raw['unit']!r}"
            )
        models: dict[str, ModelPrice] = {}
        for key, entry in dict(raw["models"]).items():
            if key != _price_key(key):
                raise PriceTableError(
                    f"Model keys must be bare lower-case ids: model={key!r} expected={_price_key(key)!r}"
                )
            if not isinstance(entry, dict) or set(entry) != set(PRICE_FIELDS):
                got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
                raise PriceTableError(
                    f"Each model needs exactly the fields {list(PRICE_FIELDS)}: model={key!r} got={got}"
                )
            price = ModelPrice(key, **{f: _to_price(key, f, entry[f]) for f in PRICE_FIELDS})
            if not price.cached_input <= price.input <= price.cache_write:
                raise PriceTableError(
                    "A cache read never costs more than input, and a cache write "
                    "never less; are columns swapped? "
                    f"model={key!r} cached_input={price.cached_input} "
                    f"input={price.input} cache_write={price.cache_write}"
                )
            models[key] = price
        aliases: dict[str, str] = {}
        for alias, target in dict(raw["aliases"]).items():
            if alias in models or alias != _price_key(alias) or target not in models:
                raise PriceTableError(
                    f"An alias must be a new bare id that names a table entry: alias={alias!r} target={target!r}"
                )
            aliases[alias] = target
        return cls(version=version, taken=taken, sha256=digest, models=models, aliases=aliases)

    def resolve(self, model: str) -> Optional[str]:
        """
        The table key that prices ``model``, or ``None``.

        In order: an exact entry, an exact alias, then the longest entry or
        alias that ``model`` extends by only dated/version suffixes
        (``-2024-08-06``, ``-20250929``, ``-0613``, ``-latest``,
        ``-preview``, ``-v1:0``).  A suffix that names a variant
        (``-audio-preview``, ``-16k``) or a new version (``claude-opus-4-7``)
        does not resolve, nor does a fine-tune without its own ``ft:`` entry:
        a wrong price is worse than a visible unknown.
        """
        name = _price_key(model)
        if name in self.models:
            return name
        if name in self.aliases:
            return self.aliases[name]
        best: Optional[str] = None
        for key in chain(self.models, self.aliases):
            if (
                (best is None or len(key) > len(best))
                and name.startswith(key)
                and _DATED_SUFFIX.fullmatch(name, len(key)) is not None
            ):
                best = key
        if best is None:
            return None
        return self.aliases.get(best, best)

    def price_for(self, model: str) -> Optional[ModelPrice]:
        """``model``'s prices, or ``None`` when the table does not know it."""
        key = self.resolve(model)
        return None if key is None else self.models[key]

    def cost_usd(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        *,
        prompt_includes_cached: bool = True,
    ) -> Optional[Decimal]:
        """
        The exact cost of one request, or ``None`` for an unknown model.

        See ``ModelPrice.cost_usd`` for how cached tokens are billed.
        """
        price = self.price_for(model)
        if price is None:
            return None
        return price.cost_usd(
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            cache_creation_tokens,
            prompt_includes_cached=prompt_includes_cached,
        )

    def with_overrides(self, overrides: Mapping[str, Mapping[str, PriceValue]]) -> PriceTable:
        """
        A new table with config's per-model prices applied.

        An override may give some fields of a model the table prices (also a
        dated id such as ``gpt-4o-2024-11-20``: it becomes its own entry,
        starting from the prices it resolved to); a model the table does not
        know needs all four.  Unknown field names are errors, not ignored,
        so a typo cannot leave the old price in force.
        """
        models = dict(self.models)
        overridden = set(self.overridden)
        for model, fields in overrides.items():
            key = _price_key(model)
            unknown = sorted(set(fields) - set(PRICE_FIELDS))
            if unknown:
                raise PriceTableError(
                    f"Unknown price fields in override; expected some of "
                    f"{list(PRICE_FIELDS)}: model={model!r} unknown={unknown}"
                )
            base_key = key if key in models else self.resolve(key)
            values = {f: _to_price(model, f, v) for f, v in fields.items()}
            if base_key is None:
                missing = [f for f in PRICE_FIELDS if f not in values]
                if missing:
                    raise PriceTableError(
                        "An override for a model the table does not know must give "
                        f"all four prices: model={model!r} missing={missing}"
                    )
                models[key] = ModelPrice(key, **values)
            else:
                models[key] = attrs.evolve(models[base_key], model=key, **values)
            overridden.add(key)
        return attrs.evolve(self, models=models, overridden=frozenset(overridden))


@functools.lru_cache(maxsize=1)
def _load_default() -> PriceTable:
    data = resources.files(__package__).joinpath(_DATA_FILE).read_bytes()
    return PriceTable.from_toml(data, expected_sha256=DEFAULT_TABLE_SHA256)
