# Tests: tests/test_catalog.py, tests/test_live_models.py
"""
The models the proxy serves, for ``GET /v1/models``: what is true, not a
built-in catalogue.

- every exact model name a provider's config lists;
- every routing alias (``auto``…), owned by its target's provider;
- for a provider configured by globs (or the kind's default globs), the
  provider's own ``GET /v1/models`` list, filtered by those globs and kept
  only where this provider is the one that serves the name.

Provider lists are fetched when the service starts and refreshed every
``interval`` seconds in the background; the listing is built from the last
good answer, cached as bytes, and never waits for a provider: one that is
down, slow or answers garbage leaves its earlier list (or none) in place
and is logged, it never fails the listing nor delays start-up.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence

import treq.client
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from ..config import ProviderConfig
from .interfaces import IProvider

__all__ = ["ModelCatalog", "http_model_lister"]

log = Logger()

#: ``fetch(provider)`` -> Deferred firing with the model ids it lists.
Lister = Callable[[ProviderConfig], "Deferred[list[str]]"]

#: Largest provider model list read (bytes): a list is a few kB.
_MAX_LIST_BYTES = 4 * 1024 * 1024


class ModelCatalog(Service):
    """The served-model listing; see the module docstring."""

    def __init__(
        self,
        providers: Sequence[ProviderConfig],
        provider_for: Callable[[str], Optional[ProviderConfig]],
        aliases: Mapping[str, str],
        clock: Any,
        fetch: Optional[Lister] = None,
        interval: float = 300.0,
    ) -> None:
        self._providers = tuple(providers)
        self._provider_for = provider_for
        self._aliases = dict(aliases)
        self._clock = clock
        self._fetch = fetch
        self._interval = interval
        self._fetched: dict[str, tuple[str, ...]] = {}
        self._pending: set[Deferred[Any]] = set()
        self._loop: Optional[LoopingCall] = None
        self._body = self._build()

    # -- the listing ------------------------------------------------------

    def entries(self) -> list[tuple[str, str]]:
        """``(model id, owning provider's name)``, sorted by id."""
        seen: dict[str, str] = {}
        for provider in self._providers:
            for model in provider.exact_models:
                seen.setdefault(model, provider.name)
            for model in self._fetched.get(provider.name, ()):
                # Served by this provider: one of its globs admits it and no
                # exact name or longer glob elsewhere claims it.
                if self._provider_for(model) is provider:
                    seen.setdefault(model, provider.name)
        for alias, target in self._aliases.items():
            owner = self._provider_for(target)
            if owner is not None:
                seen.setdefault(alias, owner.name)
        return sorted(seen.items())

    def _build(self) -> bytes:
        data = [{"id": model, "object": "model", "created": 0, "owned_by": owner} for model, owner in self.entries()]
        return json.dumps({"object": "list", "data": data}).encode("utf-8")

    def body(self) -> bytes:
        """The ``GET /v1/models`` body, from what is known now (never waits)."""
        return self._body

    # -- refreshing -------------------------------------------------------

    def _listed_providers(self) -> list[ProviderConfig]:
        return [p for p in self._providers if p.model_globs]

    def refresh(self) -> Deferred[None]:
        """Ask every glob-configured provider for its list; fires when all have answered or failed."""
        fetch = self._fetch
        if fetch is None:
            return succeed(None)
        rounds = []
        for provider in self._listed_providers():
            d = fetch(provider)
            self._pending.add(d)
            d.addCallbacks(self._got, self._failed, callbackArgs=(provider,), errbackArgs=(provider,))
            d.addBoth(self._forget, d)
            rounds.append(d)
        return DeferredList(rounds).addCallback(lambda _: None)

    def _got(self, models: Any, provider: ProviderConfig) -> None:
        if not isinstance(models, list):
            return
        ids = tuple(sorted({m for m in models if isinstance(m, str) and m}))
        if self._fetched.get(provider.name) != ids:
            self._fetched[provider.name] = ids
            self._body = self._build()

    def _failed(self, failure: Any, provider: ProviderConfig) -> None:
        log.warn(
            "could not list the models of provider {provider}: {error}; /v1/models keeps what it knew",
            provider=provider.name, error=failure.getErrorMessage(),
        )

    def _forget(self, result: Any, d: Deferred[Any]) -> Any:
        self._pending.discard(d)
        return None

    def startService(self) -> None:
        super().startService()
        if self._fetch is None or not self._listed_providers():
            return
        loop = self._loop = LoopingCall(self.refresh)
        loop.clock = self._clock
        # now=True: the first round starts at once, in the background.
        loop.start(self._interval, now=True).addErrback(lambda f: log.failure("model list refresh stopped", f))

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for d in list(self._pending):
            d.cancel()
        return None


def http_model_lister(
    reactor: Any, adapters: Mapping[str, IProvider], timeout: float = 10.0
) -> Lister:
    """
    A :data:`Lister` asking ``GET /v1/models`` of a provider with its own
    key (the adapter's headers), on a client of its own with no persistent
    connections, so the relay's pool and connection counts never see it.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = treq.client.HTTPClient(Agent(reactor, pool=pool))

    def fetch(provider: ProviderConfig) -> Deferred[list[str]]:
        adapter = adapters.get(provider.kind)
        if adapter is None:
            return succeed([])
        url = adapter.url(provider, "/v1/models")
        headers = adapter.headers(provider, Headers(), native=False)
        d: Deferred[Any] = client.get(url, headers=Headers(dict(headers)), allow_redirects=False)
        # Headers and body both within ``timeout`` (cancel reaches a body read in progress).
        timer = reactor.callLater(timeout, d.cancel)

        def read(response: Any) -> Deferred[Any]:
            if response.code != 200:
                raise ValueError(f"GET /v1/models answered {response.code}")
            return treq.content(response)

        def parse(raw: bytes) -> list[str]:
            if len(raw) > _MAX_LIST_BYTES:
                raise ValueError("model list too large")
            data = json.loads(raw).get("data")
            if not isinstance(data, list):
                raise ValueError("model list without a data array")
            return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addCallback(read)
        d.addCallback(parse)
        d.addBoth(done)
        return d

    return fetch
