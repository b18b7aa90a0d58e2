# Tests: tests/test_dataset.py
"""
The maintained price dataset (``genai-prices``), read once per model.

``genai-prices`` (pydantic's, MIT) ships every provider's list prices as a
Python snapshot, ``genai_prices.data.providers``, with the logic that picks
one: model-name matching, prices that change on a date, request variants
(``service_tier`` flex/priority, Batch) and long-context tiers.  We use that
logic to *choose* a model's rates, once per model and price context, and
turn them into our own ``TieredRates``; the money itself is computed by
``metering/rates.py`` in exact ``Decimal``, never by the library on a
request.  Upgrading the package is enough to price a new model.

No network, ever: the package can refresh its data from GitHub, but only an
``UpdatePrices`` that someone ``start()``s runs that thread.  Nothing here
does, and this module reads ``genai_prices.data`` directly rather than the
library's current snapshot, so even a refreshed snapshot elsewhere in the
process could not change a bill.  (Importing the package imports its HTTP
client, ``httpx2``; it is loaded, never used.)

Only this module imports ``genai_prices``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import metadata
from typing import Any, Iterator, Mapping, Optional, Sequence

import attrs

from .rates import Rates, TieredRates

__all__ = ["DISTRIBUTION", "Dataset", "Resolved", "context_for_tier"]

DISTRIBUTION = "genai-prices"

#: Our rate fields, from the dataset's price keys (first key present wins).
_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input", ("input_mtok",)),
    ("output", ("output_mtok",)),
    ("cache_read", ("cache_read_mtok",)),
    ("cache_write", ("cache_write_5m_mtok", "cache_write_mtok")),
    ("cache_write_1h", ("cache_write_1h_mtok",)),
    ("requests_per_thousand", ("requests_kcount",)),
)
#: A price the dataset leaves out is billed as its parent (its usage is part
#: of the parent's count): cache reads and writes as input, 1-hour writes as
#: writes.  The dataset's own arithmetic does the same.
_PARENT = {"cache_read": "input", "cache_write": "input", "cache_write_1h": "cache_write"}

_ISO_DATE = re.compile(r"\b(20\d\d)-(\d\d)-(\d\d)\b")


def context_for_tier(service_tier: Optional[str]) -> dict[str, str]:
    """
    The dataset's price context for a ``service_tier`` as the provider
    reported it: OpenAI's ``flex``/``priority``/``default``/``fast`` are
    ``service_tier`` variants; ``batch`` (Anthropic reports it for Message
    Batches) is the ``processing`` variant.  ``standard``, ``auto`` and
    nothing mean the standard rates.
    """
    if not service_tier or service_tier in ("standard", "auto"):
        return {}
    if service_tier == "batch":
        return {"processing": "batch"}
    return {"service_tier": service_tier}


@attrs.frozen
class Resolved:
    """
    One model's rates in one price context, as the dataset chose them.

    ``variant`` names the context value that changed the rates (``flex``,
    ``batch``...), ``None`` for the standard rates.  ``valid_until`` (Unix
    time) is when the dataset's choice may change: the next dated price
    change or time-of-day boundary.
    """

    provider_id: str
    model_id: str
    rates: TieredRates
    variant: Optional[str] = None
    valid_until: float = math.inf


class Dataset:
    """The bundled snapshot of a ``genai-prices`` release."""

    def __init__(self, providers: Sequence[Any], version: str) -> None:
        self._providers = list(providers)
        self._by_id = {provider.id: provider for provider in self._providers}
        self.version = version

    @classmethod
    def load(cls) -> Dataset:
        """The installed release's data (imported here, on first use)."""
        from genai_prices.data import providers

        return cls(providers, metadata.version(DISTRIBUTION))

    @property
    def source(self) -> str:
        """What a usage record says priced it: ``genai-prices 0.2.3``."""
        return f"{DISTRIBUTION} {self.version}"

    @property
    def provider_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def provider_id(self, name: str, kind: str, base_url: str) -> Optional[str]:
        """
        The dataset provider a configured provider bills as: the one with
        its name (``together``, ``groq``), else the one whose API address
        it uses, else the one of its kind (``openai``, ``anthropic``).
        """
        lowered = name.lower()
        if lowered in self._by_id:
            return lowered
        for provider in self._providers:
            if re.match(provider.api_pattern, base_url):
                return str(provider.id)
        return kind if kind in self._by_id else None

    def _provider_for(self, provider_id: Optional[str], model_ref: str) -> Any:
        if provider_id is not None:
            return self._by_id.get(provider_id)
        for provider in self._providers:
            if provider.model_match is not None and provider.model_match.is_match(model_ref):
                return provider
        return None

    def resolve(
        self,
        provider_id: Optional[str],
        model: str,
        context: Mapping[str, str],
        when: float,
    ) -> Optional[Resolved]:
        """
        ``model``'s rates at ``when`` (Unix time) in ``context``, or ``None``
        when the dataset does not price it.  Without a provider, the one
        whose models the name looks like (``claude`` is Anthropic's).
        """
        model_ref = model.strip().lower()
        provider = self._provider_for(provider_id, model_ref)
        if provider is None:
            return None
        info = provider.find_model(model_ref, all_providers=self._providers)
        if info is None:
            return None
        moment = datetime.fromtimestamp(when, UTC)
        standard = info.get_prices(moment)
        prices = standard
        variant = None
        # As the library does: a model borrowed from a fallback provider
        # keeps its standard prices whatever the context.
        if context and any(info is own for own in provider.models):
            prices = info.get_prices(moment, dict(context))
            if prices != standard:
                variant = next(iter(context.values()))
        return Resolved(
            provider_id=str(provider.id),
            model_id=str(info.id),
            rates=_tiered(prices),
            variant=variant,
            valid_until=_next_change(info, moment),
        )

    def models(self, provider_ids: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(provider id, model id) for every model of these providers."""
        for provider_id in provider_ids:
            provider = self._by_id.get(provider_id)
            for info in provider.models if provider is not None else ():
                yield str(provider_id), str(info.id)

    def data_date(self, today: date) -> Optional[date]:
        """
        How recent the data is: the newest date it records that is not in
        the future -- a price change, or a "checked"/"as of" date in its
        comments.  The release date itself is not in the package.
        """
        newest: Optional[date] = None
        for provider in self._providers:
            texts = [provider.price_comments or ""]
            for info in provider.models:
                texts.append(info.price_comments or "")
                for constraint in _constraints(info):
                    start = getattr(constraint, "start_date", None)
                    if isinstance(start, date) and start <= today and (newest is None or start > newest):
                        newest = start
            for text in texts:
                for match in _ISO_DATE.finditer(text):
                    try:
                        found = date(int(match[1]), int(match[2]), int(match[3]))
                    except ValueError:
                        continue
                    if found <= today and (newest is None or found > newest):
                        newest = found
        return newest


def _price_at(value: Any, input_tokens: int) -> Optional[Decimal]:
    """A dataset price (flat or tiered) for a request with this input."""
    if value is None or isinstance(value, Decimal):
        return value
    price = value.base
    for tier in reversed(value.tiers):
        if input_tokens > tier.start:
            price = tier.price
            break
    return Decimal(price)


def _rates_at(prices: Any, input_tokens: int) -> Rates:
    fields: dict[str, Decimal] = {}
    for field, keys in _KEYS:
        value = next((v for v in (getattr(prices, key, None) for key in keys) if v is not None), None)
        price = _price_at(value, input_tokens)
        if price is None:
            parent = _PARENT.get(field)
            price = fields[parent] if parent is not None else Decimal(0)
        fields[field] = price
    return Rates(**fields)


def _tiered(prices: Any) -> TieredRates:
    """The dataset's ``ModelPrice`` as our rates, one set per tier start."""
    starts: set[int] = set()
    for _, keys in _KEYS:
        for key in keys:
            value = getattr(prices, key, None)
            starts.update(tier.start for tier in getattr(value, "tiers", ()))
    ordered = sorted(starts)
    return TieredRates(_rates_at(prices, 0), tuple((start, _rates_at(prices, start + 1)) for start in ordered))


def _constraints(info: Any) -> Iterator[Any]:
    if isinstance(info.prices, list):
        for conditional in info.prices:
            if conditional.constraint is not None:
                yield conditional.constraint
    for variant in info.price_variants or ():
        if variant.constraint is not None:
            yield variant.constraint


def _next_change(info: Any, moment: datetime) -> float:
    """When the dataset's choice of prices for ``info`` may next change."""
    until = math.inf
    today = moment.date()
    for constraint in _constraints(info):
        start = getattr(constraint, "start_date", None)
        if isinstance(start, date) and start > today:
            until = min(until, datetime.combine(start, time(0), UTC).timestamp())
        for bound in (getattr(constraint, "start_time", None), getattr(constraint, "end_time", None)):
            if isinstance(bound, time):
                utc = datetime.combine(today - timedelta(days=1), bound.replace(tzinfo=bound.tzinfo or UTC)).astimezone(UTC)
                while utc <= moment:
                    utc += timedelta(days=1)
                until = min(until, utc.timestamp())
    return until
