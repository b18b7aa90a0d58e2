# Tests: tests/test_admin_live.py
"""
Wiring the admin side to the running proxy: which readings the metrics
take at scrape time, which checks readiness runs, and the admin site.

Kept apart from :mod:`dd0c_route.tap` so the composition root only says
"build the admin side from these parts" and every reading is named here.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.web.server import Site

from ..config import Config
from .health import LEDGER_BACKLOG_BOUND, Readiness
from .metrics import ProxyMetrics
from .resource import AdminResource

__all__ = ["AdminParts", "build_admin"]


class _AdminSite(Site):
    """No access-log line per scrape."""

    displayTracebacks = False

    def log(self, request: Any) -> None:
        pass


@attrs.frozen
class AdminParts:
    metrics: ProxyMetrics
    readiness: Readiness
    site: Site


def _configured_models(config: Config) -> list[str]:
    models = [m for provider in config.providers for m in provider.exact_models]
    models += list(config.routing.aliases.values())
    for rule in config.routing.rules:
        models += [m for m in (rule.model, *rule.fallbacks) if m]
    return models


def build_admin(
    config: Config, reactor: Any, *, app: Any, writer: Any, keys: Any, meter: Any, budgets_seeded: Any,
    store: Any = None, prices: Any = None, announcer: Any = None,
) -> AdminParts:
    """
    The metrics (subscribe ``metrics.observe`` to the meter), the readiness
    checks and the admin site, over the proxy's parts.
    """
    metrics = ProxyMetrics(per_key=config.admin.metrics_per_key, models=_configured_models(config))
    breaker = app.routing.breaker
    providers = [provider.name for provider in config.providers]
    gauge = metrics.gauge
    gauge("dd0c_route_active_requests", "Requests in flight.", lambda: app.active)
    gauge("dd0c_route_active_streams", "Streaming requests in flight.", lambda: sum(1 for c in app.live if c.info.stream))
    gauge("dd0c_route_upstream_connections_open", "Connections to providers open now.", lambda: app.upstream.counter.open)
    gauge(
        "dd0c_route_breaker_open", "1 while a provider's circuit breaker is open (it is skipped).",
        lambda: {name: 1.0 if name in set(breaker.open_providers()) else 0.0 for name in providers}, label="provider",
    )
    gauge("dd0c_route_ledger_queue_depth", "Usage records waiting to be written to the ledger.", lambda: writer.pending)

    def oldest_age() -> float:
        oldest = writer.oldest_pending
        return 0.0 if oldest is None else max(0.0, reactor.seconds() - oldest)

    gauge("dd0c_route_ledger_oldest_record_age_seconds", "Age of the oldest record not yet written.", oldest_age)
    # A spooling writer (the PostgreSQL ledger's) exposes its backlog as
    # ``spool_backlog``; the SQLite writer has no spool and exports nothing.
    gauge(
        "dd0c_route_ledger_spool_backlog", "Records spooled to disk while the ledger was unreachable.",
        lambda: getattr(writer, "spool_backlog", None),
    )
    gauge("dd0c_route_meter_pending", "Records still being counted (local token counts).", lambda: meter.pending)
    gauge("dd0c_route_key_cache_keys", "Proxy keys held by the key cache.", lambda: keys.size[0])
    gauge("dd0c_route_key_cache_unknown", "Unknown key hashes held by the negative cache.", lambda: keys.size[1])
    metrics.counter("dd0c_route_key_cache_hits", "Key lookups answered from memory.", lambda: keys.hits)
    metrics.counter("dd0c_route_key_cache_misses", "Key lookups that read the store.", lambda: keys.misses)

    def hit_ratio() -> Optional[float]:
        total = keys.hits + keys.misses
        return None if total == 0 else keys.hits / total

    gauge("dd0c_route_key_cache_hit_ratio", "Hits over lookups since start.", hit_ratio)

    readiness = Readiness()
    readiness.add("key_cache_loaded", lambda: keys.loaded)
    readiness.add("budgets_seeded", lambda: budgets_seeded() is not None and budgets_seeded().called)
    readiness.add("ledger_backlog", lambda: writer.pending < LEDGER_BACKLOG_BOUND)
    gauge("dd0c_route_ready", "1 when /readyz answers 200.", lambda: 1.0 if readiness.report()[0] else 0.0)
    gauge("dd0c_route_draining", "1 while the process drains after SIGTERM.", lambda: 1.0 if readiness.draining else 0.0)

    dashboard = None
    if store is not None:
        from .api import AdminApi
        from .dashboard import Dashboard
        from .sessions import SessionTable

        api = AdminApi(
            store=store, run=writer.runner.run, keys=keys, config=config, prices=prices, clock=reactor,
            sessions=SessionTable(store, writer.runner.run, reactor), announcer=announcer,
        )
        dashboard = Dashboard(api)
    site = _AdminSite(AdminResource(metrics, readiness, keys, config.admin.require_key, dashboard))
    return AdminParts(metrics, readiness, site)
