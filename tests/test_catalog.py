"""
The served-model listing (``providers/catalog.ModelCatalog``): config names,
aliases, and provider lists filtered by globs; refreshed on a clock; a
provider that fails or never answers changes nothing and blocks nothing.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from dd0c_route.config import parse_config
from dd0c_route.providers.catalog import ModelCatalog
from dd0c_route.providers.registry import ProviderRegistry

RAW = {
    "providers": {
        "oa": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-FAKE0", "models": ["gpt-*", "my-local"]},
        "an": {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-ant-test-FAKE0", "models": ["claude-sonnet-4-5"]},
    },
    "routing": {"aliases": {"auto": "my-local", "smart": "claude-sonnet-4-5"}},
}


def catalog(fetch: Any = None, raw: dict[str, Any] = RAW) -> tuple[ModelCatalog, Clock]:
    config = parse_config(raw, {})
    clock = Clock()
    registry = ProviderRegistry(config)
    return ModelCatalog(config.providers, registry.provider_for, config.routing.aliases, clock, fetch=fetch, interval=60), clock


def listed(cat: ModelCatalog) -> dict[str, str]:
    return {m["id"]: m["owned_by"] for m in json.loads(cat.body())["data"]}


def test_config_names_and_aliases_without_a_lister() -> None:
    """Exact names and aliases (owned by their target's provider); globs list nothing unasked."""
    cat, _ = catalog()
    cat.startService()
    assert listed(cat) == {"my-local": "oa", "claude-sonnet-4-5": "an", "auto": "oa", "smart": "an"}


def test_provider_list_filtered_by_globs() -> None:
    """Names the provider lists are shown when its globs admit them, and only then."""
    asked = []

    def fetch(provider: Any) -> Deferred[list[str]]:
        asked.append(provider.name)
        return succeed(["gpt-4o", "gpt-4.1-mini", "dall-e-3", "whisper-1"])

    cat, _ = catalog(fetch)
    cat.startService()
    assert asked == ["oa"]  # the anthropic provider lists exact names only
    models = listed(cat)
    assert models["gpt-4o"] == "oa" and models["gpt-4.1-mini"] == "oa"
    assert "dall-e-3" not in models and "whisper-1" not in models


def test_refreshed_on_the_clock_and_failures_keep_the_last_list() -> None:
    answers: list[Any] = [succeed(["gpt-4o"]), fail(ConnectionRefusedError()), succeed(["gpt-4o", "gpt-5"])]
    cat, clock = catalog(lambda provider: answers.pop(0))
    cat.startService()
    assert "gpt-4o" in listed(cat)
    clock.advance(60)  # refused: the last good list stays
    assert "gpt-4o" in listed(cat) and "gpt-5" not in listed(cat)
    clock.advance(60)
    assert "gpt-5" in listed(cat)
    cat.stopService()
    assert not clock.getDelayedCalls()


def test_a_provider_that_never_answers_blocks_nothing() -> None:
    """The listing answers at once while the fetch hangs; stopping cancels it."""
    hanging: Deferred[list[str]] = Deferred()
    cat, _ = catalog(lambda provider: hanging)
    cat.startService()
    assert "my-local" in listed(cat) and "auto" in listed(cat)
    assert not hanging.called
    cat.stopService()
    assert hanging.called  # cancelled
