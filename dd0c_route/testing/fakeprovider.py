# Tests: tests/test_fakeprovider.py
"""
Fake OpenAI and Anthropic providers for tests and local runs.

A fake is a twisted.web ``Site`` behind a connection-counting factory, all
driven by one :class:`FakeProviderState`.  In a test::

    fake = yield start_fake_provider(reactor, "openai")
    fake.state.push(Scenario(status=429, headers={"retry-after": "2"}))
    ...  # point the proxy (or an SDK) at fake.base_url
    yield fake.state.wait_for_open_connections(0)
    yield fake.stop()

Across processes (``twistd -n dd0c-route-fake``) the same state is steered
over HTTP: ``POST /_fake/scenario`` (a JSON Scenario; ``"default": true``
makes it the default), ``POST /_fake/reset`` and ``GET /_fake/stats``.
"""

from __future__ import annotations

__all__ = [
    "KINDS",
    "FakeProviderState",
    "ReceivedRequest",
    "RunningFake",
    "Scenario",
    "SimpleTokenCounter",
    "TokenCounter",
    "build_fake_factory",
    "default_counter",
    "reply_text_for",
    "start_fake_provider",
]

import json
from typing import Any, Optional, Union

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ._fakestate import (
    FakeProviderState,
    ReceivedRequest,
    Scenario,
    SimpleTokenCounter,
    TokenCounter,
    default_counter,
    reply_text_for,
)
from .fake_anthropic import FakeAnthropic
from .fake_openai import FakeOpenAI

KINDS = ("openai", "anthropic")


def _control(request: Request, state: FakeProviderState) -> bytes:
    """The ``/_fake/*`` endpoints that steer a fake running in another process."""
    path = request.path.rstrip(b"/")
    request.setHeader(b"content-type", b"application/json")
    if request.method == b"GET" and path == b"/_fake/stats":
        return json.dumps(
            {
                "open_connections": state.open_connections,
                "total_connections": state.total_connections,
                "request_count": len(state.requests),
                "queued_scenarios": len(state.scenarios),
            }
        ).encode()
    if request.method == b"POST" and path == b"/_fake/reset":
        state.reset()
        return b"{}"
    if request.method == b"POST" and path == b"/_fake/scenario":
        try:
            fields = json.loads(request.content.read() if request.content is not None else b"")
            if not isinstance(fields, dict):
                raise ValueError("a scenario must be a JSON object")
            make_default = bool(fields.pop("default", False))
            scenario = Scenario.from_json(fields)
        except (ValueError, TypeError) as e:
            request.setResponseCode(400)
            return json.dumps({"error": str(e)}).encode()
        if make_default:
            state.default_scenario = scenario
        else:
            state.push(scenario)
        return b"{}"
    request.setResponseCode(404)
    return b'{"error": "unknown control endpoint"}'


class _FakeRoot(Resource):
    """Routes ``/_fake/*`` to the controls and everything else to the provider."""

    isLeaf = True

    def __init__(self, provider: Union[FakeOpenAI, FakeAnthropic], state: FakeProviderState):
        super().__init__()
        self._provider = provider
        self._state = state

    def render(self, request: Request) -> Union[bytes, int]:  # type: ignore[override]
        if request.path.startswith(b"/_fake/"):
            return _control(request, self._state)
        try:
            return self._provider.render(request)
        finally:
            self._state.request_handled()


class _CountingFactory(WrappingFactory):
    """Counts open and total TCP connections into the state."""

    def __init__(self, wrapped: Site, state: FakeProviderState) -> None:
        super().__init__(wrapped)
        self._state = state

    def registerProtocol(self, p: Protocol) -> None:
        super().registerProtocol(p)
        self._state.connection_opened()

    def unregisterProtocol(self, p: Protocol) -> None:
        super().unregisterProtocol(p)
        self._state.connection_closed()


class _QuietSite(Site):
    """No access log: it is noise in test output."""

    def log(self, request: Any) -> None:
        pass


def build_fake_factory(
    reactor: IReactorTime, kind: str, state: Optional[FakeProviderState] = None
) -> WrappingFactory:
    """
    The server factory of a fake provider of ``kind`` (``"openai"`` or
    ``"anthropic"``), to listen with on any endpoint.  Its state is at
    ``factory.state``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    state = state if state is not None else FakeProviderState()
    provider = (FakeOpenAI if kind == "openai" else FakeAnthropic)(reactor, state)
    site = _QuietSite(_FakeRoot(provider, state))
    site.displayTracebacks = False
    factory = _CountingFactory(site, state)
    factory.state = state  # type: ignore[attr-defined]
    return factory


@attrs.frozen
class RunningFake:
    """A fake provider listening on 127.0.0.1."""

    kind: str
    state: FakeProviderState
    port: int
    _listening: IListeningPort
    _factory: WrappingFactory

    @property
    def base_url(self) -> str:
        """The SDK ``base_url``: with ``/v1`` for OpenAI, without for Anthropic."""
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai" else root

    def stop(self) -> Deferred[None]:
        """Stop listening and reset every open connection; fires when all are closed."""
        stopped = self._listening.stopListening()
        for wrapper in list(self._factory.protocols):
            wrapper.transport.abortConnection()
        closed = self.state.wait_for_open_connections(0)
        both = DeferredList([stopped or succeed(None), closed], fireOnOneErrback=True,
                            consumeErrors=True)
        return both.addCallback(lambda _: None)


def start_fake_provider(
    reactor: Any,
    kind: str,
    state: Optional[FakeProviderState] = None,
    *,
    clock: Optional[IReactorTime] = None,
) -> Deferred[RunningFake]:
    """
    Listen with a fake provider on 127.0.0.1, on a free port.  ``reactor``
    provides ``IReactorTCP`` (and ``IReactorTime``, unless ``clock`` is
    given: with a ``task.Clock`` a test steps the scenario's delays itself
    while the connections stay real).
    """
    factory = build_fake_factory(clock if clock is not None else reactor, kind, state)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def started(listening: IListeningPort) -> RunningFake:
        return RunningFake(
            kind, factory.state, listening.getHost().port, listening, factory  # type: ignore[attr-defined]
        )

    return endpoint.listen(factory).addCallback(started)

