# Tests: tests/test_rates.py
"""
A model's rates and the exact arithmetic of one request's cost.

This is the hot path of pricing: a resolved ``TieredRates`` is cached per
model, and ``cost_usd`` is a tier pick and a handful of ``Decimal``
multiplications in an exact context — no lookup, no allocation beyond the
numbers.  Where the rates come from (the dataset, config) is
``metering/prices.py``'s business.

Usage is taken in one shape, whatever the provider reported:
``input_tokens`` is *everything* the model read (cache reads and writes
included; Anthropic's own ``input_tokens`` excludes them, the caller adds
them back), ``cache_write_tokens`` counts both cache durations and
``cache_write_1h_tokens`` the 1-hour part of it.  Long-context tiers are
judged on that total input, as the providers bill.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import attrs

__all__ = ["RATE_FIELDS", "Rates", "TieredRates", "check_rate"]

#: Rates per million tokens, in the order they are printed.
RATE_FIELDS: tuple[str, ...] = ("input", "output", "cache_read", "cache_write", "cache_write_1h")

_MAX_TOKENS = 10**15
_MAX_DECIMALS = 20
_COST_QUANTUM = Decimal(1).scaleb(-12)
_EXACT = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow])
_ROUND = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])
# Rates have <= 20 decimals (the dataset's finest: 18, for thirds of a cent)
# and token counts < 1e15, so the sum is exact in 80 digits (the Inexact trap
# proves it on every call); only the final amount is rounded, to 1e-12 USD,
# half-even -- four orders of magnitude below a cent-millionth.


def check_rate(what: str, value: Any) -> Decimal:
    """``value`` as a rate: a finite, non-negative ``Decimal`` with at most 20 decimals."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"A rate must be a finite, non-negative Decimal: {what}={value!r}")
    exponent = value.normalize(_ROUND).as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        raise ValueError(f"A rate may have at most {_MAX_DECIMALS} decimals: {what}={value!r}")
    return value


def _rate(instance: Any, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    check_rate(attribute.name, value)


def _check_tokens(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_TOKENS:
        raise ValueError(f"A token count must be an int between 0 and {_MAX_TOKENS}: {name}={value!r}")


@attrs.frozen
class Rates:
    """
    Flat rates in USD per million tokens, plus a per-request fee in USD
    per thousand requests (a few providers charge one).

    Every field is filled: a price the provider does not list separately is
    the rate of what it is billed as (a cache read without its own price is
    input; a 1-hour cache write without one is a cache write).
    """

    input: Decimal = attrs.field(validator=_rate)
    output: Decimal = attrs.field(validator=_rate)
    cache_read: Decimal = attrs.field(validator=_rate)
    cache_write: Decimal = attrs.field(validator=_rate)
    cache_write_1h: Decimal = attrs.field(validator=_rate)
    requests_per_thousand: Decimal = attrs.field(default=Decimal(0), validator=_rate)

    def cost_usd(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal:
        """The cost in USD, exact before its rounding to 12 decimals; see the module docstring."""
        if not (
            input_tokens.__class__ is int and output_tokens.__class__ is int and cache_read_tokens.__class__ is int
            and cache_write_tokens.__class__ is int and cache_write_1h_tokens.__class__ is int
            and 0 <= input_tokens < _MAX_TOKENS and 0 <= output_tokens < _MAX_TOKENS
            and 0 <= cache_read_tokens < _MAX_TOKENS and 0 <= cache_write_tokens < _MAX_TOKENS
            and 0 <= cache_write_1h_tokens < _MAX_TOKENS
        ):
            # Anything but five plain ints in range: checked one by one (and refused as before).
            _check_tokens("input_tokens", input_tokens)
            _check_tokens("output_tokens", output_tokens)
            _check_tokens("cache_read_tokens", cache_read_tokens)
            _check_tokens("cache_write_tokens", cache_write_tokens)
            _check_tokens("cache_write_1h_tokens", cache_write_1h_tokens)
        uncached = input_tokens - cache_read_tokens - cache_write_tokens
        write_5m = cache_write_tokens - cache_write_1h_tokens
        if uncached < 0 or write_5m < 0:
            raise ValueError(
                "Cached tokens exceed the input they are part of: "
                f"input_tokens={input_tokens} cache_read_tokens={cache_read_tokens} "
                f"cache_write_tokens={cache_write_tokens} cache_write_1h_tokens={cache_write_1h_tokens}"
            )
        with decimal.localcontext(_EXACT):
            per_million = (
                uncached * self.input
                + cache_read_tokens * self.cache_read
                + write_5m * self.cache_write
                + cache_write_1h_tokens * self.cache_write_1h
                + output_tokens * self.output
            )
            cost = per_million.scaleb(-6)
            if self.requests_per_thousand:
                cost += self.requests_per_thousand.scaleb(-3)
        return cost.quantize(_COST_QUANTUM, context=_ROUND)


def _tiers(instance: Any, attribute: Any, value: tuple[tuple[int, Rates], ...]) -> None:
    starts = [start for start, _ in value]
    if starts != sorted(set(starts)) or any(start < 0 for start in starts):
        raise ValueError(f"Tier starts must be distinct, non-negative and ascending: starts={starts}")


@attrs.frozen
class TieredRates:
    """
    ``base`` rates, and the rates that apply instead once a request's input
    exceeds a tier's start (Claude's long context above 200K tokens,
    GPT-5.x above 272K), ascending by start.
    """

    base: Rates
    tiers: tuple[tuple[int, Rates], ...] = attrs.field(default=(), validator=_tiers)

    def at(self, input_tokens: int) -> tuple[Rates, bool]:
        """The rates for a request with this total input, and whether a tier applied."""
        for start, rates in reversed(self.tiers):
            if input_tokens > start:
                return rates, True
        return self.base, False

    def cost_usd(self, input_tokens: int, *counts: int) -> tuple[Decimal, bool]:
        """
        The exact cost, and whether the long-context tier priced it;
        arguments as for ``Rates.cost_usd``.
        """
        rates, long_context = self.at(input_tokens)
        return rates.cost_usd(input_tokens, *counts), long_context
