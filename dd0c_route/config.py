# Tests: tests/test_config.py, tests/test_config_fuzz.py
"""
The operator's configuration: a TOML file read once at start.

Every value is checked here, at start, so that a bad config fails with a
message naming the key and the problem instead of failing on the first
request.  With no file at all the proxy runs on embedded defaults: loopback
port 8080, a SQLite ledger in the working directory and the two public
providers, keyed from the usual environment variables.

The schema is declared once, on the attrs fields below (type, default,
checks, doc line); :func:`dd0c_route.schema.build` reads the file into them.
What is written by hand here is only what relates several values: a
provider's defaults from its name and the environment, models served by
two providers, rules and aliases naming models no provider serves, and
price overrides for models the price table does not know.

Provider keys are held as :class:`~dd0c_route.secret.Secret` so that the
config can be formatted (attrs reprs, tracebacks) without showing them; a
ledger URL's password is masked in the repr.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from typing import Any, Mapping, Optional, Union

import attrs

from .config_checks import (
    at_most,
    between,
    each,
    each_key,
    each_value,
    env_name,
    is_glob,
    ledger_url,
    masked_url,
    model_name,
    non_negative,
    not_blank,
    one_of,
    path_prefix,
    plain_name,
    positive,
    price,
    rule_name,
    strports_description,
    usd,
    workers_count,
)
from .config_rules import (
    DEFAULT_BASE_URLS,
    DEFAULT_MODELS,
    PROVIDER_KINDS,
    check_alerts,
    check_clashes,
    check_prices,
    check_routing,
    provider_defaults,
)
from .routing.interfaces import COMPLEXITY_CLASSES
from .schema import ConfigError, Invalid, build, setting
from .secret import Secret
from .state.config import StateConfig, StateConfigError, parse_state

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_MODELS",
    "KNOWN_MODELS",
    "PASSTHROUGH_DEFAULT",
    "PROVIDER_KINDS",
    "AdminConfig",
    "AlertConfig",
    "BudgetConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "LedgerConfig",
    "LogConfig",
    "ProviderConfig",
    "RouteRule",
    "RoutingConfig",
    "RuleMatch",
    "ServerConfig",
    "TelemetryConfig",
    "TimeoutConfig",
    "load_config",
    "parse_config",
]

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

PASSTHROUGH_DEFAULT: tuple[str, ...] = (
    "/v1/embeddings", "/v1/completions", "/v1/moderations", "/v1/audio", "/v1/images",
    "/v1/files", "/v1/batches", "/v1/uploads", "/v1/vector_stores", "/v1/responses",
    "/v1/fine_tuning", "/v1/assistants", "/v1/threads", "/v1/conversations", "/v1/realtime",
    "/v1/chat/completions", "/v1/evals", "/v1/containers",
)
"""The OpenAI API's documented endpoint prefixes: what ``[server] passthrough`` relays by default."""

ROUTING_MODES = ("off", "shadow", "enforce")


@attrs.frozen
class ServerConfig:
    """Where and how the proxy listens."""

    listen: str = setting(
        "tcp:8080:interface=127.0.0.1", check=(not_blank, strports_description),
        doc="Twisted strports description of the listening socket.",
    )
    max_body_bytes: int = setting(
        10 * 1024 * 1024, check=positive, doc="Largest request body accepted (413 above).",
    )
    passthrough: tuple[str, ...] = setting(
        PASSTHROUGH_DEFAULT, check=each(path_prefix),
        doc="Path prefixes of other /v1/ endpoints relayed as they are; each starts with /v1/.",
    )
    client_header_timeout: float = setting(
        30.0, check=positive, doc="Seconds a client may take to send the request head.",
    )
    client_body_timeout: float = setting(
        30.0, check=positive, doc="Seconds a client may take to send the request body.",
    )
    drain_seconds: float = setting(
        30.0, check=non_negative, doc="On shutdown, seconds open requests get to finish.",
    )
    workers: Union[int, str] = setting(
        1, check=workers_count, doc='Worker processes: a number (1 or more) or "auto" (one per core).',
    )

    @property
    def worker_count(self) -> int:
        """``workers`` as a number (``"auto"``: one per CPU)."""
        return (os.cpu_count() or 1) if self.workers == "auto" else int(self.workers)


@attrs.frozen
class LedgerConfig:
    """
    Where usage records and proxy keys are kept: a SQLite file (``path``,
    the default) or PostgreSQL (``url``); a file may give one of them.
    """

    path: str = setting(
        "dd0c-route.sqlite3", check=not_blank, doc="SQLite file (used when url is not set).",
    )
    batch_size: int = setting(500, check=positive, doc="Records written per batch at most.")
    flush_interval: float = setting(0.2, check=positive, doc="Seconds between batch writes.")
    key_cache_ttl: float = setting(
        5.0, check=(positive, at_most(5.0, "revoked keys must stop working within 5 s")),
        doc="Seconds a proxy key lookup is cached (at most 5).",
    )
    url: Optional[str] = setting(
        None, check=ledger_url, repr=masked_url, secret=True,
        doc="PostgreSQL: a postgresql:// URL or a libpq key=value string (instead of path).",
    )
    password_env: Optional[str] = setting(
        None, check=env_name, doc="Environment variable holding the PostgreSQL password.",
    )
    connect_timeout: float = setting(10.0, check=positive, doc="Seconds to connect to PostgreSQL.")
    auto_migrate: bool = setting(True, doc="Create and upgrade the PostgreSQL schema at start.")
    pool_size: int = setting(4, check=between(1, 64), doc="PostgreSQL connections (1 to 64).")
    spool_path: str = setting(
        "dd0c-route-ledger.spool", check=not_blank,
        doc="Where records wait while PostgreSQL is unreachable (see ledger/spool.py).",
    )
    max_queued: int = setting(10_000, check=positive, doc="Records kept in memory while the store fails, before spooling.")
    journal_path: Optional[str] = setting(
        None,
        doc="Journal of finished records not yet stored: default beside the SQLite file or the spool; \"\" = off.",
    )


@attrs.frozen
class TimeoutConfig:
    """
    Upstream timeouts, in seconds.  Twisted never times out an in-flight
    stream by itself, so each phase has its own limit.
    """

    connect: float = setting(10.0, check=positive, doc="Seconds to connect to a provider.")
    first_byte: float = setting(600.0, check=positive, doc="Seconds until the provider's answer starts.")
    idle: float = setting(300.0, check=positive, doc="Seconds a stream may stay silent.")


def _http_url(url: str) -> None:
    if not (url.startswith("http://") or url.startswith("https://")):
        raise Invalid("must be an http:// or https:// URL")


@attrs.frozen
class ProviderConfig:
    """
    One upstream: its kind (the API it speaks), its address, its key and the
    models it serves (exact names or ``fnmatch`` globs).  A provider named
    ``openai`` or ``anthropic`` defaults its kind, URL (``*_BASE_URL``), key
    (``*_API_KEY``) and models from that name.
    """

    name: str = setting(toml=False, doc="The table's key, [providers.NAME].")
    kind: str = setting(check=one_of(*PROVIDER_KINDS), doc="API it speaks: openai or anthropic.")
    base_url: str = setting(
        converter=lambda url: url.rstrip("/") if isinstance(url, str) else url,
        check=_http_url, doc="http:// or https:// base URL.",
    )
    api_key: Optional[Secret] = setting(
        None, repr=False, secret=True, check=lambda key: not_blank(key.reveal()),
        doc="The provider key, inline (prefer api_key_env).",
    )
    models: tuple[str, ...] = setting(
        (), check=each(not_blank), doc="Model names or globs it serves (required unless named openai/anthropic).",
    )
    anthropic_version: str = setting("2023-06-01", doc="anthropic-version header sent upstream.")
    api_key_env: Optional[str] = setting(
        None, check=env_name, doc="Environment variable holding the key.",
    )

    @property
    def exact_models(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if not is_glob(m))

    @property
    def model_globs(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if is_glob(m))


def _complexity(labels: tuple[str, ...]) -> None:
    for label in labels:
        if label not in COMPLEXITY_CLASSES:
            raise Invalid(f"unknown class {label!r} (one of: {', '.join(COMPLEXITY_CLASSES)})")


@attrs.frozen
class RuleMatch:
    """
    When a routing rule applies: every condition given must hold (an empty
    match always holds).  ``models`` are names or globs tested against the
    model the client asked for and, for an alias, its target; ``keys`` are
    key names or ids; ``prompt_tokens`` bounds are on the character-based
    estimate.
    """

    models: tuple[str, ...] = setting(
        (), key="model", one_or_many=True, check=each(not_blank), doc="Requested model names or globs.",
    )
    keys: tuple[str, ...] = setting(
        (), key="key", one_or_many=True, check=each(not_blank), doc="Proxy key names or ids.",
    )
    teams: tuple[str, ...] = setting(
        (), key="team", one_or_many=True, check=each(not_blank), doc="Teams of the proxy key.",
    )
    complexity: tuple[str, ...] = setting(
        (), one_or_many=True, check=_complexity, doc="Classes: " + ", ".join(COMPLEXITY_CLASSES) + ".",
    )
    min_prompt_tokens: Optional[int] = setting(None, check=non_negative, doc="Estimated prompt tokens, at least.")
    max_prompt_tokens: Optional[int] = setting(None, check=non_negative, doc="Estimated prompt tokens, at most.")
    tools: Optional[bool] = setting(None, doc="The request declares tools.")
    images: Optional[bool] = setting(None, doc="The request holds images.")
    json_mode: Optional[bool] = setting(None, doc="The request asks for JSON output.")
    long_context: Optional[bool] = setting(None, doc="The prompt is over routing.long_context_tokens.")

    def __attrs_post_init__(self) -> None:
        low, high = self.min_prompt_tokens, self.max_prompt_tokens
        if low is not None and high is not None and low > high:
            raise Invalid("must not be greater than max_prompt_tokens", field="min_prompt_tokens")


@attrs.frozen
class RuleAction:
    """What a rule does, as the file says it: ``{model = "..."}`` or ``{keep = true}``."""

    model: Optional[str] = setting(None, check=model_name, doc="Serve with this model.")
    keep: bool = setting(False, doc="Keep the requested model.")

    def __attrs_post_init__(self) -> None:
        if (self.model is not None) == self.keep:
            raise Invalid('must be either {model = "..."} or {keep = true}')


@attrs.frozen
class RouteRule:
    """
    One routing rule: its name (shown in ``x-dd0c-route``), when it applies,
    the model to serve with (``None``: keep the requested one) and the
    models to fall back to, in order.
    """

    name: str = setting(check=rule_name, doc="Shown in x-dd0c-route; unique.")
    match: RuleMatch = setting(RuleMatch(), doc="Conditions, all of which must hold.")
    model: Optional[str] = setting(
        None, key="action", read_as=RuleAction, convert=lambda action: action.model, required=True,
        doc='{model = "..."} or {keep = true}.',
    )
    fallbacks: tuple[str, ...] = setting((), check=each(model_name), doc="Models to fall back to, in order.")


@attrs.frozen
class CircuitBreakerConfig:
    """A provider failing ``failures`` times within ``window`` s is skipped for ``cooldown`` s."""

    failures: int = setting(5, check=positive, doc="Failures that open the breaker.")
    window: float = setting(30.0, check=positive, doc="Seconds the failures are counted over.")
    cooldown: float = setting(30.0, check=positive, doc="Seconds a provider is skipped.")


@attrs.frozen
class RoutingConfig:
    """
    The router: ``mode`` is ``off`` (no rule is evaluated), ``shadow`` (rules
    are evaluated and recorded, never applied) or ``enforce``.  Without a
    ``[routing]`` table the mode is ``off``; a table without ``mode`` is
    ``shadow`` (safe).
    """

    mode: str = setting("off", toml_default="shadow", check=one_of(*ROUTING_MODES), doc="off, shadow or enforce.")
    aliases: Mapping[str, str] = setting(
        factory=dict, check=(each_key(plain_name), each_value(model_name)),
        doc="Model names that stand for another model (auto = \"gpt-4o\").",
    )
    rules: tuple[RouteRule, ...] = setting((), doc="[[routing.rules]], first match wins.")
    long_context_tokens: int = setting(32000, check=positive, doc="Prompt tokens that make a long context.")
    fallback_after_send: bool = setting(True, doc="Fall back after the request reached the provider.")
    circuit_breaker: CircuitBreakerConfig = setting(CircuitBreakerConfig(), doc="Skips a failing provider.")


def _budget_scope(scope: str) -> None:
    if scope.startswith("team:") and not scope[5:]:
        raise Invalid("team: must be followed by a team name")


@attrs.frozen
class BudgetConfig:
    """
    Limits for one scope: a key (by name or id), ``team:NAME``, or ``*``
    (each key on its own).  ``None`` means no limit.
    """

    scope: str = setting(toml=False, check=_budget_scope, doc="The table's key, [budgets.SCOPE].")
    daily_usd: Optional[Decimal] = setting(None, check=usd, doc="USD per UTC day.")
    monthly_usd: Optional[Decimal] = setting(None, check=usd, doc="USD per calendar month.")
    requests_per_minute: Optional[int] = setting(None, check=positive, doc="Requests per minute.")
    tokens_per_minute: Optional[int] = setting(None, check=positive, doc="Tokens per minute.")


ALERT_PERIODS = ("daily", "monthly")


def _fraction(value: Decimal) -> None:
    if not (value.is_finite() and 0 < value <= 1):
        raise Invalid(f"must be a fraction of the budget, greater than 0 and at most 1 (got {value})")


@attrs.frozen
class AlertConfig:
    """
    One ``[[alerts]]`` entry: a webhook POSTed once when the scope's spend for
    the period crosses ``threshold`` of its budget, or ``amount_usd``
    (:mod:`dd0c_route.alerts`).  The URL is a :class:`Secret`: Slack-style
    webhook URLs are credentials.
    """

    scope: str = setting(check=(not_blank, _budget_scope), doc="A budget scope as in [budgets]: key, team:NAME or *.")
    period: str = setting(check=one_of(*ALERT_PERIODS), doc="daily or monthly (UTC).")
    webhook_url: Secret = setting(
        repr=False, secret=True, check=lambda url: _http_url(url.reveal()), doc="http(s) URL POSTed with the alert.",
    )
    threshold: Optional[Decimal] = setting(None, check=_fraction, doc="Fraction (0-1] of the scope's budget for the period.")
    amount_usd: Optional[Decimal] = setting(None, check=usd, doc="USD spent in the period (instead of threshold).")


@attrs.frozen
class PriceOverride:
    """One ``[prices."MODEL"]`` table: USD per million tokens; omitted fields keep the table's price."""

    input: Optional[Decimal] = setting(None, check=price, doc="Prompt tokens.")
    output: Optional[Decimal] = setting(None, check=price, doc="Completion tokens.")
    cached_input: Optional[Decimal] = setting(None, check=price, doc="Prompt tokens read from cache.")
    cache_write: Optional[Decimal] = setting(None, check=price, doc="Prompt tokens written to cache (5-minute writes).")
    cache_write_1h: Optional[Decimal] = setting(None, check=price, doc="Prompt tokens written to cache for 1 hour.")


def _given_prices(overrides: Mapping[str, PriceOverride]) -> dict[str, dict[str, Decimal]]:
    return {
        model: {name: value for name, value in attrs.asdict(entry).items() if value is not None}
        for model, entry in overrides.items()
    }


def _at_least_one(providers: tuple[ProviderConfig, ...]) -> None:
    if not providers:
        raise Invalid("must declare at least one provider")


@attrs.frozen
class AdminConfig:
    """The admin listener (metrics, health): off unless ``listen`` is set."""

    listen: Optional[str] = setting(
        None, check=(not_blank, strports_description),
        doc="Twisted strports description of the admin listener (off when unset).",
    )
    require_key: bool = setting(False, doc="Require an admin key on the admin listener.")
    metrics_per_key: bool = setting(False, doc="Label request metrics by key id too.")


@attrs.frozen
class TelemetryConfig:
    """OpenTelemetry traces: off unless ``otlp_endpoint`` (the OTLP/HTTP base URL) is set."""

    otlp_endpoint: Optional[str] = setting(
        None, check=_http_url, converter=lambda url: None if url is None else url.rstrip("/"),
        doc="OTLP/HTTP base URL; spans are POSTed to <endpoint>/v1/traces.",
    )


LOG_FORMATS = ("text", "json")


@attrs.frozen
class LogConfig:
    """Log line format, and whether each request gets an access event."""

    format: str = setting("text", check=one_of(*LOG_FORMATS), doc="text or json (one JSON object per line).")
    access: bool = setting(False, doc="One access event per request.")


@attrs.frozen
class Config:
    """The whole configuration, checked."""

    server: ServerConfig = setting(ServerConfig(), doc="The listening side.")
    ledger: LedgerConfig = setting(LedgerConfig(), doc="Usage records and keys.")
    timeouts: TimeoutConfig = setting(TimeoutConfig(), doc="Upstream timeouts.")
    providers: tuple[ProviderConfig, ...] = setting(
        kw_only=True, keyed_by="name", toml_default={"openai": {}, "anthropic": {}},
        check=_at_least_one,
        doc="[providers.NAME] tables; without any, openai and anthropic from the environment.",
    )
    price_overrides: Mapping[str, Mapping[str, Decimal]] = setting(
        factory=dict, key="prices", read_as=Mapping[str, PriceOverride], convert=_given_prices,
        doc="[prices.\"MODEL\"] tables overriding the shipped price table.",
    )
    source: Optional[str] = setting(None, toml=False, doc="The file read, if any.")
    routing: RoutingConfig = setting(RoutingConfig(), doc="The router.")
    budgets: tuple[BudgetConfig, ...] = setting((), keyed_by="scope", doc="[budgets.SCOPE] limits.")
    admin: AdminConfig = setting(AdminConfig(), doc="The admin listener (metrics, health).")
    telemetry: TelemetryConfig = setting(TelemetryConfig(), doc="OpenTelemetry traces.")
    log: LogConfig = setting(LogConfig(), doc="Log format and access events.")
    alerts: tuple[AlertConfig, ...] = setting((), doc="[[alerts]] budget webhooks, each POSTed once per crossing.")
    #: Shared limits, revocations and breaker (``[state]``, read by
    #: state/config.py); None: in process.
    state: Optional[StateConfig] = setting(None, toml=False, doc="[state] shared limits on Redis (see docs/shared-state.md).")

    def provider_named(self, name: str) -> Optional[ProviderConfig]:
        for provider in self.providers:
            if provider.name == name:
                return provider
        return None



def parse_config(
    raw: Mapping[str, Any], environ: Mapping[str, str], source: Optional[str] = None
) -> Config:
    """
    Check a parsed TOML document and build the :class:`Config`.
    """
    raw = dict(raw)
    state_table = raw.pop("state", {})
    if not isinstance(state_table, Mapping):
        raise ConfigError("state", f"must be a table, not {type(state_table).__name__}")
    config = build(
        Config, raw, given={"source": source}, fill={ProviderConfig: provider_defaults(environ)}
    )
    try:
        state = parse_state(state_table, environ)
    except StateConfigError as error:
        raise ConfigError(f"state.{error.key}", error.problem) from None
    if state is not None:
        config = attrs.evolve(config, state=state)
    workers = config.server.worker_count
    if workers > 1 and config.budgets and state is None:
        raise ConfigError(
            "server.workers",
            f"{workers} workers with [budgets] need [state] redis_url: each worker "
            "would enforce every limit on its own, letting through up to "
            f"{workers} times the budget",
        )
    ledger = raw.get("ledger", {})
    if "path" in ledger and "url" in ledger:
        raise ConfigError("ledger.url", "give either path (SQLite) or url (PostgreSQL), not both")
    check_clashes(config.providers)
    check_routing(config.routing, config.providers)
    check_prices(config.price_overrides, config.providers)
    check_alerts(config.alerts, config.budgets)
    return config


def load_config(path: Optional[str], environ: Mapping[str, str] = os.environ) -> Config:
    """
    Read and check the config file at ``path``; with ``None``, the embedded
    defaults (providers from ``OPENAI_*`` and ``ANTHROPIC_*`` variables).
    """
    from .envconfig import CONFIG_VARIABLE, parse_with_overrides

    if path is None:
        path = environ.get(CONFIG_VARIABLE) or None
    if path is None:
        return parse_with_overrides(parse_config, {}, environ, None)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {path}") from None
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None
    return parse_with_overrides(parse_config, raw, environ, path)
