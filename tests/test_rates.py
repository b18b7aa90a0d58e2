"""
Tests for dd0c_route.metering.rates: exact arithmetic, tiers, bad input.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dd0c_route.metering.rates import Rates, TieredRates

_BASE = Rates(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"), Decimal("6"))
_LONG = Rates(Decimal("6"), Decimal("22.5"), Decimal("0.6"), Decimal("7.5"), Decimal("12"))
_TIERED = TieredRates(_BASE, ((200_000, _LONG),))


def test_each_kind_of_token_at_its_rate() -> None:
    """Uncached input, cache reads, 5-minute and 1-hour writes and output each take their own rate."""
    cost, long_context = TieredRates(_BASE).cost_usd(4_000_000, 1_000_000, 1_000_000, 2_000_000, 1_000_000)
    assert cost == Decimal("3") + Decimal("0.3") + Decimal("3.75") + Decimal("6") + Decimal("15")
    assert not long_context


def test_tier_applies_above_threshold() -> None:
    """200,000 input tokens is standard; 200,001 is long context, on every token."""
    assert _TIERED.cost_usd(200_000, 0) == (Decimal("0.6"), False)
    assert _TIERED.cost_usd(200_001, 0) == (Decimal("1.200006"), True)


def test_request_fee() -> None:
    """A per-request fee (per thousand requests) is added once."""
    rates = Rates(Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0), requests_per_thousand=Decimal(5))
    assert rates.cost_usd(0, 0) == Decimal("0.005")


@given(
    st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9)
)
def test_cost_is_exact(uncached: int, read: int, write_5m: int, write_1h: int, output: int) -> None:
    """The cost equals the rational sum rounded to 1e-12, whatever the counts."""
    total = uncached + read + write_5m + write_1h
    cost, long_context = _TIERED.cost_usd(total, output, read, write_5m + write_1h, write_1h)
    rates = _LONG if long_context else _BASE
    exact = (
        Fraction(rates.input) * uncached + Fraction(rates.cache_read) * read + Fraction(rates.cache_write) * write_5m
        + Fraction(rates.cache_write_1h) * write_1h + Fraction(rates.output) * output
    ) / 1_000_000
    assert Fraction(cost) == exact  # rates have <= 6 decimals: exact at 1e-12


def test_inconsistent_usage_rejected() -> None:
    """More cached than input, or more 1-hour than written, is an error, not a negative bill."""
    with pytest.raises(ValueError, match="exceed"):
        _TIERED.cost_usd(10, 0, 11)
    with pytest.raises(ValueError, match="exceed"):
        _TIERED.cost_usd(10, 0, 0, 1, 2)
    with pytest.raises(ValueError, match="token count"):
        _TIERED.cost_usd(-1, 0)


def test_bad_rates_rejected() -> None:
    """A rate is a finite, non-negative Decimal; tiers ascend."""
    with pytest.raises(ValueError):
        Rates(Decimal(-1), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    with pytest.raises(ValueError):
        Rates(Decimal("NaN"), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    with pytest.raises(ValueError):
        TieredRates(_BASE, ((2, _LONG), (1, _LONG)))


_COUNT = st.one_of(
    st.integers(-5, 10**15 + 5), st.sampled_from([True, False, 10**15 - 1, 10**15]), st.floats(0, 10),
    st.decimals(0, 10, places=0), st.none(), st.just("3"),
)


@given(st.lists(_COUNT, min_size=5, max_size=5))
@example([10**15, 0, 0, 0, 0])
@example([0, 10**15, 0, 0, 0])
@example([10**15 - 1, 0, 10**15 - 1, 0, 0])
@example([5, -1, 0, 0, 0])
@example([True, 0, 0, 0, 0])
@example([3, 0, 0, 2, 1.0])
def test_token_counts_checked_as_one_by_one(counts: list[object]) -> None:
    """
    The fast check of five plain ints (issue #18) accepts and refuses
    exactly what checking each count on its own does: bools, floats,
    Decimals, None, strings and out-of-range ints are refused by name.
    """
    from dd0c_route.metering.rates import _check_tokens

    names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
    try:
        for name, value in zip(names, counts, strict=True):
            _check_tokens(name, value)  # type: ignore[arg-type]
    except ValueError as error:
        expected: object = str(error)
    else:
        expected = None
    try:
        _BASE.cost_usd(*counts)  # type: ignore[arg-type]
    except ValueError as error:
        got: object = str(error)
    else:
        got = None
    if expected is None and isinstance(got, str) and "exceed" in got:
        return  # valid counts that contradict each other: refused later, as before
    assert got == expected
