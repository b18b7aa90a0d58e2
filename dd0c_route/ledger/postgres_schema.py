# Tests: tests/test_postgres.py, tests/test_usage_rollup.py
"""
The PostgreSQL ledger's schema: its tables' columns, the migrations that
build them, and the SQL text the store runs on them.

Schema versions live in ``dd0c_schema``; ``MIGRATIONS[n]`` takes version
``n`` to ``n + 1``.  A new record column gets a new step here (and one in
:mod:`.sqlite`).  Kept apart from the store so that what is in the
database reads in one place, without the code that talks to it.
"""

from __future__ import annotations

from .rollup_sql import PG_BACKFILL, PG_TABLE

__all__ = [
    "COLUMN_NAMES", "INSERT_CHUNK", "KEY_COLUMNS", "KEY_VALUES", "MIGRATIONS", "MIGRATION_LOCK",
    "ROLLUP_GROUPS", "ROLLUP_SUMS", "ROLLUP_UPSERT", "SCHEMA_VERSION", "insert_sql",
]

#: (column, SQL type) for each UsageRecord field, in field order.
_USAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "text NOT NULL UNIQUE"),
    ("response_id", "text"),
    ("key_id", "text"),
    ("team", "text"),
    ("provider", "text"),
    ("model_requested", "text"),
    ("model", "text"),
    ("endpoint", "text NOT NULL"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("cache_creation_tokens", "bigint"),
    ("tokens_counted_locally", "text NOT NULL"),
    ("cost_usd", "numeric"),
    ("status", "integer NOT NULL"),
    ("stream", "boolean NOT NULL"),
    ("disconnected", "boolean NOT NULL"),
    ("ttfb_ms", "double precision"),
    ("latency_ms", "double precision NOT NULL"),
    ("error_type", "text"),
    ("created_at", "double precision NOT NULL"),
    ("route_rule", "text"),
    ("complexity", "text"),
    ("cost_requested_usd", "numeric"),
    ("attempts", "text"),
    ("shadow_model", "text"),
    ("cost_shadow_usd", "numeric"),
    ("price_source", "text"),
    ("price_tier", "text"),
)
#: Columns added by migration 1 (issue #15: a client's X-Request-ID).
_OPS_COLUMNS: tuple[tuple[str, str], ...] = (("client_request_id", "text"),)
#: Columns added by migration 2 (the Responses API: reasoning tokens).
_RESPONSES_COLUMNS: tuple[tuple[str, str], ...] = (("reasoning_tokens", "bigint"),)
#: Columns added by migration 3 (issue #16: the features routing measured).
_FEATURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens_estimate", "bigint"),
    ("tools", "boolean"),
    ("images", "boolean"),
    ("json_mode", "boolean"),
    ("long_context", "boolean"),
)
COLUMN_NAMES = tuple(
    name for name, _ in _USAGE_COLUMNS + _OPS_COLUMNS + _RESPONSES_COLUMNS + _FEATURE_COLUMNS
)
KEY_COLUMNS = (
    "key_id, name, key_hash, created_at, team, revoked_at, admin, daily_usd, monthly_usd, "
    "requests_per_minute, tokens_per_minute"
)
KEY_VALUES = "(" + ", ".join("%s" for _ in KEY_COLUMNS.split(", ")) + ")"

#: The rollup's money and count columns, as summed.
ROLLUP_SUMS = (
    "requests", "prompt_tokens", "completion_tokens", "cost_usd",
    "cost_requested_usd", "cost_shadow_usd", "unpriced",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE usage (seq bigserial PRIMARY KEY, "
        + ", ".join(f"{name} {kind}" for name, kind in _USAGE_COLUMNS)
        + ")",
        "CREATE INDEX usage_created_at ON usage (created_at)",
        "CREATE INDEX usage_key ON usage (key_id, created_at)",
        "CREATE INDEX usage_team ON usage (team, created_at)",
        "CREATE INDEX usage_model ON usage (model, created_at)",
        "CREATE TABLE keys ("
        "seq bigserial, "
        "key_id text PRIMARY KEY, "
        "name text NOT NULL, "
        "key_hash text NOT NULL UNIQUE, "
        "created_at double precision NOT NULL, "
        "team text, "
        "revoked_at double precision)",
        "CREATE UNIQUE INDEX keys_active_name ON keys (name) WHERE revoked_at IS NULL",
        "CREATE TABLE usage_daily ("
        "day date NOT NULL, key_id text NOT NULL, team text NOT NULL, model text NOT NULL, "
        "requests bigint NOT NULL, prompt_tokens bigint NOT NULL, completion_tokens bigint NOT NULL, "
        "cost_usd numeric NOT NULL, cost_requested_usd numeric NOT NULL, "
        "cost_shadow_usd numeric NOT NULL, unpriced bigint NOT NULL, "
        "PRIMARY KEY (day, key_id, team, model))",
        "CREATE INDEX usage_daily_key ON usage_daily (key_id, day)",
        "CREATE INDEX usage_daily_team ON usage_daily (team, day)",
        "CREATE INDEX usage_daily_model ON usage_daily (model, day)",
    ),
    (
        *(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _OPS_COLUMNS),
        "ALTER TABLE keys ADD COLUMN admin boolean NOT NULL DEFAULT false",
    ),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _RESPONSES_COLUMNS),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _FEATURE_COLUMNS),
    (
        # Issue #16: per-key budgets set from the admin API, and budget alerts.
        "ALTER TABLE keys ADD COLUMN daily_usd numeric",
        "ALTER TABLE keys ADD COLUMN monthly_usd numeric",
        "CREATE TABLE alerts (scope text NOT NULL, period text NOT NULL, period_start double precision NOT NULL, "
        "threshold text NOT NULL, spent_usd numeric NOT NULL, limit_usd numeric, "
        "created_at double precision NOT NULL, status text NOT NULL, attempts integer NOT NULL, "
        "UNIQUE (scope, period, period_start, threshold))",
    ),
    # Issue #16: the summary's rollup (ledger/rollup.py), made and filled from the stored records.
    (PG_TABLE, *PG_BACKFILL),
    (
        # Issue #16: per-key rate limits, and dashboard sessions shared by
        # every worker and instance (only a SHA-256 of the session id).
        "ALTER TABLE keys ADD COLUMN requests_per_minute bigint",
        "ALTER TABLE keys ADD COLUMN tokens_per_minute bigint",
        "CREATE TABLE sessions (id_hash text PRIMARY KEY, key_id text NOT NULL, "
        "created_at double precision NOT NULL, expires_at double precision NOT NULL)",
        "CREATE INDEX sessions_expires ON sessions (expires_at)",
    ),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

#: pg_advisory_xact_lock key for migrations ("dd0c" in ASCII).
MIGRATION_LOCK = 0x64643063

#: Rows per INSERT statement (29 parameters each, well under the 65535 limit).
INSERT_CHUNK = 1000

ROLLUP_UPSERT = (
    "INSERT INTO usage_daily (day, key_id, team, model, " + ", ".join(ROLLUP_SUMS) + ") "
    "VALUES (%s, %s, %s, %s, " + ", ".join("%s" for _ in ROLLUP_SUMS) + ") "
    "ON CONFLICT (day, key_id, team, model) DO UPDATE SET "
    + ", ".join(f"{c} = usage_daily.{c} + EXCLUDED.{c}" for c in ROLLUP_SUMS)
)

ROLLUP_GROUPS = ("day", "key", "team", "model")


def insert_sql(rows: int) -> str:
    """One multi-row INSERT of ``rows`` records that returns the ids that were new."""
    one = "(" + ", ".join("%s" for _ in COLUMN_NAMES) + ")"
    return (
        f"INSERT INTO usage ({', '.join(COLUMN_NAMES)}) VALUES "
        + ", ".join(one for _ in range(rows))
        + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )
