"""
Config fuzz: any TOML-shaped table, mutated from a valid config, is either a
Config or a ConfigError naming a key; no other exception escapes, a secret
never shows in the message, and a config that parses also builds the price
table and provider registry the start builds from it.
"""

from __future__ import annotations

import copy
import datetime
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dd0c_route.config import Config, ConfigError, parse_config
from dd0c_route.metering.prices import Prices
from dd0c_route.providers.registry import ProviderRegistry

SECRET = "sk-test-FAKE" + "0f" * 18


def valid_config() -> dict[str, Any]:
    """A config using every table, which parses."""
    return {
        "server": {
            "listen": "tcp:8080:interface=127.0.0.1", "max_body_bytes": 1024,
            "passthrough": ["/v1/embeddings", "/v1/files"], "client_header_timeout": 30,
            "client_body_timeout": 30.0, "drain_seconds": 0, "workers": "auto",
        },
        "ledger": {"path": "x.sqlite3", "batch_size": 10, "flush_interval": 0.2, "key_cache_ttl": 1},
        "timeouts": {"connect": 1, "first_byte": 2.5, "idle": 3},
        "providers": {
            "openai": {"api_key": SECRET},
            "vllm": {"kind": "openai", "base_url": "http://127.0.0.1:2/v1", "models": ["llama-3", "qwen-*"]},
            "anthropic": {"api_key_env": "ANTHROPIC_KEY", "anthropic_version": "2023-06-01"},
        },
        "prices": {
            "gpt-4o": {"input": 1.5, "output": "2.25"},
            "llama-3": {"input": 0, "output": 0, "cached_input": 0, "cache_write": 0},
        },
        "routing": {
            "mode": "enforce",
            "aliases": {"auto": "gpt-4o"},
            "long_context_tokens": 1000,
            "fallback_after_send": False,
            "circuit_breaker": {"failures": 2, "window": 10, "cooldown": 5},
            "rules": [
                {"name": "cheap", "match": {"complexity": ["simple"], "model": "gpt-*", "tools": False,
                                            "min_prompt_tokens": 0, "max_prompt_tokens": 900},
                 "action": {"model": "gpt-4o-mini"}, "fallbacks": ["llama-3"]},
                {"name": "keep", "match": {"key": ["dev"], "team": "core"}, "action": {"keep": True}},
            ],
        },
        "budgets": {"*": {"requests_per_minute": 60}, "team:core": {"daily_usd": "5.00", "monthly_usd": 100}},
        # Several workers with budgets need shared state.
        "state": {"redis_url": "redis://127.0.0.1:6379/0", "on_redis_down": "local"},
    }


def test_valid_config_parses():
    """The fuzz's starting point is itself valid (otherwise every mutation would just fail early)."""
    assert isinstance(parse_config(valid_config(), {}), Config)


scalars = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "é", "模型", "\x00", "gpt-4o", "auto", "/v1/x", "NaN", "-1", "1e999", "postgresql://"]),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.builds(lambda: datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    config = valid_config()
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = _paths(config)
        path = draw(st.sampled_from(paths[1:] if len(paths) > 1 else paths))
        parent: Any = config
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1] if path else None
        action = draw(st.sampled_from(["replace", "replace", "numeric", "numeric", "delete", "add_key"]))
        if last is None:
            break
        if action == "replace":
            parent[last] = draw(toml_values)
        elif action == "numeric":
            parent[last] = draw(st.sampled_from([-1, 0, -0.0, 10**400, 2**64, math.nan, math.inf, -math.inf, 1e308]))
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=10))] = draw(toml_values)
        else:
            parent[last] = draw(toml_values)
    return config


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_configs(), environ=st.dictionaries(st.sampled_from(["OPENAI_API_KEY", "ANTHROPIC_KEY", "OPENAI_BASE_URL"]), st.text(max_size=10)))
def test_mutated_config_parses_or_names_a_key(raw, environ):
    """parse_config returns a Config or raises ConfigError with a key; nothing else, never the secret."""
    before = copy.deepcopy(raw)
    try:
        config = parse_config(raw, environ)
    except ConfigError as error:
        assert error.key
        assert SECRET not in str(error)
    else:
        assert isinstance(config, Config)
        assert SECRET not in repr(config)
        # What the start builds from it must not fail either.
        Prices.load(config.price_overrides, config.providers)
        ProviderRegistry(config)
    # (deepcopy keeps the same float objects, so a NaN compares equal to itself here.)
    assert raw == before, "parse_config must not change its input"


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(["server", "ledger", "timeouts", "providers", "prices", "routing", "budgets", "x"]), toml_values, max_size=4))
def test_arbitrary_tables_parse_or_name_a_key(raw):
    """Random nesting of every TOML type at the top tables: a Config or a ConfigError, nothing else."""
    try:
        parse_config(raw, {})
    except ConfigError as error:
        assert error.key
