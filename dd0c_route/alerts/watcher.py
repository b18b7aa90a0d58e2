# Tests: tests/test_alerts.py, tests/test_alerts_live.py
"""
Budget alerts: notice which scopes spent, check their period's spend off
the reactor, and POST each crossing once.

On the reactor, :meth:`AlertWatcher.observe` (a record subscriber) only
notes which alerts a record touched, in a few dictionary lookups.  A check
runs ``check_delay`` seconds later, in the ledger's thread (the writer's
runner), so the writer's batch holding that record, queued on the same
thread earlier, is stored before the spend is read.  The check asks the
ledger what the scope spent in the current UTC period (``spend_between``,
the same figures the admin API shows); a crossing is *claimed* with an
insert that is unique per (scope, period, period start, threshold), so of
all the workers and instances that see it, exactly one wins and sends.
The winner POSTs the webhook (with retries, :mod:`.delivery`), then marks
the row ``sent`` or ``failed`` for the dashboard's alerts view.

Records counted later than the check (a slow batch, a store that was down)
are seen by the check the next record triggers: an alert can be late,
never doubled.  Scopes are those of ``[budgets]``: a key id or name,
``team:NAME``, and ``*`` (each key on its own: its rows are ``*:KEY_ID``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional, Sequence

import attrs
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..config import AlertConfig, BudgetConfig
from ..ledger.alert_records import AlertRecord
from ..ledger.records import UsageRecord
from ..ledger.usage_query import period_bounds
from .crossing import alert_limit, crossing, threshold_text, webhook_body
from .delivery import Delivery, deliver
from .interfaces import IWebhookPoster

__all__ = ["AlertWatcher", "watch_alerts"]

log = Logger()

#: (alert index, the key id for a ``*`` alert, else None)
Touched = tuple[int, Optional[str]]


class AlertWatcher(Service):
    """The ``[[alerts]]`` of one process; a record subscriber and a service."""

    def __init__(
        self,
        alerts: Sequence[AlertConfig],
        budgets: Iterable[BudgetConfig],
        store: Any,
        run: Callable[..., Deferred[Any]],
        clock: IReactorTime,
        poster: IWebhookPoster,
        *,
        check_delay: float = 1.0,
        attempts: int = 5,
        first_delay: float = 1.0,
    ) -> None:
        self._alerts = tuple(alerts)
        budgets = tuple(budgets)
        self._limits = tuple(alert_limit(alert, budgets) for alert in self._alerts)
        self._store = store
        self._run = run
        self._clock = clock
        self._poster = poster
        self._check_delay = check_delay
        self._attempts = attempts
        self._first_delay = first_delay
        self._by_team: dict[str, list[int]] = {}
        self._each_key: list[int] = []
        self._by_key: list[int] = []
        for index, alert in enumerate(self._alerts):
            if alert.scope == "*":
                self._each_key.append(index)
            elif alert.scope.startswith("team:"):
                self._by_team.setdefault(alert.scope[5:], []).append(index)
            else:
                self._by_key.append(index)
        #: key id -> name, learned by the checks (for alerts scoped by name).
        self._names: dict[str, str] = {}
        self._touched: set[Touched] = set()
        #: (index, row scope, period start) already claimed here or elsewhere.
        self._fired: set[tuple[int, str, float]] = set()
        self._timer: Optional[IDelayedCall] = None
        self._checking: Optional[Deferred[Any]] = None
        self._deliveries: set[Deferred[Any]] = set()

    @property
    def busy(self) -> bool:
        """A check is pending or running, or a webhook is being delivered."""
        return self._timer is not None or self._checking is not None or bool(self._deliveries)

    def observe(self, record: UsageRecord) -> None:
        """Note the alerts ``record`` touched (a record subscriber: O(alerts), no I/O)."""
        if not record.cost_usd or not self.running:
            return
        touched = self._touched
        before = len(touched)
        key_id = record.key_id
        if record.team is not None:
            for index in self._by_team.get(record.team, ()):
                touched.add((index, None))
        if key_id is not None:
            for index in self._each_key:
                touched.add((index, key_id))
            for index in self._by_key:
                scope = self._alerts[index].scope
                # An unknown key may carry the name: the check resolves it.
                if key_id == scope or self._names.get(key_id, scope) == scope:
                    touched.add((index, None))
        if len(touched) > before:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._checking is None:
            self._timer = self._clock.callLater(self._check_delay, self._check)

    def _check(self) -> None:
        self._timer = None
        touched, self._touched = self._touched, set()
        d = self._run(self._find_crossings, touched, frozenset(self._fired), self._clock.seconds())
        self._checking = d
        d.addCallbacks(self._found, lambda f: log.failure("Budget alerts: the spend check failed", f))
        d.addBoth(self._checked)

    def _checked(self, _: Any) -> None:
        self._checking = None
        if self._touched and self.running:
            self._schedule()

    def _find_crossings(
        self, touched: set[Touched], fired: frozenset[tuple[int, str, float]], now: float
    ) -> tuple[dict[str, str], list[tuple[int, tuple[int, str, float], Optional[AlertRecord]]]]:
        """
        In the ledger thread: each touched alert's spend for the current
        period, and a claim for each crossing.  Returns the key names
        learned and, per crossing, the record to send (None when another
        process had claimed it).
        """
        names: dict[str, str] = {}
        if any(index in self._by_key for index, _ in touched):
            names = {info.key_id: info.name for info in self._store.list_keys()}
        found = []
        for index, key_id in sorted(touched, key=lambda t: (t[0], t[1] or "")):
            alert = self._alerts[index]
            start, end = period_bounds(alert.period, now)
            row_scope = alert.scope if key_id is None else "*:" + key_id
            memo = (index, row_scope, start)
            if memo in fired:
                continue
            if alert.scope.startswith("team:"):
                spent = self._store.spend_between(start, end, team=alert.scope[5:])
            else:
                ids = [key_id] if key_id is not None else [
                    kid for kid, name in names.items() if alert.scope in (kid, name)
                ]
                spent = self._store.spend_between(start, end, key_ids=ids)
            claim = crossing(
                alert, row_scope=row_scope, limit=self._limits[index], spent=spent, period_start=start, now=now
            )
            if claim is None:
                continue
            found.append((index, memo, claim if self._store.claim_alert(claim) else None))
        return names, found

    def _found(self, result: tuple[dict[str, str], list[tuple[int, tuple[int, str, float], Optional[AlertRecord]]]]) -> None:
        names, found = result
        if names:
            self._names = names
        for index, memo, claim in found:
            self._fired.add(memo)
            if claim is not None and self.running:
                self._deliver(index, claim)
        self._forget_old_periods()

    def _forget_old_periods(self) -> None:
        now = self._clock.seconds()
        current = {index: period_bounds(alert.period, now)[0] for index, alert in enumerate(self._alerts)}
        self._fired = {memo for memo in self._fired if memo[2] >= current[memo[0]]}

    def _deliver(self, index: int, claim: AlertRecord) -> None:
        alert = self._alerts[index]
        body = json.dumps(webhook_body(alert, claim)).encode("utf-8")
        d = deliver(
            self._poster, self._clock, alert.webhook_url.reveal(), body,
            attempts=self._attempts, first_delay=self._first_delay,
        )
        self._deliveries.add(d)

        def delivered(outcome: Delivery) -> Deferred[Any]:
            if not outcome.sent:
                log.warn(
                    "Budget alert for {scope} ({period}, threshold {threshold}) not delivered "
                    "after {attempts} attempts: {why}",
                    scope=claim.scope, period=claim.period, threshold=threshold_text(alert),
                    attempts=outcome.attempts, why=outcome.why,
                )
            return self._mark(claim, "sent" if outcome.sent else "failed", outcome.attempts)

        def stopped(failure: Any) -> Deferred[Any]:
            failure.trap(CancelledError)
            return self._mark(claim, "failed", claim.attempts)

        d.addCallbacks(delivered, stopped)
        d.addErrback(lambda f: log.failure("Budget alerts: could not record a delivery", f))
        d.addBoth(lambda _: self._deliveries.discard(d))

    def _mark(self, claim: AlertRecord, status: str, attempts: int) -> Deferred[Any]:
        return self._run(self._store.mark_alert, attrs.evolve(claim, status=status, attempts=attempts))

    def stopService(self) -> Any:
        """Cancel the pending check and deliveries; wait for the check and the rows' marks."""
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        deliveries = list(self._deliveries)
        for d in deliveries:
            d.cancel()
        waits = deliveries + ([self._checking] if self._checking is not None else [])
        return DeferredList(waits) if waits else None


def watch_alerts(config: Any, store: Any, run: Callable[..., Deferred[Any]], reactor: Any) -> AlertWatcher:
    """
    The watcher for ``config.alerts``, posting through treq; its check
    waits for a few of the writer's flush intervals (at least a second).
    """
    from .webhook import TreqWebhookPoster

    return AlertWatcher(
        config.alerts, config.budgets, store, run, reactor, TreqWebhookPoster(reactor),
        check_delay=max(1.0, 4 * config.ledger.flush_interval),
    )
