# Tests: tests/test_config.py
"""
The operator's configuration: a TOML file read once at start.

Every value is checked here, at start, so that a bad config fails with a
message naming the key and the problem instead of failing on the first
request.  With no file at all the proxy runs on embedded defaults: loopback
port 8080, a SQLite ledger in the working directory and the two public
providers, keyed from the usual environment variables.

Provider keys are held as :class:`~dd0c_route.secret.Secret` so that the
config can be formatted (attrs reprs, tracebacks) without showing them.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Optional

import attrs

from .secret import Secret
from .state.config import StateConfig, StateConfigError, parse_state

__all__ = [
    "BudgetConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "LedgerConfig",
    "ProviderConfig",
    "RouteRule",
    "RoutingConfig",
    "RuleMatch",
    "ServerConfig",
    "TimeoutConfig",
    "load_config",
    "parse_config",
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

#: What ``GET /v1/models`` lists for a provider that serves only globs.
KNOWN_MODELS: Mapping[str, tuple[str, ...]] = {
    "openai": (
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o3-mini", "o4-mini",
        "gpt-4-turbo", "gpt-3.5-turbo", "text-embedding-3-small",
        "text-embedding-3-large",
    ),
    "anthropic": (
        "claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5",
        "claude-sonnet-4-0", "claude-3-7-sonnet-latest", "claude-3-5-haiku-latest",
    ),
}

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class ConfigError(Exception):
    """
    The configuration is wrong; the message names the key and the problem.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@attrs.frozen
class ServerConfig:
    """Where and how the proxy listens."""

    listen: str = "tcp:8080:interface=127.0.0.1"
    max_body_bytes: int = 10 * 1024 * 1024
    #: Worker processes sharing the listening socket (``"auto"``: one per CPU).
    workers: int = 1


@attrs.frozen
class LedgerConfig:
    """Where usage records and proxy keys are kept."""

    path: str = "dd0c-route.sqlite3"
    batch_size: int = 500
    flush_interval: float = 0.2
    key_cache_ttl: float = 5.0


@attrs.frozen
class TimeoutConfig:
    """
    Upstream timeouts, in seconds.  Twisted never times out an in-flight
    stream by itself, so each phase has its own limit.
    """

    connect: float = 10.0
    first_byte: float = 600.0
    idle: float = 300.0


@attrs.frozen
class ProviderConfig:
    """
    One upstream: its kind (the API it speaks), its address, its key and the
    models it serves (exact names or ``fnmatch`` globs).
    """

    name: str
    kind: str
    base_url: str
    api_key: Optional[Secret] = attrs.field(default=None, repr=False)
    models: tuple[str, ...] = ()
    anthropic_version: str = "2023-06-01"

    @property
    def exact_models(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if not _is_glob(m))

    @property
    def model_globs(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if _is_glob(m))


ROUTING_MODES = ("off", "shadow", "enforce")


@attrs.frozen
class RuleMatch:
    """
    When a routing rule applies: every condition given must hold (an empty
    match always holds).  ``models`` are names or globs tested against the
    model the client asked for and, for an alias, its target; ``keys`` are
    key names or ids; ``prompt_tokens`` bounds are on the character-based
    estimate.
    """

    models: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    complexity: tuple[str, ...] = ()
    min_prompt_tokens: Optional[int] = None
    max_prompt_tokens: Optional[int] = None
    tools: Optional[bool] = None
    images: Optional[bool] = None
    json_mode: Optional[bool] = None
    long_context: Optional[bool] = None


@attrs.frozen
class RouteRule:
    """
    One routing rule: its name (shown in ``x-dd0c-route``), when it applies,
    the model to serve with (``None``: keep the requested one) and the
    models to fall back to, in order.
    """

    name: str
    match: RuleMatch = RuleMatch()
    model: Optional[str] = None
    fallbacks: tuple[str, ...] = ()


@attrs.frozen
class CircuitBreakerConfig:
    """A provider failing ``failures`` times within ``window`` s is skipped for ``cooldown`` s."""

    failures: int = 5
    window: float = 30.0
    cooldown: float = 30.0


@attrs.frozen
class RoutingConfig:
    """
    The router: ``mode`` is ``off`` (no rule is evaluated), ``shadow`` (rules
    are evaluated and recorded, never applied) or ``enforce``.
    """

    mode: str = "off"
    aliases: Mapping[str, str] = attrs.field(factory=dict)
    rules: tuple[RouteRule, ...] = ()
    long_context_tokens: int = 32000
    fallback_after_send: bool = True
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()


@attrs.frozen
class BudgetConfig:
    """
    Limits for one scope: a key (by name or id), ``team:NAME``, or ``*``
    (each key on its own).  ``None`` means no limit.
    """

    scope: str
    daily_usd: Optional[Decimal] = None
    monthly_usd: Optional[Decimal] = None
    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None


@attrs.frozen
class Config:
    """The whole configuration, checked."""

    server: ServerConfig = ServerConfig()
    ledger: LedgerConfig = LedgerConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    providers: tuple[ProviderConfig, ...] = ()
    price_overrides: Mapping[str, Mapping[str, Decimal]] = attrs.field(factory=dict)
    source: Optional[str] = None
    routing: RoutingConfig = RoutingConfig()
    budgets: tuple[BudgetConfig, ...] = ()
    #: Shared limits, revocations and breaker (``[state]``); None: in process.
    state: Optional[StateConfig] = None

    def provider_named(self, name: str) -> Optional[ProviderConfig]:
        for provider in self.providers:
            if provider.name == name:
                return provider
        return None


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key.rsplit(".", 1)[-1], {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, not {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            raise ConfigError(
                f"{prefix}.{name}" if prefix else name,
                "unknown key (allowed: " + ", ".join(sorted(allowed)) + ")",
            )


def _get(table: Mapping[str, Any], prefix: str, name: str, kind: type, default: Any) -> Any:
    if name not in table:
        return default
    value = table[name]
    key = f"{prefix}.{name}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(key, "must be an integer, not a boolean")
    if not isinstance(value, kind):
        raise ConfigError(key, f"must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _positive(key: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0 (got {value})")
    return value


def _parse_server(raw: Mapping[str, Any]) -> ServerConfig:
    table = _table(raw, "server")
    _check_keys(table, "server", {"listen", "max_body_bytes", "workers"})
    listen = _get(table, "server", "listen", str, ServerConfig().listen)
    if not listen.strip():
        raise ConfigError("server.listen", "must be a Twisted strports description")
    max_body = _get(table, "server", "max_body_bytes", int, ServerConfig().max_body_bytes)
    _positive("server.max_body_bytes", max_body)
    workers = table.get("workers", 1)
    if workers == "auto":
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ConfigError("server.workers", 'must be a whole number from 1 to 256, or "auto" (one per CPU)')
    return ServerConfig(listen=listen, max_body_bytes=max_body, workers=workers)


def _parse_ledger(raw: Mapping[str, Any]) -> LedgerConfig:
    table = _table(raw, "ledger")
    _check_keys(table, "ledger", {"path", "batch_size", "flush_interval", "key_cache_ttl"})
    path = _get(table, "ledger", "path", str, LedgerConfig().path)
    if not path:
        raise ConfigError("ledger.path", "must not be empty")
    batch = _get(table, "ledger", "batch_size", int, LedgerConfig().batch_size)
    interval = _get(table, "ledger", "flush_interval", float, LedgerConfig().flush_interval)
    ttl = _get(table, "ledger", "key_cache_ttl", float, LedgerConfig().key_cache_ttl)
    _positive("ledger.batch_size", batch)
    _positive("ledger.flush_interval", interval)
    _positive("ledger.key_cache_ttl", ttl)
    if ttl > 5.0:
        raise ConfigError("ledger.key_cache_ttl", "must be at most 5 seconds (revoked keys must stop working within 5 s)")
    return LedgerConfig(path=path, batch_size=batch, flush_interval=interval, key_cache_ttl=ttl)


def _parse_timeouts(raw: Mapping[str, Any]) -> TimeoutConfig:
    table = _table(raw, "timeouts")
    _check_keys(table, "timeouts", {"connect", "first_byte", "idle"})
    values = {}
    for name in ("connect", "first_byte", "idle"):
        value = _get(table, "timeouts", name, float, getattr(TimeoutConfig(), name))
        values[name] = _positive(f"timeouts.{name}", value)
    return TimeoutConfig(**values)


def _provider_key(
    table: Mapping[str, Any], prefix: str, environ: Mapping[str, str], default_env: Optional[str]
) -> Optional[Secret]:
    if "api_key" in table and "api_key_env" in table:
        raise ConfigError(f"{prefix}.api_key", "set either api_key or api_key_env, not both")
    if "api_key" in table:
        value = table["api_key"]
        if not isinstance(value, str) or not value:
            # Never echo the value: it may be a key.
            raise ConfigError(f"{prefix}.api_key", "must be a non-empty string")
        return Secret(value)
    env_name = _get(table, prefix, "api_key_env", str, default_env)
    if env_name is None:
        return None
    if "api_key_env" in table and not env_name:
        raise ConfigError(f"{prefix}.api_key_env", "must name an environment variable")
    value = environ.get(env_name, "")
    return Secret(value) if value else None


def _check_url(key: str, url: str) -> str:
    if not (url.startswith("http://") or url.startswith("https://")):
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url.rstrip("/")


def _parse_provider(
    name: str, table: Any, environ: Mapping[str, str]
) -> ProviderConfig:
    prefix = f"providers.{name}"
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "must be a table")
    _check_keys(
        table, prefix,
        {"kind", "base_url", "api_key", "api_key_env", "models", "anthropic_version"},
    )
    default_kind = name if name in PROVIDER_KINDS else None
    kind = _get(table, prefix, "kind", str, default_kind)
    if kind is None:
        raise ConfigError(f"{prefix}.kind", "is required for a provider not named openai or anthropic (one of: openai, anthropic)")
    if kind not in PROVIDER_KINDS:
        raise ConfigError(f"{prefix}.kind", f"must be one of: {', '.join(PROVIDER_KINDS)}")
    env_prefix = name.upper() if name in PROVIDER_KINDS else None
    default_url = None
    if env_prefix is not None:
        default_url = environ.get(f"{env_prefix}_BASE_URL") or DEFAULT_BASE_URLS[kind]
    base_url = _get(table, prefix, "base_url", str, default_url)
    if base_url is None:
        raise ConfigError(f"{prefix}.base_url", "is required")
    base_url = _check_url(f"{prefix}.base_url", base_url)
    api_key = _provider_key(
        table, prefix, environ, f"{env_prefix}_API_KEY" if env_prefix else None
    )
    models_raw = table.get("models", None)
    if models_raw is None:
        if name not in PROVIDER_KINDS:
            raise ConfigError(f"{prefix}.models", "must list the models this provider serves")
        models = DEFAULT_MODELS[kind]
    else:
        if not isinstance(models_raw, list) or not all(
            isinstance(m, str) and m for m in models_raw
        ):
            raise ConfigError(f"{prefix}.models", "must be a list of model names or globs")
        models = tuple(models_raw)
    version = _get(table, prefix, "anthropic_version", str, "2023-06-01")
    return ProviderConfig(
        name=name, kind=kind, base_url=base_url, api_key=api_key,
        models=models, anthropic_version=version,
    )


def _check_clashes(providers: tuple[ProviderConfig, ...]) -> None:
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
                    f"providers.{provider.name}.models",
                    f"model {model!r} is already served by provider {other!r}; "
                    "a model name must map to exactly one provider",
                )
            owner[model] = provider.name


def _parse_prices(raw: Mapping[str, Any]) -> dict[str, dict[str, Decimal]]:
    table = _table(raw, "prices")
    fields = {"input", "output", "cached_input", "cache_write"}
    out: dict[str, dict[str, Decimal]] = {}
    for model, entry in table.items():
        prefix = f"prices.{model}"
        if not isinstance(entry, Mapping):
            raise ConfigError(prefix, "must be a table of prices per million tokens")
        _check_keys(entry, prefix, fields)
        prices = {}
        for field, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ConfigError(f"{prefix}.{field}", "must be a number (USD per million tokens)")
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                raise ConfigError(f"{prefix}.{field}", "must be a number (USD per million tokens)") from None
            if amount < 0 or not amount.is_finite():
                raise ConfigError(f"{prefix}.{field}", "must be a finite, non-negative number")
            prices[field] = amount
        out[model] = prices
    return out


def _served(providers: tuple[ProviderConfig, ...], model: str) -> bool:
    for provider in providers:
        if model in provider.exact_models:
            return True
        if any(fnmatch.fnmatchcase(model, glob) for glob in provider.model_globs):
            return True
    return False


def _model_name(providers: tuple[ProviderConfig, ...], key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a model name")
    if _is_glob(value):
        raise ConfigError(key, f"must be a model name, not a glob ({value!r})")
    if not _served(providers, value):
        raise ConfigError(key, f"no provider serves the model {value!r} (add it to a provider's models)")
    return value


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, "must be a string or a list of non-empty strings")
    return tuple(value)


def _opt_bool(table: Mapping[str, Any], prefix: str, name: str) -> Optional[bool]:
    result: Optional[bool] = _get(table, prefix, name, bool, None)
    return result


def _opt_count(table: Mapping[str, Any], prefix: str, name: str) -> Optional[int]:
    value: Optional[int] = _get(table, prefix, name, int, None)
    if value is not None and value < 0:
        raise ConfigError(f"{prefix}.{name}", f"must not be negative (got {value})")
    return value


def _parse_match(table: Any, prefix: str) -> RuleMatch:
    from .routing.interfaces import COMPLEXITY_CLASSES

    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "must be a table")
    _check_keys(
        table, prefix,
        {"model", "key", "team", "complexity", "min_prompt_tokens", "max_prompt_tokens",
         "tools", "images", "json_mode", "long_context"},
    )
    complexity = _str_list(f"{prefix}.complexity", table.get("complexity", []))
    for label in complexity:
        if label not in COMPLEXITY_CLASSES:
            raise ConfigError(f"{prefix}.complexity", f"unknown class {label!r} (one of: {', '.join(COMPLEXITY_CLASSES)})")
    low = _opt_count(table, prefix, "min_prompt_tokens")
    high = _opt_count(table, prefix, "max_prompt_tokens")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{prefix}.min_prompt_tokens", "must not be greater than max_prompt_tokens")
    return RuleMatch(
        models=_str_list(f"{prefix}.model", table.get("model", [])),
        keys=_str_list(f"{prefix}.key", table.get("key", [])),
        teams=_str_list(f"{prefix}.team", table.get("team", [])),
        complexity=complexity,
        min_prompt_tokens=low,
        max_prompt_tokens=high,
        tools=_opt_bool(table, prefix, "tools"),
        images=_opt_bool(table, prefix, "images"),
        json_mode=_opt_bool(table, prefix, "json_mode"),
        long_context=_opt_bool(table, prefix, "long_context"),
    )


def _parse_rule(index: int, table: Any, providers: tuple[ProviderConfig, ...], seen: set[str]) -> RouteRule:
    prefix = f"routing.rules[{index}]"
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "must be a table ([[routing.rules]])")
    _check_keys(table, prefix, {"name", "match", "action", "fallbacks"})
    name = _get(table, prefix, "name", str, None)
    if not name or not name.strip():
        raise ConfigError(f"{prefix}.name", "is required (it is shown in x-dd0c-route)")
    if name == "default" or name.startswith("shadow:") or not name.isprintable() or len(name) > 64:
        raise ConfigError(f"{prefix}.name", "must be 1 to 64 printable characters, not 'default' or 'shadow:...'")
    if name in seen:
        raise ConfigError(f"{prefix}.name", f"another rule is already named {name!r}")
    seen.add(name)
    match = _parse_match(table.get("match", {}), f"{prefix}.match")
    action = table.get("action")
    if not isinstance(action, Mapping):
        raise ConfigError(f"{prefix}.action", "is required: {model = \"...\"} or {keep = true}")
    _check_keys(action, f"{prefix}.action", {"model", "keep"})
    keep = _get(action, f"{prefix}.action", "keep", bool, False)
    if ("model" in action) == bool(keep):
        raise ConfigError(f"{prefix}.action", "must be either {model = \"...\"} or {keep = true}")
    model = None if keep else _model_name(providers, f"{prefix}.action.model", action["model"])
    fallbacks_raw = table.get("fallbacks", [])
    if not isinstance(fallbacks_raw, list):
        raise ConfigError(f"{prefix}.fallbacks", "must be a list of model names")
    fallbacks = tuple(
        _model_name(providers, f"{prefix}.fallbacks[{i}]", value) for i, value in enumerate(fallbacks_raw)
    )
    return RouteRule(name=name, match=match, model=model, fallbacks=fallbacks)


def _parse_routing(raw: Mapping[str, Any], providers: tuple[ProviderConfig, ...]) -> RoutingConfig:
    if "routing" not in raw:
        return RoutingConfig()
    table = _table(raw, "routing")
    _check_keys(
        table, "routing",
        {"mode", "aliases", "rules", "long_context_tokens", "fallback_after_send", "circuit_breaker"},
    )
    mode = _get(table, "routing", "mode", str, "shadow")
    if mode not in ROUTING_MODES:
        raise ConfigError("routing.mode", f"must be one of: {', '.join(ROUTING_MODES)}")
    aliases_raw = _table(table, "routing.aliases")
    aliases = {}
    for alias, target in aliases_raw.items():
        if not alias or _is_glob(alias):
            raise ConfigError(f"routing.aliases.{alias}", "an alias must be a plain name")
        aliases[alias] = _model_name(providers, f"routing.aliases.{alias}", target)
    rules_raw = table.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError("routing.rules", "must be an array of tables ([[routing.rules]])")
    seen: set[str] = set()
    rules = tuple(_parse_rule(i, rule, providers, seen) for i, rule in enumerate(rules_raw))
    long_context = _get(table, "routing", "long_context_tokens", int, RoutingConfig().long_context_tokens)
    _positive("routing.long_context_tokens", long_context)
    after_send = _get(table, "routing", "fallback_after_send", bool, True)
    breaker_table = _table(table, "routing.circuit_breaker")
    _check_keys(breaker_table, "routing.circuit_breaker", {"failures", "window", "cooldown"})
    defaults = CircuitBreakerConfig()
    failures = _get(breaker_table, "routing.circuit_breaker", "failures", int, defaults.failures)
    window = _get(breaker_table, "routing.circuit_breaker", "window", float, defaults.window)
    cooldown = _get(breaker_table, "routing.circuit_breaker", "cooldown", float, defaults.cooldown)
    _positive("routing.circuit_breaker.failures", failures)
    _positive("routing.circuit_breaker.window", window)
    _positive("routing.circuit_breaker.cooldown", cooldown)
    return RoutingConfig(
        mode=mode,
        aliases=aliases,
        rules=rules,
        long_context_tokens=long_context,
        fallback_after_send=after_send,
        circuit_breaker=CircuitBreakerConfig(failures=failures, window=window, cooldown=cooldown),
    )


def _usd(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, "must be an amount in USD (a number or a decimal string such as \"5.00\")")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(key, "must be an amount in USD (a number or a decimal string such as \"5.00\")") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(key, "must be a finite, non-negative amount")
    return amount


def _parse_budgets(raw: Mapping[str, Any]) -> tuple[BudgetConfig, ...]:
    table = _table(raw, "budgets")
    out = []
    for scope, entry in table.items():
        prefix = f"budgets.{scope}"
        if not isinstance(entry, Mapping):
            raise ConfigError(prefix, "must be a table of limits")
        if scope.startswith("team:") and not scope[5:]:
            raise ConfigError(prefix, "team: must be followed by a team name")
        _check_keys(entry, prefix, {"daily_usd", "monthly_usd", "requests_per_minute", "tokens_per_minute"})
        limits: dict[str, Any] = {}
        for name in ("daily_usd", "monthly_usd"):
            if name in entry:
                limits[name] = _usd(f"{prefix}.{name}", entry[name])
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = _get(entry, prefix, name, int, None)
            if value is not None:
                limits[name] = int(_positive(f"{prefix}.{name}", value))
        out.append(BudgetConfig(scope=scope, **limits))
    return tuple(out)


def parse_config(
    raw: Mapping[str, Any], environ: Mapping[str, str], source: Optional[str] = None
) -> Config:
    """
    Check a parsed TOML document and build the :class:`Config`.
    """
    _check_keys(raw, "", {"server", "ledger", "timeouts", "providers", "prices", "routing", "budgets", "state"})
    providers_raw = _table(raw, "providers")
    if "providers" not in raw:
        providers_raw = {"openai": {}, "anthropic": {}}
    providers = tuple(
        _parse_provider(name, table, environ) for name, table in providers_raw.items()
    )
    if not providers:
        raise ConfigError("providers", "must declare at least one provider")
    _check_clashes(providers)
    try:
        state = parse_state(_table(raw, "state"), environ)
    except StateConfigError as error:
        raise ConfigError(f"state.{error.key}", error.problem) from None
    server = _parse_server(raw)
    budgets = _parse_budgets(raw)
    if server.workers > 1 and budgets and state is None:
        raise ConfigError(
            "server.workers",
            f"{server.workers} workers with [budgets] need [state] redis_url: each worker "
            "would enforce every limit on its own, letting through up to "
            f"{server.workers} times the budget",
        )
    return Config(
        server=server,
        ledger=_parse_ledger(raw),
        timeouts=_parse_timeouts(raw),
        providers=providers,
        price_overrides=_parse_prices(raw),
        source=source,
        routing=_parse_routing(raw, providers),
        budgets=budgets,
        state=state,
    )


def load_config(path: Optional[str], environ: Mapping[str, str] = os.environ) -> Config:
    """
    Read and check the config file at ``path``; with ``None``, the embedded
    defaults (providers from ``OPENAI_*`` and ``ANTHROPIC_*`` variables).
    """
    if path is None:
        return parse_config({}, environ)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {path}") from None
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None
    return parse_config(raw, environ, source=path)
