"""
Routing rules, table-driven: which rule fires for which request, what the
decision is in each mode, aliases, and config errors that name the key.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from twisted.internet.task import Clock

from dd0c_route.config import ConfigError, parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.providers.registry import ProviderRegistry
from dd0c_route.routing.breaker import CircuitBreaker
from dd0c_route.routing.classifier import HeuristicClassifier
from dd0c_route.routing.features import measure_request
from dd0c_route.routing.router import Router, UnknownModel

BOTH = frozenset({"openai", "anthropic"})
ANTHROPIC = frozenset({"anthropic"})

RULES = [
    {"name": "vision", "match": {"images": True}, "action": {"keep": True}},
    {"name": "tools", "match": {"tools": True}, "action": {"keep": True}, "fallbacks": ["claude-sonnet-4-5"]},
    {"name": "json", "match": {"json_mode": True, "model": "gpt-4o*"}, "action": {"model": "gpt-4.1-mini"}},
    {"name": "long", "match": {"long_context": True}, "action": {"model": "gpt-4.1"}},
    {"name": "vip", "match": {"team": "research"}, "action": {"keep": True}},
    {"name": "intern", "match": {"key": ["intern", "key_000000000009"]}, "action": {"model": "gpt-4o-mini"}},
    {"name": "big-prompt", "match": {"model": "gpt-4o", "min_prompt_tokens": 5000}, "action": {"keep": True}},
    {
        "name": "cheap",
        "match": {"model": ["gpt-4o", "gpt-4-*"], "complexity": ["simple"], "max_prompt_tokens": 2000},
        "action": {"model": "gpt-4o-mini"},
        "fallbacks": ["claude-haiku-4-5", "gpt-4o-mini"],
    },
    {"name": "claude-cheap", "match": {"model": "claude-sonnet-*", "complexity": ["simple", "medium"]}, "action": {"model": "claude-haiku-4-5"}},
    {"name": "to-claude", "match": {"model": "o3*"}, "action": {"model": "claude-opus-4-1"}},
]


def make_router(mode: str = "enforce", rules: Optional[list[Any]] = None, **routing: Any) -> Router:
    config = parse_config(
        {"routing": dict({"mode": mode, "rules": RULES if rules is None else rules, "aliases": {"auto": "gpt-4o"}}, **routing)},
        {},
    )
    breaker = CircuitBreaker(Clock(), config.routing.circuit_breaker)
    return Router(config.routing, ProviderRegistry(config), HeuristicClassifier(), breaker)


def key(name: str = "dev", team: Optional[str] = "core", key_id: str = "key_000000000001") -> KeyInfo:
    return KeyInfo(key_id, name, "hash", 0.0, team)


HELLO = [{"role": "user", "content": "Hello! How are you?"}]
PROOF = [{"role": "user", "content": "Prove that there are infinitely many primes."}]
IMAGE = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]
LONG = [{"role": "user", "content": "word " * 30000}]
MIDDLE = [{"role": "user", "content": "hello there " * 2000}]

# (case, requested model, messages, extra body, key, kinds, expected rule, expected model, expected chain tail)
TABLE = [
    ("simple gpt-4o goes cheap", "gpt-4o", HELLO, {}, key(), BOTH, "cheap", "gpt-4o-mini", ["claude-haiku-4-5"]),
    ("glob list matches gpt-4-turbo", "gpt-4-turbo", HELLO, {}, key(), BOTH, "cheap", "gpt-4o-mini", ["claude-haiku-4-5"]),
    ("alias auto counts as gpt-4o", "auto", HELLO, {}, key(), BOTH, "cheap", "gpt-4o-mini", ["claude-haiku-4-5"]),
    ("reasoning stays", "gpt-4o", PROOF, {}, key(), BOTH, "default", "gpt-4o", []),
    ("images keep the model", "gpt-4o", IMAGE, {}, key(), BOTH, "vision", "gpt-4o", []),
    ("tools keep with fallbacks", "gpt-4o", HELLO, {"tools": [{"type": "function"}]}, key(), BOTH, "tools", "gpt-4o", ["claude-sonnet-4-5"]),
    ("json mode", "gpt-4o-mini", HELLO, {"response_format": {"type": "json_object"}}, key(), BOTH, "json", "gpt-4.1-mini", []),
    ("json mode, model glob misses", "gpt-4.1", HELLO, {"response_format": {"type": "json_schema"}}, key(), BOTH, "default", "gpt-4.1", []),
    ("long context", "gpt-4o", LONG, {}, key(), BOTH, "long", "gpt-4.1", []),
    ("team match", "gpt-4o", HELLO, {}, key(team="research"), BOTH, "vip", "gpt-4o", []),
    ("key by name", "gpt-4o", PROOF, {}, key(name="intern"), BOTH, "intern", "gpt-4o-mini", []),
    ("key by id", "gpt-4o", PROOF, {}, key(key_id="key_000000000009"), BOTH, "intern", "gpt-4o-mini", []),
    ("no key: key rules skipped", "gpt-4o", PROOF, {}, None, BOTH, "default", "gpt-4o", []),
    ("min prompt tokens", "gpt-4o", MIDDLE, {}, key(), BOTH, "big-prompt", "gpt-4o", []),
    ("claude to cheaper claude", "claude-sonnet-4-5", HELLO, {}, key(), BOTH, "claude-cheap", "claude-haiku-4-5", []),
    ("to another provider", "o3-mini", HELLO, {}, key(), BOTH, "to-claude", "claude-opus-4-1", []),
    ("unreachable target skipped", "gpt-4o", HELLO, {}, key(), frozenset({"anthropic"}), "default", "gpt-4o", []),
    ("native messages: claude only", "claude-sonnet-4-5", HELLO, {}, key(), ANTHROPIC, "claude-cheap", "claude-haiku-4-5", []),
    ("unmatched model", "gpt-3.5-turbo", HELLO, {}, key(), BOTH, "default", "gpt-3.5-turbo", []),
]


@pytest.mark.parametrize("case,model,messages,extra,caller,kinds,rule,served,tail", TABLE, ids=[row[0] for row in TABLE])
def test_rule_table(case, model, messages, extra, caller, kinds, rule, served, tail):
    """The first matching rule wins and decides the served model and the fallback chain."""
    router = make_router()
    body = dict(extra, model=model, messages=messages)
    decision = router.decide(model, body, messages, caller, kinds)
    assert (decision.route, decision.model) == (rule, served), case
    assert [m for m, _ in decision.chain[1:]] == tail
    assert decision.complexity == decision.classification.label


def test_decision_carries_provider_and_requested():
    """A cross-provider decision names the provider; the alias counts as its target."""
    decision = make_router().decide("auto", {"model": "auto"}, HELLO, key(), BOTH)
    assert decision.requested == "gpt-4o"
    assert decision.provider.name == "openai"
    assert [p.name for _, p in decision.chain] == ["openai", "anthropic"]


def test_fallback_duplicates_dropped():
    """A fallback equal to an earlier model of the chain is not tried twice."""
    decision = make_router().decide("gpt-4o", {}, HELLO, key(), BOTH)
    assert [m for m, _ in decision.chain] == ["gpt-4o-mini", "claude-haiku-4-5"]


def test_shadow_mode_records_without_applying():
    """Shadow: the request is served as asked; the rule and its model are only noted."""
    decision = make_router("shadow").decide("gpt-4o", {}, HELLO, key(), BOTH)
    assert decision.route == "shadow:cheap"
    assert decision.model == "gpt-4o"
    assert decision.shadow_model == "gpt-4o-mini"
    assert len(decision.chain) == 1


def test_off_mode_evaluates_nothing_but_aliases_and_complexity():
    """Off: no rule, the alias still resolves, the complexity is still measured."""
    decision = make_router("off").decide("auto", {}, HELLO, key(), BOTH)
    assert (decision.route, decision.model, decision.complexity) == ("default", "gpt-4o", "simple")


def test_unknown_model():
    """A model no provider serves is refused by the router (a 404 upstream of it)."""
    with pytest.raises(UnknownModel):
        make_router().decide("llama-9", {}, HELLO, key(), BOTH)


def test_features_estimate_is_characters_over_four():
    """The prompt size is characters / 4 over every text, system included."""
    request = measure_request({}, [{"role": "user", "content": "x" * 400}], 32000, system="y" * 400)
    assert request.features.prompt_tokens == 200
    assert request.system_text == "y" * 400


def test_anthropic_shapes_measured():
    """Anthropic blocks: text, image and tool_result content are read."""
    messages = [
        {"role": "user", "content": [{"type": "image", "source": {}}, {"type": "text", "text": "abcd" * 10}]},
        {"role": "user", "content": [{"type": "tool_result", "content": [{"type": "text", "text": "efgh" * 10}]}]},
    ]
    features = measure_request({}, messages, 10).features
    assert features.images and features.prompt_tokens == 20 and features.long_context
    assert features.user_turns == 2


@pytest.mark.parametrize(
    "routing,key_name",
    [
        ({"mode": "on"}, "routing.mode"),
        ({"speed": 1}, "routing.speed"),
        ({"aliases": {"auto": "llama-9"}}, "routing.aliases.auto"),
        ({"rules": [{"match": {}, "action": {"keep": True}}]}, "routing.rules[0].name"),
        ({"rules": [{"name": "default", "action": {"keep": True}}]}, "routing.rules[0].name"),
        ({"rules": [{"name": "a", "action": {"keep": True}}, {"name": "a", "action": {"keep": True}}]}, "routing.rules[1].name"),
        ({"rules": [{"name": "a"}]}, "routing.rules[0].action"),
        ({"rules": [{"name": "a", "action": {"keep": True, "model": "gpt-4o"}}]}, "routing.rules[0].action"),
        ({"rules": [{"name": "a", "action": {"model": "gpt-*"}}]}, "routing.rules[0].action.model"),
        ({"rules": [{"name": "a", "action": {"model": "llama-9"}}]}, "routing.rules[0].action.model"),
        ({"rules": [{"name": "a", "action": {"keep": True}, "fallbacks": ["llama-9"]}]}, "routing.rules[0].fallbacks[0]"),
        ({"rules": [{"name": "a", "match": {"complexity": ["easy"]}, "action": {"keep": True}}]}, "routing.rules[0].match.complexity"),
        ({"rules": [{"name": "a", "match": {"tools": "yes"}, "action": {"keep": True}}]}, "routing.rules[0].match.tools"),
        ({"rules": [{"name": "a", "match": {"colour": 1}, "action": {"keep": True}}]}, "routing.rules[0].match.colour"),
        ({"rules": [{"name": "a", "match": {"min_prompt_tokens": 9, "max_prompt_tokens": 3}, "action": {"keep": True}}]}, "routing.rules[0].match.min_prompt_tokens"),
        ({"circuit_breaker": {"failures": 0}}, "routing.circuit_breaker.failures"),
        ({"long_context_tokens": -1}, "routing.long_context_tokens"),
        ({"fallback_after_send": "yes"}, "routing.fallback_after_send"),
    ],
)
def test_bad_routing_config_names_the_key(routing, key_name):
    """A bad routing value stops the start with a ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_config({"routing": routing}, {})
    assert info.value.key == key_name


@pytest.mark.parametrize(
    "budgets,key_name",
    [
        ({"me": {"daily_usd": "five"}}, "budgets.me.daily_usd"),
        ({"me": {"monthly_usd": -1}}, "budgets.me.monthly_usd"),
        ({"me": {"requests_per_minute": 0}}, "budgets.me.requests_per_minute"),
        ({"me": {"tokens_per_minute": 1.5}}, "budgets.me.tokens_per_minute"),
        ({"me": {"hourly_usd": 1}}, "budgets.me.hourly_usd"),
        ({"team:": {"daily_usd": 1}}, "budgets.team:"),
        ({"me": 5}, "budgets.me"),
    ],
)
def test_bad_budget_config_names_the_key(budgets, key_name):
    """A bad budget value stops the start with a ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_config({"budgets": budgets}, {})
    assert info.value.key == key_name


def test_defaults():
    """No [routing]: off, no rules; a [routing] table without mode is shadow (safe)."""
    assert parse_config({}, {}).routing.mode == "off"
    assert parse_config({"routing": {}}, {}).routing.mode == "shadow"
    budgets = parse_config({"budgets": {"*": {"daily_usd": 5, "requests_per_minute": 60}}}, {}).budgets
    assert str(budgets[0].daily_usd) == "5" and budgets[0].requests_per_minute == 60
