# Tests: tests/test_state_live.py
"""
The connection to Redis: one command connection and one subscriber, kept up.

txredisapi is Twisted-native (its protocol runs on the reactor, nothing
blocks), so no thread is needed; it runs on Python 3.11 and Twisted 24.7
through 26.x.  We use its protocols and not its pooled
``Connection()``: the pool queues commands while disconnected, waiting for a
reconnection, and the reconciler must instead learn *at once* that Redis is
gone (to switch to local limits) and never pile up rounds.  So this module
owns the reconnect loop, with backoff, and a command issued while down
fails immediately.

The password is sent by txredisapi's ``AUTH`` on connect; it is never
formatted: log lines name :attr:`StateConfig.display_url`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import txredisapi
from twisted.internet import protocol
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.logger import Logger
from zope.interface import implementer

from .config import StateConfig
from .interfaces import IStateLink

__all__ = ["RedisLink", "RedisUnavailable"]

log = Logger()

_REPLY_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 2.0


class RedisUnavailable(Exception):
    """A command was issued while Redis is not connected."""


class _Subscriber(txredisapi.SubscriberProtocol):
    """Hands every message to the link's receivers."""

    link: RedisLink

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.link._deliver(_text(channel), _text(message))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _OneShot(protocol.Factory):
    """What txredisapi's protocol expects of its factory on a failed AUTH."""

    noisy = False
    isLazy = False

    def __init__(self, proto: Any) -> None:
        self._proto = proto
        self.problem: Optional[str] = None

    def buildProtocol(self, addr: Any) -> Any:
        self._proto.factory = self
        return self._proto

    def stopTrying(self) -> None:
        pass

    def connectionError(self, message: str) -> None:
        self.problem = message


@implementer(IStateLink)
class RedisLink:
    """
    Keeps a command and a subscriber connection to Redis; calls
    ``on_change(up)`` on every transition (the reconciler logs them once).
    """

    def __init__(self, config: StateConfig, reactor: Any, on_change: Callable[[bool], None]) -> None:
        self._config = config
        self._reactor = reactor
        self._on_change = on_change
        self._commands: Any = None
        self._subscriber: Any = None
        self._receivers: dict[str, list[Callable[[str], None]]] = {}
        self._running = False
        self._delay = 0.25
        self._retry: Any = None
        self.up = False

    def _endpoint(self) -> Any:
        config = self._config
        endpoint: Any = HostnameEndpoint(self._reactor, config.host, config.port, timeout=_CONNECT_TIMEOUT)
        if config.tls:
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(config.host), endpoint)
        return endpoint

    def _open(self, proto: Any) -> Deferred[Any]:
        d = self._endpoint().connect(_OneShot(proto))
        d.addCallback(lambda p: p.whenConnected())
        d.addTimeout(_CONNECT_TIMEOUT * 2, self._reactor)
        return d

    def _protocol(self, kind: type) -> Any:
        config = self._config
        password = config.password.reveal() if config.password is not None else None
        return kind(
            password=password, username=config.username, dbid=config.db or None,
            replyTimeout=_REPLY_TIMEOUT, convertNumbers=kind is not _Subscriber,
        )

    def start(self) -> None:
        """Connect now, and again after every loss, until :meth:`stop`."""
        self._running = True
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        commands = self._protocol(txredisapi.RedisProtocol)
        subscriber = self._protocol(_Subscriber)
        subscriber.link = self

        def ready(_: Any) -> None:
            if not self._running:
                commands.transport.loseConnection()
                subscriber.transport.loseConnection()
                return
            self._commands, self._subscriber = commands, subscriber
            self._delay = 0.25
            for channel in self._receivers:
                subscriber.subscribe(channel).addErrback(lambda _: None)
            commands.whenDisconnected().addCallback(lambda _: self._lost(commands))
            subscriber.whenDisconnected().addCallback(lambda _: self._lost(subscriber))
            self.up = True
            self._on_change(True)

        def failed(_: Any) -> None:
            for proto in (commands, subscriber):
                if proto.transport is not None:
                    proto.transport.abortConnection()
            # Reported on every failed attempt; the reconciler logs only changes.
            self._on_change(False)
            self._schedule()

        gatherResults([self._open(commands), self._open(subscriber)], consumeErrors=True).addCallbacks(ready, failed)

    def _schedule(self) -> None:
        if self._running and self._retry is None:
            self._retry = self._reactor.callLater(self._delay, self._connect)
            self._delay = min(self._delay * 2, 5.0)

    def _lost(self, which: Any) -> None:
        if which is not self._commands and which is not self._subscriber:
            return
        for proto in (self._commands, self._subscriber):
            if proto is not None and proto.transport is not None:
                proto.transport.loseConnection()
        self._commands = self._subscriber = None
        if self.up:
            self.up = False
            self._on_change(False)
        self._schedule()

    def call_script(self, script: str, keys: Sequence[str], args: Sequence[str]) -> Deferred[Any]:
        if self._commands is None:
            return fail(RedisUnavailable("not connected"))
        result: Deferred[Any] = self._commands.eval(script, list(keys), list(args))
        return result

    def publish(self, channel: str, message: str) -> Deferred[Any]:
        if self._commands is None:
            return fail(RedisUnavailable("not connected"))
        result: Deferred[Any] = self._commands.publish(channel, message)
        return result

    def subscribe(self, channel: str, receive: Callable[[str], None]) -> None:
        first = channel not in self._receivers
        self._receivers.setdefault(channel, []).append(receive)
        if first and self._subscriber is not None:
            self._subscriber.subscribe(channel).addErrback(lambda _: None)

    def _deliver(self, channel: str, message: str) -> None:
        for receive in self._receivers.get(channel, ()):
            try:
                receive(message)
            except Exception:
                log.failure("A shared-state message handler failed (channel {channel})", channel=channel)

    def stop(self) -> Deferred[Any]:
        """Close both connections and stop reconnecting."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        waits = []
        for proto in (self._commands, self._subscriber):
            if proto is not None and proto.transport is not None:
                waits.append(proto.whenDisconnected())
                proto.transport.loseConnection()
        self._commands = self._subscriber = None
        self.up = False
        return gatherResults(waits, consumeErrors=True)
