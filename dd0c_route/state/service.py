# Tests: tests/test_state_live.py, tests/test_key_limits_live.py
"""
Shared state as one service, built by the tap when ``[state]`` is set.

Start: connect (the link reconnects by itself), start reconciling.  Stop:
one last round sends the pending deltas, then the connections close.  The
tap adds this service before the listening port, so it stops after the
port has closed and the last requests were counted.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed

from .breakers import BreakerShare
from .config import StateConfig
from .counters import SharedCounters
from .reconciler import Reconciler
from .redis_link import RedisLink
from .revocations import KeyAnnouncer, subscribe_key_changes, subscribe_revocations

__all__ = ["SharedState", "instance_id"]


def instance_id() -> str:
    """This process, uniquely: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedState(Service):
    """Link, counters, reconciler, revocations and breaker channel."""

    def __init__(self, config: StateConfig, reactor: Any) -> None:
        self.setName("shared-state")
        self.config = config
        self.instance = instance_id()
        closed = config.on_redis_down == "closed"
        self.counters = SharedCounters(config.key_prefix, lease_fraction=config.lease_fraction, closed_when_down=closed)
        self.link = RedisLink(config, reactor, lambda up: self.reconciler.link_changed(up))
        self.reconciler = Reconciler(
            self.counters, self.link, reactor,
            instance=self.instance, interval=config.sync_interval, where=config.display_url, closed_when_down=closed,
        )

    def connect(self, keys: Any, breaker: Any) -> None:
        """Evict revoked keys from ``keys``, reload it on key changes; share ``breaker``'s transitions."""
        subscribe_revocations(self.link, self.config.key_prefix, keys.evict)
        subscribe_key_changes(self.link, self.config.key_prefix, keys.refresh)
        BreakerShare(breaker, self.link, self.config.key_prefix, self.instance)

    def announcer(self) -> KeyAnnouncer:
        """For the admin API: tell every proxy a key was revoked or changed."""
        return KeyAnnouncer(self.link, self.config.key_prefix)

    def startService(self) -> None:
        super().startService()
        # Until the first round answers, requests are admitted on the lease
        # of a lone instance: the first requests never wait for Redis.
        self.link.start()
        self.reconciler.startService()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        last = self.reconciler.stopService() or succeed(None)
        return last.addBoth(lambda _: self.link.stop())
