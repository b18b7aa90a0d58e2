# Tests: tests/test_shared_counters.py, tests/test_state_live.py
"""
The reconciler: every ``sync_interval`` one script call sends this
instance's pending deltas and heartbeat and reads back the global totals.

It runs beside the hot path, never in it: a round is a callback on the
reactor that sends a few bytes and returns; at most one round is in flight.
A lease that runs out asks for a round at once (:meth:`kick`), spaced at
least a tenth of the interval apart, so a burst is served at the speed of a
round trip rather than refused until the next tick.

It also owns what an operator sees of an outage: one log line when Redis
goes, one when it is back (and the counters switch between shared and
local limits at those moments).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .counters import SYNC_SCRIPT, SharedCounters
from .interfaces import IStateLink

__all__ = ["Reconciler"]


class Reconciler(Service):
    """Keeps :class:`SharedCounters` in step with Redis; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        counters: SharedCounters,
        link: IStateLink,
        clock: IReactorTime,
        *,
        instance: str,
        interval: float = 0.1,
        where: str = "redis",
        closed_when_down: bool = False,
    ) -> None:
        self.counters = counters
        self._link = link
        self._clock = clock
        self._instance = instance
        self._interval = interval
        self._where = where
        self._closed = closed_when_down
        self._busy = False
        self._again = False
        self._last_round = float("-inf")
        self._kicked: Optional[Any] = None
        self._loop: Optional[LoopingCall] = None
        self._was_up: Optional[bool] = None
        #: Rounds completed (for tests and health).
        self.rounds = 0
        counters.kick = self.kick

    def link_changed(self, up: bool) -> None:
        """The link went up or down: switch limits, log it once, re-sync."""
        if up == self._was_up:
            return
        first = self._was_up is None
        self._was_up = up
        self.counters.down = not up
        if up:
            if not first:
                self._log.info("Shared state at {where} is back: limits are shared again, re-syncing", where=self._where)
            self.round()
        else:
            local = "refusing requests with 503" if self._closed else (
                f"enforcing each limit locally at 1/{self.counters.instances} of its headroom"
            )
            self._log.warn(
                "Shared state at {where} is unreachable: {policy} until it is back", where=self._where, policy=local
            )

    def kick(self) -> None:
        """A lease ran out: reconcile soon (at most every interval / 10)."""
        if self._busy:
            self._again = True
            return
        if self._kicked is None:
            gap = max(0.0, self._last_round + self._interval / 10 - self._clock.seconds())
            self._kicked = self._clock.callLater(gap, self._kicked_round)

    def _kicked_round(self) -> None:
        self._kicked = None
        self.round()

    def round(self) -> Optional[Deferred[None]]:
        """Send pending deltas, read the totals; never raises (None: no round now)."""
        if self._busy:
            self._again = True
            return None
        if not self._link.up:
            return None
        now = self._clock.seconds()
        keys, args, batch = self.counters.sync_request(self._instance, now)
        self._busy = True
        self._last_round = now

        def done(reply: Any) -> None:
            self.counters.sync_reply(batch, reply)
            self.rounds += 1

        def failed(failure: Any) -> None:
            # The deltas stay pending; the link reports the loss itself.
            self._log.debug("A shared-state round failed: {error}", error=failure.getErrorMessage())

        def finished(_: Any) -> None:
            self._busy = False
            if self._again:
                self._again = False
                self.kick()

        d: Deferred[None] = self._link.call_script(SYNC_SCRIPT, keys, args).addCallbacks(done, failed)
        return d.addBoth(finished)

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self.round)
        loop.clock = self._clock
        loop.start(self._interval, now=False)

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._kicked is not None and self._kicked.active():
            self._kicked.cancel()
        self._kicked = None
        # One last round sends what is pending (best effort).
        self._busy = False
        return self.round()
