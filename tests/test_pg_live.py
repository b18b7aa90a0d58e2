"""
Many instances, one ledger: real ``twistd dd0c-route`` processes on one
PostgreSQL database, keys and usage through the real ``dd0c-route`` CLI, and
a database that goes away under load (through a TCP forwarder this test
can cut) without losing or doubling a record.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from decimal import Decimal
from typing import Any

import psycopg
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.keys import generate_key
from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .pg import create_database
from .twistd_proc import Twistd, free_port, run_cli


class _Client(portforward.ProxyClient):
    def connectionMade(self) -> None:
        self.factory.forwarder.live.add(self)
        portforward.ProxyClient.connectionMade(self)

    def connectionLost(self, reason: Any) -> None:
        self.factory.forwarder.live.discard(self)
        portforward.ProxyClient.connectionLost(self, reason)


class _ClientFactory(portforward.ProxyClientFactory):
    protocol = _Client


class _Server(portforward.ProxyServer):
    clientProtocolFactory = _ClientFactory

    def connectionMade(self) -> None:
        self.factory.forwarder.live.add(self)
        portforward.ProxyServer.connectionMade(self)

    def connectionLost(self, reason: Any) -> None:
        self.factory.forwarder.live.discard(self)
        portforward.ProxyServer.connectionLost(self, reason)


class Forwarder:
    """A TCP forwarder to PostgreSQL that the test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.port = free_port()
        self.live: set[Any] = set()
        self.factory = portforward.ProxyFactory(host, port)
        self.factory.protocol = _Server
        self.factory.forwarder = self  # type: ignore[attr-defined]
        _ClientFactory.forwarder = self  # type: ignore[attr-defined]
        self.listening: Any = None

    def start(self) -> None:
        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]

    def cut(self) -> Deferred[None]:
        """Refuse new connections and abort every open one: the database is gone."""
        for conn in list(self.live):
            conn.transport.abortConnection()
        d: Deferred[None] = self.listening.stopListening()
        return d


def _config(workdir: str, port: int, dsn: str, fake_url: str) -> str:
    path = os.path.join(workdir, f"dd0c-{port}.toml")
    with open(path, "w") as f:
        f.write(
            f'[server]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
            f'[ledger]\nurl = "{dsn}"\nkey_cache_ttl = 1.0\nconnect_timeout = 2\n'
            f'spool_path = "{workdir}/spool-{port}"\nmax_queued = 20\nflush_interval = 0.05\n'
            f'[providers.openai]\nbase_url = "{fake_url}"\napi_key_env = "DD0C_TEST_PROVIDER_KEY"\n'
        )
    return path


class PostgresLiveTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def setUp(self) -> Any:
        self.dsn = create_database(self)
        self.fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(self.fake.stop)
        provider_key = fake_provider_key()
        self.fake.state.expected_key = provider_key
        os.environ["DD0C_TEST_PROVIDER_KEY"] = provider_key
        self.addCleanup(os.environ.pop, "DD0C_TEST_PROVIDER_KEY", None)
        self.workdir = tempfile.mkdtemp(prefix="dd0c-pg-")

    @inlineCallbacks
    def start(self, dsn: str, port: int = 0) -> Any:
        port = port or free_port()
        config = _config(self.workdir, port, dsn, self.fake.base_url)
        proc = Twistd(config, self.workdir, os.path.join(self.workdir, f"twistd-{port}.log"), port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        return proc, config

    def cli(self, config: str, *args: str) -> Deferred[Any]:
        return in_thread(run_cli, "--config", config, *args)

    @inlineCallbacks
    def chat(self, port: int, key: str) -> Any:
        response = yield treq.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            persistent=False,
        )
        yield treq.content(response)
        request_id = (response.headers.getRawHeaders(b"x-dd0c-request-id") or [b""])[0].decode()
        return response.code, request_id

    @inlineCallbacks
    def healthz(self, port: int) -> Any:
        response = yield treq.get(f"http://127.0.0.1:{port}/healthz", timeout=10, persistent=False)
        return json.loads((yield treq.content(response)))

    def records_by_request(self) -> dict[str, int]:
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT request_id, count(*) FROM usage GROUP BY request_id").fetchall()
        return dict(rows)

    @inlineCallbacks
    def test_two_instances_one_ledger(self) -> Any:
        """
        A key made by the CLI works on both instances; revoked, it stops on
        both within 5 s; both instances' records are in one usage report; the
        daily rollup equals the sum of the records.
        """
        started_both = yield DeferredList([self.start(self.dsn), self.start(self.dsn)], fireOnOneErrback=True)
        (a, config), (b, _) = (result for _, result in started_both)
        created = yield self.cli(config, "keys", "create", "--name", "shared", "--team", "qa")
        self.assertEqual(created.returncode, 0, created.stderr)
        key = created.stdout.strip().splitlines()[-1]
        served_by: dict[int, set[str]] = {a.port: set(), b.port: set()}
        for proc in (a, b, a, b):
            code, request_id = yield self.chat(proc.port, key)
            self.assertEqual(code, 200)
            served_by[proc.port].add(request_id)
        revoked = yield self.cli(config, "keys", "revoke", "shared")
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        started = time.monotonic()
        refused: dict[int, float] = {}
        while len(refused) < 2 and time.monotonic() - started < 6:
            for proc in (a, b):
                if proc.port not in refused:
                    code, request_id = yield self.chat(proc.port, key)
                    if code == 200:
                        served_by[proc.port].add(request_id)
                    if code == 401:
                        refused[proc.port] = time.monotonic() - started
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(set(refused), {a.port, b.port})
        self.assertLess(max(refused.values()), 5.0)
        for proc in (a, b):
            self.assertIn(proc.stop(), (0, -15))

        usage = yield self.cli(config, "usage", "--json")
        self.assertEqual(usage.returncode, 0, usage.stderr)
        records = [json.loads(line) for line in usage.stdout.splitlines()]
        served = {r["request_id"] for r in records if r["status"] == 200}
        self.assertEqual(served, served_by[a.port] | served_by[b.port])
        self.assertTrue(served_by[a.port] and served_by[b.port])
        self.assertEqual(len({r["request_id"] for r in records}), len(records))
        grouped = yield self.cli(config, "usage", "--json", "--group-by", "day,key")
        self.assertEqual(grouped.returncode, 0, grouped.stderr)
        groups = [json.loads(line) for line in grouped.stdout.splitlines()]
        self.assertEqual(sum(g["requests"] for g in groups), len(records))
        self.assertEqual(sum(g["prompt_tokens"] for g in groups), sum(r["prompt_tokens"] or 0 for r in records))
        self.assertEqual(
            sum(Decimal(g["cost_usd"]) for g in groups),
            sum(Decimal(r["cost_usd"]) for r in records if r["cost_usd"] is not None),
        )
        self.assertTrue(all(set(g) >= {"day", "key_id", "cost_requested_usd", "completion_tokens"} for g in groups))

    @inlineCallbacks
    def load(self, port: int, key: str, seconds: float, rate: float = 50.0) -> Any:
        """Steady load; returns (status, request_id) of every request."""
        results: list[tuple[int, str]] = []
        pending: list[Deferred[Any]] = []
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            while sent < (time.monotonic() - start) * rate:
                pending.append(self.chat(port, key).addCallback(results.append))
                sent += 1
            yield deferLater(reactor, 0.01, lambda: None)
        yield DeferredList(pending)
        return results

    def assertExactlyOnce(self, results: list[tuple[int, str]]) -> None:
        ok = [rid for code, rid in results if code == 200]
        self.assertGreater(len(ok), 100)
        stored = self.records_by_request()
        self.assertEqual([rid for rid in ok if stored.get(rid) != 1], [])
        self.assertEqual({n for n in stored.values()}, {1})

    @inlineCallbacks
    def test_database_outage_loses_nothing(self) -> Any:
        """
        Under 50 req/s the database goes away and comes back: cached keys keep
        working, records queue then spool, and afterwards every 200 has
        exactly one record.  Then again with a SIGTERM while it is down and a
        restart, which replays the spool.
        """
        params = psycopg.conninfo.conninfo_to_dict(self.dsn)
        forwarder = Forwarder(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)))
        forwarder.start()
        params["port"] = str(forwarder.port)
        dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
        proc, config = yield self.start(dsn)
        created = yield self.cli(config, "keys", "create", "--name", "load")
        key = created.stdout.strip().splitlines()[-1]
        code, _ = yield self.chat(proc.port, key)
        self.assertEqual(code, 200)

        @inlineCallbacks
        def outage(down_after: float, down_for: float) -> Any:
            yield deferLater(reactor, down_after, lambda: None)
            yield forwarder.cut()
            yield deferLater(reactor, down_for / 2, lambda: None)
            health = yield self.healthz(proc.port)
            unknown = yield treq.post(
                f"http://127.0.0.1:{proc.port}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                headers={"Authorization": f"Bearer {generate_key()}"}, timeout=30, persistent=False,
            )
            error = json.loads((yield treq.content(unknown)))
            health["unknown_key"] = (unknown.code, error["error"]["code"])
            yield deferLater(reactor, down_for / 2, lambda: None)
            forwarder.start()
            return health

        during = outage(3.0, 4.0)
        results = yield self.load(proc.port, key, 10.0)
        health = yield during
        self.assertEqual(health["ledger"]["store"], "down")
        self.assertEqual(health["unknown_key"], (503, "key_store_unavailable"))
        self.assertGreater(health["ledger"]["queued"] + health["ledger"]["spooled"], 0)
        self.assertEqual({code for code, _ in results}, {200})
        for _ in range(100):
            health = yield self.healthz(proc.port)
            if health["ledger"] == {"queued": 0, "spooled": 0, "store": "up"}:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(health["ledger"], {"queued": 0, "spooled": 0, "store": "up"})
        self.assertExactlyOnce(results)

        # Down again, and stopped while down: the queue goes to the spool.
        yield forwarder.cut()
        more = yield self.load(proc.port, key, 3.0)
        self.assertIn(proc.stop(), (0, -15))
        spool = os.path.join(self.workdir, f"spool-{proc.port}")
        with open(spool) as f:
            self.assertGreater(len(f.readlines()), 0)
        forwarder.start()
        again, _ = yield self.start(dsn, proc.port)
        for _ in range(100):
            health = yield self.healthz(again.port)
            if health["ledger"]["spooled"] == 0 and health["ledger"]["queued"] == 0:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertExactlyOnce(results + more)
        again.stop()
        yield forwarder.cut()
