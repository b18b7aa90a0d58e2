# Tests: tests/test_prices.py
"""
What a request cost: operator overrides first, then the maintained dataset.

Sources, in order (the first that prices a model wins):

1. **config**, ``[prices."model"]`` or, where two providers serve one name
   at different prices, ``[prices."provider/model"]`` (``provider`` is a
   configured provider's name).  An override is a *flat* price -- what the
   operator negotiated is what is paid: no tiers, no variants.  Fields it
   leaves out come from the dataset's standard rates; a model the dataset
   does not know needs ``input``, ``output``, ``cached_input`` and
   ``cache_write`` (``cache_write_1h`` defaults to ``cache_write``).
   A dated id (``gpt-4o-2024-11-20``) follows its base's override.
2. **genai-prices** (``metering/dataset.py``), for every model it knows, with
   its long-context tiers and its ``service_tier``/Batch variants.

A model neither prices has no cost: ``None``, never zero, so unpriced usage
stays visible instead of looking free.  Fine-tunes (``ft:...``) are billed
above their base model: only a fine-tune entry (the dataset's or config's)
prices one, never its base model's.

Hot path: ``quote`` is one dict lookup for the cached rates (resolved on a
model's first use, again only when the dataset's choice can change, e.g. at
a dated price change) and the ``Decimal`` arithmetic of ``metering/rates.py``.
Every quote names its ``source`` (``genai-prices 0.2.3`` or ``config``) and
its ``tier`` (see ``tier_name``), which the usage record keeps so that a bill
can be re-derived.
"""

from __future__ import annotations

import decimal
import re
import time
from datetime import date
from decimal import Decimal
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import attrs
from zope.interface import implementer

from .dataset import Dataset, context_for_tier
from .interfaces import IPriceTable
from .rates import RATE_FIELDS, Rates, TieredRates, check_rate

__all__ = [
    "CONFIG_SOURCE",
    "OVERRIDE_FIELDS",
    "PriceError",
    "Priced",
    "Prices",
    "Quote",
    "price_warnings",
    "tier_name",
]

CONFIG_SOURCE = "config"

#: Config's override fields and the rate each sets.
OVERRIDE_FIELDS: Mapping[str, str] = {
    "input": "input",
    "output": "output",
    "cached_input": "cache_read",
    "cache_write": "cache_write",
    "cache_write_1h": "cache_write_1h",
}
_REQUIRED_FOR_NEW = ("input", "output", "cached_input", "cache_write")

#: Service tiers whose rates ``dd0c-route prices`` shows beside the standard ones.
SHOWN_TIERS = ("flex", "priority", "fast", "batch")

PriceValue = Union[str, int, float, Decimal]

#: Distinct (provider, model, service tier) entries kept; model names come
#: from clients, so the cache is bounded (when full it starts over).
_CACHE_LIMIT = 4096

_DATED_SUFFIX = re.compile(r"(?:-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview|v\d+(?::\d+)?))+")


class PriceError(ValueError):
    """An override in config is malformed; nothing was loaded."""


@attrs.frozen
class Quote:
    """One request's cost, with what priced it."""

    cost_usd: Decimal
    source: str
    tier: str


@attrs.frozen
class Priced:
    """The rates in force for a model, and where they come from."""

    key: str
    source: str
    rates: TieredRates
    variant: Optional[str] = None
    valid_until: float = float("inf")


def tier_name(variant: Optional[str], long_context: bool) -> str:
    """
    The record's ``price_tier``: ``standard``, or the variant the provider
    reported (``flex``, ``priority``, ``fast``, ``batch``), with
    ``long_context`` when the request's input passed a long-context
    threshold -- ``long_context`` alone for the standard rates,
    ``batch+long_context`` for both.
    """
    base = "standard" if variant in (None, "default") else str(variant)
    if not long_context:
        return base
    return "long_context" if base == "standard" else f"{base}+long_context"


def _to_price(model: str, field: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise PriceError(
            f"A price must be a decimal string or number: model={model!r} field={field!r} type={type(value).__name__}"
        )
    try:
        price = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return check_rate(field, price)
    except (decimal.InvalidOperation, ValueError):
        raise PriceError(
            f"A price must be a finite, non-negative decimal number: model={model!r} field={field!r} value={value!r}"
        ) from None


def _name(model: str) -> str:
    return model.strip().lower()


def _match_key(name: str, keys: Iterable[str]) -> Optional[str]:
    """An exact key, else the longest that ``name`` extends by dated/version suffixes only."""
    best: Optional[str] = None
    for key in keys:
        if key == name:
            return key
        if (
            (best is None or len(key) > len(best))
            and name.startswith(key)
            and _DATED_SUFFIX.fullmatch(name, len(key)) is not None
        ):
            best = key
    return best


@implementer(IPriceTable)
class Prices:
    """
    The proxy's prices: config's overrides over a ``Dataset`` (or none).

    ``providers`` are the configured providers (anything with ``name``,
    ``kind`` and ``base_url``): a record's provider name tells which
    dataset provider bills it.
    """

    def __init__(
        self,
        dataset: Optional[Dataset],
        overrides: Mapping[str, Mapping[str, PriceValue]] = {},
        providers: Sequence[Any] = (),
        now: Optional[float] = None,
    ) -> None:
        self.dataset = dataset
        self._provider_ids: dict[str, Optional[str]] = {}
        for provider in providers:
            self._provider_ids[provider.name] = (
                None if dataset is None else dataset.provider_id(provider.name, provider.kind, provider.base_url)
            )
        self._cache: dict[tuple[Optional[str], str, Optional[str]], Optional[Priced]] = {}
        when = time.time() if now is None else now
        #: (provider name or None) -> {model key: Priced}
        self._overrides: dict[Optional[str], dict[str, Priced]] = {}
        for model, fields in overrides.items():
            provider, _, bare = model.partition("/")
            if bare and provider in self._provider_ids:
                self._add_override(provider, _name(bare), model, fields, when)
            else:
                self._add_override(None, _name(model), model, fields, when)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Mapping[str, PriceValue]] = {}, providers: Sequence[Any] = ()
    ) -> Prices:
        """Overrides over the installed genai-prices data."""
        return cls(Dataset.load(), overrides, providers)

    def _add_override(
        self, provider: Optional[str], key: str, label: str, fields: Mapping[str, PriceValue], when: float
    ) -> None:
        unknown = sorted(set(fields) - set(OVERRIDE_FIELDS))
        if unknown:
            raise PriceError(
                f"Unknown price fields in override; expected some of {list(OVERRIDE_FIELDS)}: "
                f"model={label!r} unknown={unknown}"
            )
        values = {OVERRIDE_FIELDS[f]: _to_price(label, f, v) for f, v in fields.items()}
        base = self._from_dataset(provider, key, None, when)
        if base is not None:
            rates = attrs.evolve(base.rates.base, **values)
        else:
            missing = [f for f in _REQUIRED_FOR_NEW if f not in fields]
            if missing:
                raise PriceError(
                    "An override for a model the price data does not know must give "
                    f"{list(_REQUIRED_FOR_NEW)}: model={label!r} missing={missing}"
                )
            values.setdefault("cache_write_1h", values["cache_write"])
            rates = Rates(**values)
        self._overrides.setdefault(provider, {})[key] = Priced(key, CONFIG_SOURCE, TieredRates(rates))

    def _from_dataset(
        self, provider: Optional[str], name: str, service_tier: Optional[str], when: float
    ) -> Optional[Priced]:
        if self.dataset is None:
            return None
        provider_id = self._provider_ids.get(provider) if provider is not None else None
        resolved = self.dataset.resolve(provider_id, name, context_for_tier(service_tier), when)
        if resolved is None:
            return None
        return Priced(
            resolved.model_id, self.dataset.source, resolved.rates, resolved.variant, resolved.valid_until
        )

    def rates(
        self,
        model: str,
        provider: Optional[str] = None,
        service_tier: Optional[str] = None,
        when: Optional[float] = None,
    ) -> Optional[Priced]:
        """The rates in force for ``model`` served by ``provider``, or ``None``."""
        when = time.time() if when is None else when
        cache_key = (provider, model, service_tier)
        try:
            priced = self._cache[cache_key]
        except KeyError:
            pass
        else:
            if priced is None or when < priced.valid_until:
                return priced
        priced = self._resolve(model, provider, service_tier, when)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[cache_key] = priced
        return priced

    def _resolve(
        self, model: str, provider: Optional[str], service_tier: Optional[str], when: float
    ) -> Optional[Priced]:
        name = _name(model)
        for scope in ((provider, None) if provider is not None else (None,)):
            table = self._overrides.get(scope)
            if table:
                key = _match_key(name, table)
                if key is not None:
                    return table[key]
        return self._from_dataset(provider, name, service_tier, when)

    def quote(
        self,
        model: Optional[str],
        provider: Optional[str] = None,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cache_creation_1h_tokens: int = 0,
        prompt_includes_cached: bool = True,
        service_tier: Optional[str] = None,
        when: Optional[float] = None,
    ) -> Optional[Quote]:
        """
        The cost of one request, or ``None`` for a model nothing prices.

        OpenAI's ``prompt_tokens`` include cache reads
        (``prompt_includes_cached=True``); Anthropic's ``input_tokens``
        exclude cache reads and writes (``False``).
        """
        if model is None:
            return None
        priced = self.rates(model, provider, service_tier, when)
        if priced is None:
            return None
        total = prompt_tokens
        if not prompt_includes_cached:
            total += cached_tokens + cache_creation_tokens
        cost, long_context = priced.rates.cost_usd(
            total, completion_tokens, cached_tokens, cache_creation_tokens, cache_creation_1h_tokens
        )
        return Quote(cost, priced.source, tier_name(priced.variant, long_context))

    def quote_facts(
        self, model: Optional[str], provider: Optional[str], facts: Any, when: Optional[float] = None
    ) -> Optional[Quote]:
        """``quote`` for a request's ``UsageFacts``; zero when it used no tokens."""
        if model is None:
            return None
        if facts.prompt_tokens is None and facts.completion_tokens is None:
            priced = self.rates(model, provider, None, when)
            return None if priced is None else Quote(Decimal(0), priced.source, "standard")
        return self.quote(
            model,
            provider,
            prompt_tokens=facts.prompt_tokens or 0,
            completion_tokens=facts.completion_tokens or 0,
            cached_tokens=facts.cached_tokens or 0,
            cache_creation_tokens=facts.cache_creation_tokens or 0,
            cache_creation_1h_tokens=getattr(facts, "cache_creation_1h_tokens", None) or 0,
            prompt_includes_cached=facts.prompt_includes_cached,
            service_tier=getattr(facts, "service_tier", None),
            when=when,
        )

    def price_for(self, model: str) -> Optional[Priced]:
        """``model``'s standard rates from any source, or ``None``."""
        return self.rates(model)

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
        """The standard-tier cost of ``model`` for these tokens (shadow and requested-model costs)."""
        quote = self.quote(
            model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            cache_creation_tokens=cache_creation_tokens,
            prompt_includes_cached=prompt_includes_cached,
        )
        return None if quote is None else quote.cost_usd

    def describe(self, model: str, provider: Optional[str] = None, when: Optional[float] = None) -> list[str]:
        """Lines for ``dd0c-route prices``: the rates in force, per tier, USD per million tokens."""
        when = time.time() if when is None else when
        priced = self.rates(model, provider, None, when)
        where = f" via {provider}" if provider else ""
        if priced is None:
            return [f"{model}{where}: no price (cost_usd stays null)"]
        lines = [f"{model}{where}: {priced.key}, source {priced.source}, USD per million tokens"]
        header = ["tier", *RATE_FIELDS]
        rows: list[list[str]] = []

        def add(name: str, rates: Rates) -> None:
            row = [name, *(_plain(getattr(rates, f)) for f in RATE_FIELDS)]
            if rates.requests_per_thousand:
                row.append(f"+ ${_plain(rates.requests_per_thousand)} per 1000 requests")
            rows.append(row)

        def add_tiers(variant: Optional[str], tiered: TieredRates) -> None:
            add(tier_name(variant, False), tiered.base)
            for start, rates in tiered.tiers:
                add(f"{tier_name(variant, True)} (input > {start})", rates)

        add_tiers(None, priced.rates)
        if priced.source != CONFIG_SOURCE:
            for tier in SHOWN_TIERS:
                other = self.rates(model, provider, tier, when)
                if other is not None and other.variant is not None:
                    add_tiers(other.variant, other.rates)
        widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [cell.ljust(widths[i]) if i < len(widths) else cell for i, cell in enumerate(row)]
            lines.append("  " + "  ".join(cells).rstrip())
        return lines


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def price_warnings(prices: Prices, providers: Sequence[Any], today: date, max_age_days: int = 90) -> list[str]:
    """
    What ``dd0c-route check`` (and the proxy at start) warns about: every
    configured exact model name nothing prices, and price data older than
    ``max_age_days``.
    """
    warnings = []
    for provider in providers:
        for model in provider.exact_models:
            if prices.rates(model, provider.name) is None:
                warnings.append(
                    f"no price for model {model!r} of provider {provider.name!r}: its usage will have "
                    f'cost_usd null; add [prices."{provider.name}/{model}"] to the config'
                )
    if prices.dataset is not None:
        newest = prices.dataset.data_date(today)
        if newest is None or (today - newest).days > max_age_days:
            warnings.append(
                f"the price data ({prices.dataset.source}) is older than {max_age_days} days "
                f"(newest date it records: {newest}); upgrade {prices.dataset.source.split()[0]}"
            )
    return warnings
