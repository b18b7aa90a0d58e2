# Tests: tests/test_shared_counters.py
"""
An in-memory :class:`~dd0c_route.state.interfaces.IStateLink`: one
"Redis" that several links (instances) share, running the reconciler's
script in Python, with pub/sub delivered at once.  Set ``up = False`` on a
link to play an outage.  It passes the same contract test as the real link
(``tests/test_shared_counters.py::LinkContract``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ..state.counters import SYNC_SCRIPT
from ..state.interfaces import IStateLink

__all__ = ["FakeRedis", "FakeStateLink"]


class FakeRedis:
    """The shared store: counters, the instance set, channels."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.instances: dict[str, dict[str, float]] = {}
        self.channels: dict[str, list[Callable[[str], None]]] = {}

    def run_sync(self, keys: Sequence[str], args: Sequence[str]) -> list[int]:
        members = self.instances.setdefault(keys[0], {})
        now, stale = float(args[1]), float(args[2])
        members[args[0]] = now
        for name, stamp in list(members.items()):
            if stamp <= now - stale:
                del members[name]
        out = [len(members)]
        for i, key in enumerate(keys[1:]):
            view, delta = int(args[3 + 3 * i]), int(args[4 + 3 * i])
            value = max(self.values.get(key, 0), view) + delta
            self.values[key] = value
            out.append(value)
        return out


@implementer(IStateLink)
class FakeStateLink:
    """One instance's connection to a :class:`FakeRedis`."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.up = True
        self.published: list[tuple[str, str]] = []

    def call_script(self, script: str, keys: Sequence[str], args: Sequence[str]) -> Deferred[Any]:
        if not self.up:
            return fail(ConnectionError("fake redis is down"))
        if script != SYNC_SCRIPT:
            return fail(ValueError("the fake runs only the reconciler's script"))
        return succeed(self.redis.run_sync(keys, args))

    def publish(self, channel: str, message: str) -> Deferred[Any]:
        if not self.up:
            return fail(ConnectionError("fake redis is down"))
        self.published.append((channel, message))
        receivers = list(self.redis.channels.get(channel, ()))
        for receive in receivers:
            receive(message)
        return succeed(len(receivers))

    def subscribe(self, channel: str, receive: Callable[[str], None]) -> None:
        self.redis.channels.setdefault(channel, []).append(receive)
