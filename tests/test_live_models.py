"""
``GET /v1/models``, live: what the proxy serves, from the config and from
the providers' own lists (fetched in the background), with the official
``openai`` SDK as the client.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from .live import fake_provider_key, in_thread, start_live_proxy
from .openapi_schema import validate


class Silent(Protocol):
    """Accepts a connection, reads, never answers."""

    def connectionMade(self) -> None:
        self.factory.opened.append(self)
        waiters, self.factory.waiters = self.factory.waiters, []
        for d in waiters:
            d.callback(None)


class SilentFactory(Factory):
    protocol = Silent

    def __init__(self) -> None:
        self.opened: list[Silent] = []
        self.waiters: list[Deferred[None]] = []

    def connected(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.opened:
            d.callback(None)
        else:
            self.waiters.append(d)
        return d


class ModelListTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_glob_served_models_come_from_the_provider_list(self):
        """
        Providers configured by their default globs list what the providers
        list (and the globs admit), owned by the provider's config name; a
        built-in catalogue name the provider does not list is absent.
        """
        live = yield start_live_proxy(self, {"routing": {"aliases": {"auto": "gpt-4o-mini"}}})
        yield live.app.catalog.refresh()
        client = live.openai_client()
        raw = yield in_thread(lambda: client.models.with_raw_response.list())
        body = json.loads(raw.text)
        validate("ListModelsResponse", body)
        owners = {m["id"]: m["owned_by"] for m in body["data"]}
        self.assertEqual(owners["gpt-4o"], "openai")
        self.assertEqual(owners["claude-sonnet-4-20250514"], "anthropic")
        self.assertEqual(owners["auto"], "openai")
        self.assertNotIn("gpt-5-nano", owners)
        self.assertEqual([m.id for m in raw.parse().data], [m["id"] for m in body["data"]])

    @inlineCallbacks
    def test_answers_while_the_provider_never_answers(self):
        """
        A provider that accepts the connection and never answers: start-up
        is not held, and the listing (config names and aliases) is served
        while its list request is still open.
        """
        silent = SilentFactory()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(silent)
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}/v1"
        extra = {
            "providers": {"silent": {"kind": "openai", "base_url": base, "api_key": fake_provider_key(), "models": ["gpt-4o-exact", "gpt-*"]}},
            "routing": {"aliases": {"auto": "gpt-4o-exact"}},
        }
        live = yield start_live_proxy(self, extra, kinds=("anthropic",))
        yield silent.connected()
        client = live.openai_client()
        models = yield in_thread(lambda: client.models.list())
        owners = {m.id: m.owned_by for m in models.data}
        self.assertEqual((owners["gpt-4o-exact"], owners["auto"]), ("silent", "silent"))
        # Its list request is still open, unanswered.
        self.assertTrue(silent.opened and all(p.transport.connected for p in silent.opened))
