"""
Tests for dd0c_route.metering.prices.
"""

from __future__ import annotations

import datetime
import hashlib
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dd0c_route.metering.prices import (
    DEFAULT_TABLE_SHA256,
    PRICE_FIELDS,
    ModelPrice,
    PriceTable,
    PriceTableError,
)

_SHIPPED = resources.files("dd0c_route.metering").joinpath("prices.toml").read_bytes()

_REQUIRED_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4-turbo",
    "gpt-4",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "claude-opus-4",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-sonnet-4",
    "claude-sonnet-4-5",
    "claude-3-7-sonnet",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "claude-haiku-4-5",
    "claude-3-haiku",
    "claude-3-opus",
]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    """The shipped table."""
    return PriceTable.load_default()


def test_default_table_provenance(table: PriceTable) -> None:
    """
    The shipped table loads with its version, date and the pinned digest of
    the file, and is parsed once per process.
    """
    assert table.version >= 1
    assert isinstance(table.taken, datetime.date)
    assert table.sha256 == DEFAULT_TABLE_SHA256 == hashlib.sha256(_SHIPPED).hexdigest()
    assert table.overridden == frozenset()
    assert PriceTable.load_default() is table


@pytest.mark.parametrize("model", _REQUIRED_MODELS)
def test_required_models_are_priced(table: PriceTable, model: str) -> None:
    """Every model the proxy is expected to serve has all four prices as Decimals."""
    price = table.price_for(model)
    assert price is not None
    assert price.model == model
    for field in PRICE_FIELDS:
        assert isinstance(getattr(price, field), Decimal)


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("o1-preview", "o1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-1106-preview", "gpt-4-turbo"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-35-turbo", "gpt-3.5-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ],
)
def test_dated_ids_resolve_to_base(table: PriceTable, model: str, key: str) -> None:
    """
    Dated, versioned and provider-prefixed ids resolve to the longest base
    entry; an explicit entry or alias (gpt-4o-2024-05-13, gpt-4-1106-preview)
    wins over the prefix rule.
    """
    assert table.resolve(model) == key


@pytest.mark.parametrize(
    "model",
    [
        "llama-3-70b",
        "gpt-4o-audio-preview",
        "gpt-4o-mini-realtime-preview",
        "gpt-3.5-turbo-16k",
        "claude-opus-4-7",
        "gpt-5.1",
        "gpt-4oo",
        "ft:gpt-4o-mini-2024-07-18:acme::abc",
        "",
    ],
)
def test_unknown_models_have_no_price(table: PriceTable, model: str) -> None:
    """
    Models the table does not price — variants, newer versions, fine-tunes —
    get None for price and cost, never zero: unpriced usage stays visible.
    """
    assert table.price_for(model) is None
    assert table.cost_usd(model, 1000, 1000) is None


def test_openai_cached_tokens_move_to_cached_rate(table: PriceTable) -> None:
    """
    OpenAI-style usage (prompt includes cached): cached tokens are billed at
    the cached rate and subtracted from the input count.
    """
    cost = table.cost_usd("gpt-4o", 1000, 500, cached_tokens=200)
    # 800 * 2.50 + 200 * 1.25 + 500 * 10.00 = 7250 per million
    assert cost == Decimal("0.00725")
    assert str(cost) == "0.007250000000"


def test_anthropic_cache_tokens_billed_on_top(table: PriceTable) -> None:
    """
    Anthropic-style usage (input excludes cache reads and writes): each is
    billed on top of input at its own rate.
    """
    cost = table.cost_usd(
        "claude-sonnet-4-5-20250929",
        1000,
        500,
        cached_tokens=200,
        cache_creation_tokens=100,
        prompt_includes_cached=False,
    )
    # 1000 * 3 + 200 * 0.30 + 100 * 3.75 + 500 * 15 = 10935 per million
    assert cost == Decimal("0.010935")


def test_inconsistent_usage_rejected(table: PriceTable) -> None:
    """
    Cached tokens larger than an OpenAI-style prompt, negative or non-int
    counts are errors that say what to check, not a negative or float bill.
    """
    with pytest.raises(ValueError, match="prompt_includes_cached=False"):
        table.cost_usd("gpt-4o", 10, 0, cached_tokens=20)
    with pytest.raises(ValueError, match="completion_tokens=-1"):
        table.cost_usd("gpt-4o", 10, -1)
    with pytest.raises(ValueError, match=r"prompt_tokens=1\.5"):
        table.cost_usd("gpt-4o", 1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt_tokens=True"):
        table.cost_usd("gpt-4o", True, 0)


@given(
    model=st.sampled_from(_REQUIRED_MODELS),
    prompt=st.integers(min_value=0, max_value=10**12),
    cached=st.integers(min_value=0, max_value=10**12),
    creation=st.integers(min_value=0, max_value=10**12),
    completion=st.integers(min_value=0, max_value=10**12),
)
def test_cost_is_exact(table: PriceTable, model: str, prompt: int, cached: int, creation: int, completion: int) -> None:
    """
    Costs are exact: they equal the rational-number bill to the last digit
    for token counts up to a trillion, and splitting a request's output in
    two never changes the total (a float sum would drift).
    """
    price = table.price_for(model)
    assert price is not None
    cost = table.cost_usd(model, prompt, completion, cached, creation, prompt_includes_cached=False)
    assert isinstance(cost, Decimal)
    exact = (
        prompt * Fraction(price.input)
        + cached * Fraction(price.cached_input)
        + creation * Fraction(price.cache_write)
        + completion * Fraction(price.output)
    ) / 10**6
    assert Fraction(cost) == exact
    half = completion // 2
    parts = price.cost_usd(prompt, half, cached, creation, prompt_includes_cached=False)
    rest = price.cost_usd(0, completion - half, prompt_includes_cached=False)
    assert parts + rest == cost


def test_tampered_table_rejected() -> None:
    """A table that differs from the reviewed file by one digit is refused at load."""
    tampered = _SHIPPED.replace(b"output = 10.00", b"output = 1.00", 1)
    assert tampered != _SHIPPED
    with pytest.raises(PriceTableError, match="not the reviewed one"):
        PriceTable.from_toml(tampered, expected_sha256=DEFAULT_TABLE_SHA256)


def _edit(old: str, new: str) -> bytes:
    edited = _SHIPPED.replace(old.encode(), new.encode(), 1)
    assert edited != _SHIPPED, old
    return edited


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_edit("cache_write = 2.50\n", ""), "exactly the fields"),
        (_edit("input = 2.50", "input = -2.50"), "non-negative"),
        (_edit("input = 2.50", 'input = "two"'), "decimal number"),
        (_edit("input = 2.50", "input = 2.5000001"), "at most 6 decimals"),
        (_edit("input = 2.50", "input = true"), "decimal string or number"),
        (_edit("cached_input = 1.25", "cached_input = 12.5"), "columns swapped"),
        (_edit('"gpt-5-chat-latest" = "gpt-5"', '"gpt-5-chat-latest" = "gpt-6"'), "alias"),
        (_edit('[models."gpt-4o"]', '[models."OpenAI/gpt-4o"]'), "bare lower-case"),
        (_edit('taken = "', 'taken = "x'), "ISO date"),
        (_edit("version = 1", "version = 0"), "positive integer"),
        (_edit('currency = "USD"', 'currency = "EUR"'), "USD"),
        (_edit('currency = "USD"', 'currency = "USD"\nextra = 1'), "top-level keys"),
        (_edit("[aliases]", "[aliases"), "not valid TOML"),
    ],
)
def test_schema_errors_rejected(data: bytes, message: str) -> None:
    """
    Each kind of malformed table (missing field, negative, non-numeric,
    over-precise or boolean price, swapped columns, dangling alias, bad key,
    bad date/version/currency, unknown keys, broken TOML) is refused with a
    message naming the problem.
    """
    with pytest.raises(PriceTableError, match=message):
        PriceTable.from_toml(data)


def test_prices_are_never_floats() -> None:
    """TOML numbers are parsed as Decimal: 0.1 is exactly one tenth."""
    data = _edit(
        "input = 0.10\noutput = 0.40\ncached_input = 0.025", "input = 0.1\noutput = 0.40\ncached_input = 0.025"
    )
    table = PriceTable.from_toml(data)
    price = table.price_for("gpt-4.1-nano")
    assert price is not None
    assert price.input == Decimal("0.1")
    assert Fraction(price.input) == Fraction(1, 10)


def test_overrides_merge_fields(table: PriceTable) -> None:
    """
    A partial override changes only the given fields of a known model,
    accepts strings, ints and floats exactly, and leaves the original
    table untouched.
    """
    updated = table.with_overrides({"gpt-4o": {"input": "2.00", "output": 9, "cached_input": 0.5}})
    price = updated.price_for("gpt-4o-2024-08-06")
    assert price == ModelPrice("gpt-4o", Decimal("2.00"), Decimal(9), Decimal("0.5"), Decimal("2.50"))
    assert updated.overridden == frozenset({"gpt-4o"})
    assert updated.sha256 == table.sha256
    original = table.price_for("gpt-4o")
    assert original is not None and original.input == Decimal("2.50")


def test_override_of_dated_id_is_its_own_entry(table: PriceTable) -> None:
    """
    Overriding a dated id creates an entry for it, starting from the base's
    prices, without changing the base model.
    """
    updated = table.with_overrides({"gpt-4o-2024-11-20": {"output": "8"}})
    dated = updated.price_for("gpt-4o-2024-11-20")
    base = updated.price_for("gpt-4o")
    assert dated is not None and base is not None
    assert (dated.input, dated.output) == (Decimal("2.50"), Decimal("8"))
    assert base.output == Decimal("10.00")


def test_override_adds_unknown_model(table: PriceTable) -> None:
    """
    A model the table does not know can be priced by config with all four
    fields; with fewer it is an error naming the missing ones.
    """
    fields: dict[str, Any] = {
        "input": "0.20",
        "output": "0.60",
        "cached_input": "0.20",
        "cache_write": "0.20",
    }
    updated = table.with_overrides({"llama-3-70b": fields})
    assert updated.cost_usd("llama-3-70b", 10**6, 10**6) == Decimal("0.80")
    with pytest.raises(PriceTableError, match="cache_write"):
        table.with_overrides({"llama-3-70b": {"input": "1", "output": "1", "cached_input": "1"}})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inptu": "1"}, "Unknown price fields"),
        ({"input": "-1"}, "non-negative"),
        ({"input": "NaN"}, "finite"),
        ({"input": float("inf")}, "finite"),
        ({"input": True}, "decimal string or number"),
        ({"input": "abc"}, "decimal number"),
    ],
)
def test_bad_overrides_rejected(table: PriceTable, fields: dict[str, Any], message: str) -> None:
    """
    A typo'd field name or an invalid value in config is an error naming the
    model and field, so a mistake cannot leave the old price in force.
    """
    with pytest.raises(PriceTableError, match=message) as raised:
        table.with_overrides({"gpt-4o": fields})
    assert "gpt-4o" in str(raised.value)
