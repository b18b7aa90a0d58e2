"""
Tests for dd0c_route.metering.prices: overrides over the dataset, provider-
qualified overrides, unknown models unpriced, tier names, and the cache.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from dd0c_route.config import ProviderConfig
from dd0c_route.metering.dataset import Dataset
from dd0c_route.metering.prices import CONFIG_SOURCE, PriceError, Prices, price_warnings, tier_name
from dd0c_route.metering.usage import UsageFacts

_DATASET = Dataset.load()
_SOURCE = f"genai-prices {_DATASET.version}"
_PROVIDERS = (
    ProviderConfig(name="openai", kind="openai", base_url="https://api.openai.com/v1", models=("gpt-5.4",)),
    ProviderConfig(name="together", kind="openai", base_url="https://api.together.xyz/v1"),
    ProviderConfig(name="groq", kind="openai", base_url="https://api.groq.com/openai/v1"),
)


def prices(overrides: Any = None) -> Prices:
    return Prices(_DATASET, overrides or {}, _PROVIDERS)


def test_dataset_prices_a_current_model() -> None:
    """A model only the dataset knows is priced, and the quote names the dataset's version."""
    quote = prices().quote("gpt-5.4", "openai", prompt_tokens=100_000, completion_tokens=0)
    assert quote is not None
    assert (quote.cost_usd, quote.source, quote.tier) == (Decimal("0.25"), _SOURCE, "standard")


def test_unknown_model_is_unpriced() -> None:
    """A model nothing prices has no quote: never zero, never a guess from a similar name."""
    table = prices()
    for model in ("no-such-model", "gpt-5.4-turbo-ultra", "claude-opus-99"):
        assert table.quote(model, "openai", prompt_tokens=10, completion_tokens=10) is None
        assert table.price_for(model) is None


def test_override_wins_over_dataset() -> None:
    """``[prices."gpt-5.4"]`` replaces the dataset's price; fields left out keep the dataset's."""
    table = prices({"gpt-5.4": {"output": "1"}})
    quote = table.quote("gpt-5.4", "openai", prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert quote is not None
    assert (quote.cost_usd, quote.source, quote.tier) == (Decimal("3.5"), CONFIG_SOURCE, "standard")


def test_override_is_flat() -> None:
    """An overridden model has no long-context tier and ignores the service tier: config is what is paid."""
    table = prices({"claude-sonnet-4-5": {"input": "1", "output": "1", "cached_input": "1", "cache_write": "1"}})
    quote = table.quote("claude-sonnet-4-5", prompt_tokens=300_000, completion_tokens=0, service_tier="batch")
    assert quote is not None
    assert (quote.cost_usd, quote.tier) == (Decimal("0.3"), "standard")


def test_override_follows_dated_ids() -> None:
    """An override for a base id prices its dated snapshots too."""
    table = prices({"gpt-4o": {"input": "1", "output": "1"}})
    quote = table.quote("gpt-4o-2024-08-06", "openai", prompt_tokens=1_000_000, completion_tokens=0)
    assert quote is not None and quote.source == CONFIG_SOURCE and quote.cost_usd == Decimal(1)


def test_provider_qualified_override() -> None:
    """``[prices."together/m"]`` prices m served by together only; the same name elsewhere keeps its price."""
    full = {"input": "0.5", "output": "0.5", "cached_input": "0.5", "cache_write": "0.5"}
    table = prices({"together/my-llama": full, "groq/my-llama": {**full, "input": "0.1"}})
    tog = table.quote("my-llama", "together", prompt_tokens=1_000_000, completion_tokens=0)
    groq = table.quote("my-llama", "groq", prompt_tokens=1_000_000, completion_tokens=0)
    assert tog is not None and groq is not None
    assert (tog.cost_usd, groq.cost_usd) == (Decimal("0.5"), Decimal("0.1"))
    assert table.quote("my-llama", "openai", prompt_tokens=1, completion_tokens=0) is None


def test_slash_in_model_name_is_not_a_provider() -> None:
    """A model name with a slash whose prefix is no configured provider is an ordinary override key."""
    full = {"input": "2", "output": "2", "cached_input": "2", "cache_write": "2"}
    table = prices({"meta-llama/llama-x": full})
    quote = table.quote("meta-llama/llama-x", "together", prompt_tokens=1_000_000, completion_tokens=0)
    assert quote is not None and quote.cost_usd == Decimal(2)


def test_new_model_needs_all_prices() -> None:
    """An override for a model the data does not know must give every price; a typo'd field is an error."""
    with pytest.raises(PriceError, match="missing"):
        prices({"my-model": {"input": "1"}})
    with pytest.raises(PriceError, match="unknown"):
        prices({"gpt-5.4": {"ouptut": "1"}})
    with pytest.raises(PriceError, match="non-negative"):
        prices({"gpt-5.4": {"output": "-1"}})


def test_one_hour_write_default_for_new_model() -> None:
    """Without ``cache_write_1h``, a config-only model bills 1-hour writes as cache writes."""
    table = prices({"mine": {"input": "1", "output": "1", "cached_input": "0", "cache_write": "2"}})
    quote = table.quote(
        "mine", prompt_tokens=0, completion_tokens=0, cache_creation_tokens=1_000_000,
        cache_creation_1h_tokens=500_000, prompt_includes_cached=False,
    )
    assert quote is not None and quote.cost_usd == Decimal(2)


def test_dataset_provider_prices() -> None:
    """A provider named like a dataset provider is priced by that provider's list."""
    quote = prices().quote("llama-3.3-70b-versatile", "groq", prompt_tokens=1_000_000, completion_tokens=0)
    assert quote is not None and quote.source == _SOURCE and quote.cost_usd > 0


def test_facts_service_tier_and_long_context() -> None:
    """A response's reported service tier and a long prompt both show in the quote's tier."""
    facts = UsageFacts()
    facts.take_body({"service_tier": "flex", "usage": {"prompt_tokens": 300_000, "completion_tokens": 1}})
    quote = prices().quote_facts("gpt-5.4", "openai", facts)
    assert quote is not None and quote.tier == "flex+long_context"


def test_no_tokens_costs_zero_when_priced() -> None:
    """A request without usage costs zero for a known model and stays unpriced for an unknown one."""
    facts = UsageFacts()
    quote = prices().quote_facts("gpt-5.4", "openai", facts)
    assert quote is not None and quote.cost_usd == 0
    assert prices().quote_facts("nope", "openai", facts) is None


@pytest.mark.parametrize(
    ("variant", "long_context", "name"),
    [
        (None, False, "standard"),
        ("default", False, "standard"),
        (None, True, "long_context"),
        ("flex", False, "flex"),
        ("batch", True, "batch+long_context"),
    ],
)
def test_tier_names(variant: Any, long_context: bool, name: str) -> None:
    """The record's price_tier combines the variant and long context."""
    assert tier_name(variant, long_context) == name


def test_rates_cached_and_bounded() -> None:
    """Rates are resolved once per model; the cache of client-chosen names is bounded."""
    table = prices()
    first = table.rates("gpt-5.4", "openai", when=1.8e9)
    assert table.rates("gpt-5.4", "openai", when=1.8e9) is first
    for i in range(5000):
        table.rates(f"unknown-{i}", "openai", when=1.8e9)
    assert len(table._cache) <= 4096


def test_warnings() -> None:
    """``check`` warns for each configured exact model nothing prices, and for stale data."""
    providers = (*_PROVIDERS, ProviderConfig(name="x", kind="openai", base_url="http://127.0.0.1:1", models=("zz-1", "g*")))
    table = Prices(_DATASET, {}, providers)
    newest = _DATASET.data_date(date(2100, 1, 1))
    assert newest is not None
    fresh = price_warnings(table, providers, newest)
    assert len(fresh) == 1 and "'zz-1'" in fresh[0]
    stale = price_warnings(table, providers, date.fromordinal(newest.toordinal() + 91))
    assert len(stale) == 2 and "older than 90 days" in stale[1]


def test_describe() -> None:
    """``dd0c-route prices`` lines: the source, then one row per tier with its rates."""
    lines = prices().describe("claude-sonnet-4-5")
    assert lines[0] == f"claude-sonnet-4-5: claude-sonnet-4-5, source {_SOURCE}, USD per million tokens"
    assert lines[2].split() == ["standard", "3", "15", "0.3", "3.75", "6"]
    assert lines[3].split()[:3] == ["long_context", "(input", ">"]
    assert any(line.split()[0] == "batch" for line in lines)
    assert prices().describe("nope") == ["nope: no price (cost_usd stays null)"]
