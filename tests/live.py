"""
Live test plumbing: a real proxy (the tap's own service) and real fake
providers on loopback, and the official SDKs as clients in threads.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Optional

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread

from dd0c_route.config import parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.tap import Built, build_service
from dd0c_route.testing.fakeprovider import RunningFake, start_fake_provider


def fake_provider_key(prefix: str = "sk-test-") -> str:
    """A generated provider key: random, and marked as a test value."""
    return prefix + "FAKE" + os.urandom(18).hex()


@attrs.define
class LiveProxy:
    built: Built
    port: int
    key: str
    key_id: str
    openai: Optional[RunningFake] = None
    anthropic: Optional[RunningFake] = None
    provider_keys: dict[str, str] = attrs.field(factory=dict)
    tmpdir: str = ""
    clients: list[Any] = attrs.field(factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        return self.built.app

    def records(self) -> Deferred[list[Any]]:
        """
        Wait for records still being counted, flush the writer, and read
        every record back from SQLite.
        """
        d = self.built.app.meter.drain()
        d.addCallback(lambda _: self.built.writer.flush())
        d.addCallback(lambda _: deferToThread(lambda: list(self.built.store.read_records())))
        return d

    def openai_client(self, **kw: Any) -> Any:
        import openai

        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        client = openai.OpenAI(base_url=self.base_url + "/v1", api_key=kw.pop("api_key", self.key), **kw)
        self.clients.append(client)
        return client

    def anthropic_client(self, **kw: Any) -> Any:
        import anthropic

        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        client = anthropic.Anthropic(base_url=self.base_url, api_key=kw.pop("api_key", self.key), **kw)
        self.clients.append(client)
        return client

    def add_key(self, name: str = "extra", team: Optional[str] = None) -> tuple[str, str]:
        key = generate_key()
        key_id = new_key_id()
        self.built.store.add_key(KeyInfo(key_id, name, hash_key(key), time.time(), team))
        return key, key_id

    @inlineCallbacks
    def stop(self) -> Any:
        for client in self.clients:
            client.close()
        if self.built.service.running:  # a test may have stopped it (the drain tests)
            yield self.built.service.stopService()
        if self.openai is not None:
            yield self.openai.stop()
        if self.anthropic is not None:
            yield self.anthropic.stop()


@inlineCallbacks
def start_live_proxy(
    testcase: Any,
    extra_config: Optional[dict[str, Any]] = None,
    kinds: tuple[str, ...] = ("openai", "anthropic"),
    check_provider_keys: bool = True,
    key_name: str = "test",
) -> Any:
    """
    Start fake providers and the proxy (the tap's service on port 0), with
    one proxy key; stopped at test cleanup.
    """
    tmpdir = tempfile.mkdtemp(prefix="dd0c-test-")
    fakes: dict[str, RunningFake] = {}
    provider_keys: dict[str, str] = {}
    providers: dict[str, Any] = {}
    for kind in kinds:
        fake = yield start_fake_provider(reactor, kind)
        key = fake_provider_key("sk-ant-test-" if kind == "anthropic" else "sk-test-")
        if check_provider_keys:
            fake.state.expected_key = key
        fakes[kind] = fake
        provider_keys[kind] = key
        providers[kind] = {"base_url": fake.base_url, "api_key": key}
    raw: dict[str, Any] = {
        "server": {"listen": "tcp:0:interface=127.0.0.1"},
        "ledger": {"path": os.path.join(tmpdir, "ledger.sqlite3"), "flush_interval": 0.05},
        "providers": providers,
    }
    for section, values in (extra_config or {}).items():
        if isinstance(values, list):  # an array of tables ([[alerts]])
            raw[section] = values
        else:
            raw.setdefault(section, {}).update(values)
    if "url" in raw["ledger"]:  # PostgreSQL instead of the SQLite file
        del raw["ledger"]["path"]
    config = parse_config(raw, {})
    built = build_service(config, reactor)
    built.service.startService()
    # Observe the port without consuming the service's own Deferred (its
    # stopService needs the port back from it).
    listening: Deferred[Any] = Deferred()

    def got_port(port: Any) -> Any:
        listening.callback(port)
        return port

    built.server._waitingForPort.addCallback(got_port)
    port = yield listening
    key = generate_key()
    key_id = new_key_id()
    built.store.add_key(KeyInfo(key_id, key_name, hash_key(key), time.time(), "team-a"))
    live = LiveProxy(
        built, port.getHost().port, key, key_id, fakes.get("openai"), fakes.get("anthropic"),
        provider_keys, tmpdir,
    )
    testcase.addCleanup(live.stop)
    return live


def in_thread(f: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
    """Run a blocking SDK call off the reactor thread."""
    return deferToThread(f, *args, **kw)
