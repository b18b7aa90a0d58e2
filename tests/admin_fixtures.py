"""
Plumbing for the admin API tests: a ledger seeded with known records, and
the admin resource (API + dashboard) served on loopback over that store,
with a real key cache, the same way the tap wires it.
"""

from __future__ import annotations

import json
import tempfile
import time
from decimal import Decimal
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.web.server import Site

from dd0c_route.admin.api import AdminApi
from dd0c_route.admin.dashboard import Dashboard
from dd0c_route.admin.health import Readiness
from dd0c_route.admin.resource import AdminResource
from dd0c_route.admin.sessions import SessionTable
from dd0c_route.config import parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keycache import KeyCache
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.metering.prices import Prices

from .pg import create_database
from .test_admin_live import http

__all__ = ["DAY", "Served", "open_store", "seed_records", "serve_admin"]

#: 2025-03-10T00:00:00Z: the seeded records span this day and the next.
DAY = 1741564800.0
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5")

_prices: Optional[Prices] = None


def prices() -> Prices:
    global _prices
    if _prices is None:
        _prices = Prices.load()
    return _prices


def seed_records(n: int = 240, start: float = DAY, key_ids: tuple[str, ...] = ("key_a", "key_b", "key_c")) -> list[UsageRecord]:
    """Varied, deterministic records over two UTC days, priced by the real price table."""
    out = []
    for i in range(n):
        model = MODELS[i % 3]
        requested = "gpt-4o" if i % 5 else model
        prompt, completion = 100 + 37 * i, 20 + (i * 13) % 400
        cost = prices().cost_usd(model, prompt, completion)
        cost_requested = prices().cost_usd(requested, prompt, completion)
        shadow = "gpt-4o-mini" if i % 7 == 0 else None
        out.append(
            UsageRecord(
                request_id=f"req-{i:05d}",
                key_id=key_ids[i % len(key_ids)] if i % 11 else None,
                team=("red", "blue")[i % 2] if i % 4 else None,
                provider="anthropic" if model.startswith("claude") else "openai",
                model_requested=requested,
                model=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=None if i % 23 == 0 else cost,
                cost_requested_usd=cost_requested,
                status=(200, 400, 200, 429, 500, 200, 499)[i % 7],
                disconnected=i % 7 == 6,
                latency_ms=float((i * 7919) % 1000) + 0.5,
                created_at=start + i * (2 * 86400 / n),
                route_rule=("default", "cheap", "shadow:cheap")[i % 3],
                complexity=("simple", "medium", "complex")[i % 3] if i % 13 else None,
                shadow_model=shadow,
                cost_shadow_usd=prices().cost_usd(shadow, prompt, completion) if shadow else None,
                prompt_tokens_estimate=prompt,
                tools=i % 6 == 0,
                images=False,
                json_mode=i % 8 == 0,
                long_context=False,
            )
        )
    return out


def open_store(testcase: Any, kind: str) -> Any:
    if kind == "sqlite":
        store: Any = SQLiteLedger(tempfile.mkdtemp(prefix="dd0c-admin-") + "/ledger.sqlite3")
    else:
        store = PostgresLedger(create_database(testcase))
    testcase.addCleanup(store.close)
    return store


class Served:
    def __init__(self, port: int, store: Any, admin_key: str, client_key: str, api: AdminApi) -> None:
        self.port, self.store, self.admin_key, self.client_key, self.api = port, store, admin_key, client_key, api

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, key: Optional[str] = "admin",
             ctype: str = "application/json", headers: Optional[dict[str, str]] = None) -> Deferred[tuple[int, Any]]:
        """(status, parsed JSON) of one call, in a thread; key "admin", "client", None or a literal."""
        sent = dict(headers or {})
        token = {"admin": self.admin_key, "client": self.client_key}.get(key or "", key)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            sent["Content-Type"] = ctype

        def run() -> tuple[int, Any]:
            status, _, raw = http(self.base + path, method, sent, data)
            return status, json.loads(raw) if raw else None

        return deferToThread(run)


@inlineCallbacks
def serve_admin(testcase: Any, store: Any, config_raw: Optional[dict[str, Any]] = None) -> Any:
    """The admin resource over ``store`` on loopback, with one admin and one client key."""
    config = parse_config(config_raw or {}, {})
    admin_key, client_key = generate_key(), generate_key()
    now = time.time()
    yield deferToThread(store.add_key, KeyInfo(new_key_id(), "admin", hash_key(admin_key), now, admin=True))
    yield deferToThread(store.add_key, KeyInfo(new_key_id(), "client", hash_key(client_key), now, "red"))
    keys = KeyCache(store, reactor, deferToThread, ttl=5.0)
    api = AdminApi(
        store=store, run=deferToThread, keys=keys, config=config, prices=prices(), clock=reactor,
        sessions=SessionTable(store, deferToThread, reactor),
    )
    resource = AdminResource(None, Readiness(), keys, False, Dashboard(api))
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(resource))
    testcase.addCleanup(port.stopListening)
    return Served(port.getHost().port, store, admin_key, client_key, api)


def money(value: Any) -> Decimal:
    return Decimal(value)
