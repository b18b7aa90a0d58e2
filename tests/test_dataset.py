"""
Our exact Decimal pricing of the genai-prices data agrees with the library's
own ``calc_price``, for every OpenAI and Anthropic chat model it lists, and
reading the data never starts the library's network updater.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from genai_prices import types as gp

from dd0c_route.config import ProviderConfig
from dd0c_route.metering.dataset import Dataset, context_for_tier
from dd0c_route.metering.prices import Prices

_WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_CENT_MILLIONTH = Decimal("0.00000001")
_DATASET = Dataset.load()
_PROVIDERS = (
    ProviderConfig(name="openai", kind="openai", base_url="https://api.openai.com/v1"),
    ProviderConfig(name="anthropic", kind="anthropic", base_url="https://api.anthropic.com"),
)
_PRICES = Prices(_DATASET, providers=_PROVIDERS)
_NOT_CHAT = ("audio", "image", "video")


def _chat_models() -> list[tuple[str, Any]]:
    """
    Every model priced per input and output token, without audio/image/video
    prices, that its own id names (a few fine-tune ids, ``ft:gpt-4o``, only
    match dated names: the library cannot price them by id either).
    """
    from genai_prices.data import providers

    found = []
    for provider in providers:
        if provider.id not in ("openai", "anthropic"):
            continue
        for info in provider.models:
            prices = info.get_prices(_WHEN)
            keys = {k for k, v in prices.__dict__.items() if v is not None}
            chat = {"input_mtok", "output_mtok"} <= keys and not any(m in k for k in keys for m in _NOT_CHAT)
            if chat and info.is_match(info.id):
                found.append((provider.id, info))
    return found


_CHAT = _chat_models()
_CLAUDE = [(p, m) for p, m in _CHAT if p == "anthropic"]


def _ids(models: list[tuple[str, Any]]) -> list[str]:
    return [f"{p}/{m.id}" for p, m in models]


def _theirs(usage: Usage, provider: str, model: str, context: Any = None) -> Decimal:
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=_WHEN, price_context=context).total_price


def _ours(provider: str, model: str, **usage: Any) -> Any:
    quote = _PRICES.quote(model, provider, when=_WHEN.timestamp(), **usage)
    assert quote is not None, f"{provider}/{model} is not priced"
    assert quote.source == f"genai-prices {_DATASET.version}"
    return quote


def _usage(provider: str, total: int, cached: int, written: int = 0, written_1h: int = 0) -> dict[str, Any]:
    """Our usage arguments, as each provider reports the same request."""
    if provider == "openai":
        return {"prompt_tokens": total, "cached_tokens": cached}
    return {
        "prompt_tokens": total - cached - written,
        "cached_tokens": cached,
        "cache_creation_tokens": written,
        "cache_creation_1h_tokens": written_1h,
        "prompt_includes_cached": False,
    }


def test_the_table_covers_current_models() -> None:
    """The dataset prices today's models, which the old shipped table did not."""
    ids = {m.id for _, m in _CHAT}
    assert len(_CHAT) >= 86
    assert {"gpt-5.1", "gpt-5.4", "o3-pro", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-5"} <= ids


@pytest.mark.parametrize(("provider", "info"), _CHAT, ids=_ids(_CHAT))
def test_fixed_usage_matches_calc_price(provider: str, info: Any) -> None:
    """1,234 input tokens (200 of them cached) and 567 output: our cost is the library's, to the cent-millionth."""
    theirs = _theirs(Usage(input_tokens=1234, cache_read_tokens=200, output_tokens=567), provider, info.id)
    quote = _ours(provider, info.id, completion_tokens=567, **_usage(provider, 1234, 200))
    assert abs(quote.cost_usd - theirs) < _CENT_MILLIONTH, (quote, theirs)
    assert quote.tier == "standard"


@pytest.mark.parametrize(("provider", "info"), _CLAUDE, ids=_ids(_CLAUDE))
def test_long_context_claude_matches_calc_price(provider: str, info: Any) -> None:
    """300K input tokens: the long-context rates where the model has them, as the library prices them."""
    usage = Usage(input_tokens=300_000, cache_read_tokens=20_000, cache_write_tokens=10_000, output_tokens=567)
    theirs = _theirs(usage, provider, info.id)
    quote = _ours(provider, info.id, completion_tokens=567, **_usage(provider, 300_000, 20_000, 10_000))
    assert abs(quote.cost_usd - theirs) < _CENT_MILLIONTH, (quote, theirs)
    tiered = isinstance(info.get_prices(_WHEN).input_mtok, gp.TieredPrices)
    assert quote.tier == ("long_context" if tiered else "standard")


@pytest.mark.parametrize(("provider", "info"), _CLAUDE, ids=_ids(_CLAUDE))
def test_one_hour_cache_write_matches_calc_price(provider: str, info: Any) -> None:
    """600 tokens written to the cache, 400 of them for 1 hour: priced apart, as the library does."""
    usage = Usage(
        input_tokens=1834, cache_read_tokens=200, cache_write_tokens=600, cache_write_1h_tokens=400, output_tokens=567
    )
    theirs = _theirs(usage, provider, info.id)
    quote = _ours(provider, info.id, completion_tokens=567, **_usage(provider, 1834, 200, 600, 400))
    assert abs(quote.cost_usd - theirs) < _CENT_MILLIONTH, (quote, theirs)


def test_one_hour_writes_cost_more() -> None:
    """The 1-hour write is not billed as a 5-minute one (the test above could pass with both at one rate)."""
    usage = _usage("anthropic", 1834, 200, 600, 400)
    one_hour = _ours("anthropic", "claude-sonnet-4-5", completion_tokens=567, **usage)
    usage["cache_creation_1h_tokens"] = 0
    five_minutes = _ours("anthropic", "claude-sonnet-4-5", completion_tokens=567, **usage)
    # 400 tokens at $6 instead of $3.75 per million.
    assert one_hour.cost_usd - five_minutes.cost_usd == Decimal("0.000900000000")


_VARIANTS = [
    (provider, info, tier)
    for provider, info in _CHAT
    for tier in ("flex", "priority", "batch")
    for context in [context_for_tier(tier)]
    if info.get_prices(_WHEN, context) != info.get_prices(_WHEN)
]


@pytest.mark.parametrize(
    ("provider", "info", "tier"), _VARIANTS, ids=[f"{p}/{m.id}:{t}" for p, m, t in _VARIANTS]
)
def test_service_tiers_match_calc_price(provider: str, info: Any, tier: str) -> None:
    """A flex, priority or batch response is priced at that tier's rates, as the library prices it."""
    usage = Usage(input_tokens=1234, cache_read_tokens=200, output_tokens=567)
    theirs = _theirs(usage, provider, info.id, context_for_tier(tier))
    quote = _ours(provider, info.id, completion_tokens=567, service_tier=tier, **_usage(provider, 1234, 200))
    assert abs(quote.cost_usd - theirs) < _CENT_MILLIONTH, (quote, theirs)
    assert quote.tier == tier


def test_tiers_are_modelled_for_openai() -> None:
    """The variant tests above are not vacuous: flex and priority exist for OpenAI models."""
    tiers = {(p, t) for p, _, t in _VARIANTS}
    assert {("openai", "flex"), ("openai", "priority"), ("anthropic", "batch")} <= tiers


def test_prices_change_on_their_date() -> None:
    """A dated price change in the data takes effect at its date, not when the rates were first cached."""
    from genai_prices.data import providers

    dated = [
        (p.id, m)
        for p in providers
        if p.id in ("openai", "anthropic")
        for m in p.models
        if isinstance(m.prices, list) and any(isinstance(c.constraint, gp.StartDateConstraint) for c in m.prices)
    ]
    assert dated, "no model with a dated price change"
    provider, info = dated[0]
    change = max(c.constraint.start_date for c in info.prices if isinstance(c.constraint, gp.StartDateConstraint))
    before = datetime(change.year, change.month, change.day, tzinfo=UTC).timestamp() - 3600
    prices = Prices(_DATASET, providers=_PROVIDERS)
    early = prices.rates(info.id, provider, when=before)
    late = prices.rates(info.id, provider, when=before + 7200)
    assert early is not None and late is not None
    assert early.valid_until == before + 3600
    expected_early = Dataset(providers, "x").resolve(provider, info.id, {}, before)
    expected_late = Dataset(providers, "x").resolve(provider, info.id, {}, before + 7200)
    assert expected_early is not None and expected_late is not None
    assert (early.rates, late.rates) == (expected_early.rates, expected_late.rates)


def test_no_update_thread_and_no_network() -> None:
    """Loading and pricing never start genai-prices' updater (the only code that fetches prices)."""
    from genai_prices import update_prices

    Prices.load().quote("gpt-5.4", prompt_tokens=10, completion_tokens=10)
    assert update_prices._shared_updater.ref_count == 0
    assert update_prices._shared_updater.thread is None
    assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]


def test_provider_mapping() -> None:
    """A configured provider bills as the dataset provider of its name, its address, or its kind."""
    assert _DATASET.provider_id("together", "openai", "http://127.0.0.1:9") == "together"
    assert _DATASET.provider_id("mine", "openai", "https://api.groq.com/openai/v1") == "groq"
    assert _DATASET.provider_id("local", "openai", "http://127.0.0.1:9/v1") == "openai"
    assert _DATASET.provider_id("local", "anthropic", "http://127.0.0.1:9") == "anthropic"


def test_data_date() -> None:
    """The data's age is the newest past date it records, never one in the future."""
    today = _WHEN.date()
    newest = _DATASET.data_date(today)
    assert newest is not None and newest <= today
    assert _DATASET.data_date(newest) == newest
