# Tests: tests/test_config.py, tests/test_config_fuzz.py
"""
The config rules that relate several values, written by hand: everything
else is declared on the config classes (:mod:`dd0c_route.config`) and read
by the schema walker (:mod:`dd0c_route.schema`).

A provider's defaults come from its name and the environment; a model must
map to one provider; aliases, rule models and fallbacks must name served
models; a price override for a model the shipped table does not know must
give every price; an alert gives exactly one of threshold and amount_usd,
and a threshold needs its scope's budget for the period.
"""

from __future__ import annotations

import fnmatch
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .schema import ConfigError, dotted
from .secret import Secret

if TYPE_CHECKING:
    from .config import AlertConfig, BudgetConfig, ProviderConfig, RoutingConfig

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_MODELS",
    "PROVIDER_KINDS",
    "check_alerts",
    "check_clashes",
    "check_prices",
    "check_routing",
    "provider_defaults",
]

PROVIDER_KINDS = ("openai", "anthropic")

#: Models each kind serves when a provider declares none: the public
#: providers' families, as globs, so that an exact name declared by another
#: provider (a second account, a local server) wins over them.
DEFAULT_MODELS: Mapping[str, tuple[str, ...]] = {
    "openai": (
        "gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*",
        "omni-moderation-*", "text-moderation-*", "davinci-*", "babbage-*",
    ),
    "anthropic": ("claude-*",),
}

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


def provider_defaults(environ: Mapping[str, str]) -> Any:
    """A provider's defaults from its name and the environment (the :data:`~dd0c_route.schema.Fill` of ProviderConfig)."""

    def fill(values: dict[str, Any], table: Mapping[str, Any], path: str) -> None:
        name = values["name"]
        public = name in PROVIDER_KINDS
        if "kind" not in values:
            if not public:
                raise ConfigError(
                    f"{path}.kind",
                    "is required for a provider not named openai or anthropic (one of: openai, anthropic)",
                )
            values["kind"] = name
        if "base_url" not in values and public:
            values["base_url"] = environ.get(f"{name.upper()}_BASE_URL") or DEFAULT_BASE_URLS[name]
        if "models" not in values:
            if not public:
                raise ConfigError(f"{path}.models", "must list the models this provider serves")
            values["models"] = DEFAULT_MODELS[values["kind"]]
        if "api_key" in values and "api_key_env" in values:
            raise ConfigError(f"{path}.api_key", "set either api_key or api_key_env, not both")
        if "api_key" not in values:
            variable = values.get("api_key_env") or (f"{name.upper()}_API_KEY" if public else None)
            if variable is not None:
                values["api_key_env"] = variable
                key = environ.get(variable, "")
                values["api_key"] = Secret(key) if key else None

    return fill


def check_clashes(providers: tuple[ProviderConfig, ...]) -> None:
    """
    The same name or glob declared by two providers is a clash.  Exact names
    win over globs, and a longer glob over a shorter one (see
    :mod:`dd0c_route.providers.registry`), so every model maps to one
    provider.
    """
    owner: dict[str, str] = {}
    for provider in providers:
        for model in provider.models:
            other = owner.get(model)
            if other is not None and other != provider.name:
                raise ConfigError(
                    dotted(dotted("providers", provider.name), "models"),
                    f"model {model!r} is already served by provider {other!r}; "
                    "a model name must map to exactly one provider",
                )
            owner[model] = provider.name


def _served(providers: tuple[ProviderConfig, ...], model: str) -> bool:
    for provider in providers:
        if model in provider.exact_models:
            return True
        if any(fnmatch.fnmatchcase(model, glob) for glob in provider.model_globs):
            return True
    return False


def _check_served(providers: tuple[ProviderConfig, ...], key: str, model: str) -> None:
    if not _served(providers, model):
        raise ConfigError(key, f"no provider serves the model {model!r} (add it to a provider's models)")


def check_routing(routing: RoutingConfig, providers: tuple[ProviderConfig, ...]) -> None:
    """Aliases, rule models and fallbacks name served models; rule names are unique."""
    for alias, target in routing.aliases.items():
        _check_served(providers, dotted("routing.aliases", alias), target)
    seen: set[str] = set()
    for index, rule in enumerate(routing.rules):
        prefix = dotted("routing.rules", index)
        if rule.name in seen:
            raise ConfigError(f"{prefix}.name", f"another rule is already named {rule.name!r}")
        seen.add(rule.name)
        if rule.model is not None:
            _check_served(providers, f"{prefix}.action.model", rule.model)
        for position, fallback in enumerate(rule.fallbacks):
            _check_served(providers, dotted(f"{prefix}.fallbacks", position), fallback)


def check_prices(overrides: Mapping[str, Mapping[str, Decimal]], providers: Sequence[Any] = ()) -> None:
    """
    Every override must load as the start will load it (an override for a
    model the price data does not know must give the four base prices), so
    that nothing the price table could refuse reaches the start; the error
    names the override's key.
    """
    from .metering.prices import PriceError, Prices

    for model, fields in overrides.items():
        try:
            Prices.load({model: fields}, providers)
        except PriceError as error:
            raise ConfigError(dotted("prices", model), str(error)) from None


def check_alerts(alerts: Sequence[AlertConfig], budgets: Sequence[BudgetConfig]) -> None:
    """
    Each alert fires on exactly one line: ``threshold`` (a fraction of the
    scope's budget for its period, which must then be configured) or
    ``amount_usd``.
    """
    by_scope = {budget.scope: budget for budget in budgets}
    for index, alert in enumerate(alerts):
        prefix = dotted("alerts", index)
        if (alert.threshold is None) == (alert.amount_usd is None):
            raise ConfigError(f"{prefix}.threshold", "give exactly one of threshold (a fraction of the budget) or amount_usd")
        if alert.threshold is not None:
            budget = by_scope.get(alert.scope)
            limit = None if budget is None else (budget.daily_usd if alert.period == "daily" else budget.monthly_usd)
            if limit is None:
                field = "daily_usd" if alert.period == "daily" else "monthly_usd"
                raise ConfigError(
                    f"{prefix}.threshold",
                    f"is a fraction of the {alert.period} budget, but [budgets.\"{alert.scope}\"] sets no {field} "
                    "(set one, or give amount_usd instead)",
                )
