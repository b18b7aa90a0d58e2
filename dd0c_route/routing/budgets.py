# Tests: tests/test_routing_limits.py, tests/test_key_limits.py
"""
Spend caps and rate limits per key, checked before the upstream call.

Nothing here reads the database on a request: spend per key and per team
for the current UTC day and month are in-memory sums, updated by
:meth:`Budgets.observe` from every usage record as the meter submits it,
and seeded once at start from the ledger (:meth:`Budgets.seed`, run in a
thread by the caller).  A request is admitted while the spend so far is
under the cap, so the request that crosses it finishes and the next one is
refused.

Rate limits are token buckets on the injected clock: ``requests_per_minute``
takes one token per admitted request; ``tokens_per_minute`` admits a request
while the bucket holds its estimated prompt size (characters / 4, capped at
the bucket's size), and is debited by the real prompt and completion tokens
when its record arrives.  Concurrent requests are not reserved against each
other, so a burst can overshoot by what is in flight.

Budgets apply by scope: a key's id, a key's name, ``team:NAME``, and ``*``
(each key on its own).  Every scope that applies must admit the request.
A key's own limits, set from the admin API and carried on its
:class:`~dd0c_route.ledger.interfaces.KeyInfo`, are one more scope,
``key:ID`` (:mod:`.key_limits`): the scopes that apply to a key are found
again whenever the key cache hands over a key whose name, team or limits
changed, so an API change applies at the key cache's next reload.  When a
key's own spend cap first applies, what the ledger has stored for the key
becomes the floor of its figures (:meth:`Budgets.seed_key`).

With ``[state]`` the budgets also consult an
:class:`~dd0c_route.state.interfaces.ISharedCounters` (spend and windows
across every instance, from memory): a request passes only when both this
process's limits and the shared ones admit it.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Optional

from twisted.internet.interfaces import IReactorTime

from ..config import BudgetConfig
from ..ledger.records import UsageRecord
from .errors import BudgetExceeded, RateLimited, Refusal, retry_seconds
from .key_limits import limits_marker, own_budget

if TYPE_CHECKING:
    from ..state.interfaces import ISharedCounters

__all__ = ["Budgets", "day_and_month"]


def day_and_month(when: float) -> tuple[tuple[int, int, int], tuple[int, int], float, float]:
    """
    The UTC day and month of ``when``, and the seconds until the next day
    and the next month begin.
    """
    t = time.gmtime(when)
    day_start = when - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) - (when % 1)
    next_day = day_start + 86400
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    next_month = float(_utc_timestamp(year, month))
    return (t.tm_year, t.tm_mon, t.tm_mday), (t.tm_year, t.tm_mon), next_day - when, next_month - when


def _utc_timestamp(year: int, month: int) -> int:
    import calendar

    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))


def month_start(when: float) -> float:
    """The UTC start of ``when``'s month (for seeding)."""
    t = time.gmtime(when)
    return float(_utc_timestamp(t.tm_year, t.tm_mon))


class _Spend:
    __slots__ = ("day", "day_usd", "month", "month_usd")

    def __init__(self) -> None:
        self.day: Any = None
        self.day_usd = Decimal(0)
        self.month: Any = None
        self.month_usd = Decimal(0)

    def add(self, day: Any, month: Any, amount: Decimal) -> None:
        # Records can arrive out of order (a long stream started yesterday
        # ends after today's first record): an older period never resets
        # a newer one.
        self._period(day, month)
        if day == self.day:
            self.day_usd += amount
        if month == self.month:
            self.month_usd += amount

    def floor(self, day: Any, month: Any, today: Decimal, this_month: Decimal) -> None:
        """At least these figures for ``day`` and ``month`` (a seed from the ledger)."""
        self._period(day, month)
        if day == self.day:
            self.day_usd = max(self.day_usd, today)
        if month == self.month:
            self.month_usd = max(self.month_usd, this_month)

    def _period(self, day: Any, month: Any) -> None:
        if self.day is None or day > self.day:
            self.day, self.day_usd = day, Decimal(0)
        if self.month is None or month > self.month:
            self.month, self.month_usd = month, Decimal(0)

    def today(self, day: Any) -> Decimal:
        return self.day_usd if self.day == day else Decimal(0)

    def this_month(self, month: Any) -> Decimal:
        return self.month_usd if self.month == month else Decimal(0)


class _Bucket:
    """A token bucket refilled at ``limit`` per minute; may go into debt."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, limit: int, now: float) -> None:
        self.capacity = float(limit)
        self.rate = limit / 60.0
        self.level = float(limit)
        self.stamp = now

    def refill(self, now: float) -> float:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.level

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (call after refill)."""
        return max(0.0, (amount - self.level) / self.rate)

    def resize(self, limit: int) -> None:
        """A new limit (a key's, changed from the admin API): never more than a full new bucket."""
        self.capacity = float(limit)
        self.rate = limit / 60.0
        self.level = min(self.level, self.capacity)


#: The scopes that apply to one key: (budget, spend kind, spend id).
Applicable = tuple[tuple[BudgetConfig, str, str], ...]


class Budgets:
    """In-memory spend and rate state for the configured budgets."""

    def __init__(
        self, budgets: Iterable[BudgetConfig], clock: IReactorTime, shared: Optional[ISharedCounters] = None
    ) -> None:
        self._clock = clock
        self._shared = shared
        self._by_scope = {b.scope: b for b in budgets}
        self._key_spend: dict[str, _Spend] = {}
        self._team_spend: dict[str, _Spend] = {}
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        #: key id -> (the KeyInfo last seen, its limits marker, the scopes
        #: that apply, whether a spend cap of its own applies), found again
        #: when the marker changes.
        self._applicable: dict[str, tuple[Any, tuple[Any, ...], Applicable, bool]] = {}
        #: ``seed_needed(key_id)`` reads a key's stored spend when a spend cap
        #: of its own appears (set by :class:`~.service.Routing`; the answer
        #: comes back through :meth:`seed_key`).
        self.seed_needed: Optional[Any] = None

    @property
    def enabled(self) -> bool:
        """``[budgets]`` are configured (a full seed at start counts every key and team)."""
        return bool(self._by_scope)

    def _for_key(self, key: Any) -> Applicable:
        found = self._applicable.get(key.key_id)
        had_cap = False
        if found is not None:
            if found[0] is key:
                return found[2]
            marker = limits_marker(key)
            if found[1] == marker:
                self._applicable[key.key_id] = (key, marker, found[2], found[3])
                return found[2]
            had_cap = found[3]
        else:
            marker = limits_marker(key)
        out: list[tuple[BudgetConfig, str, str]] = []
        scopes = self._by_scope
        for scope in (key.key_id, key.name, "*"):
            budget = scopes.get(scope)
            if budget is not None and all(b is not budget for b, _, _ in out):
                out.append((budget, "key", key.key_id))
        own = own_budget(key)
        has_cap = own is not None and (own.daily_usd is not None or own.monthly_usd is not None)
        if own is not None:
            out.append((own, "key", key.key_id))
        if key.team is not None:
            budget = scopes.get("team:" + key.team)
            if budget is not None:
                out.append((budget, "team", key.team))
        result = tuple(out)
        # Bounded by the key table (operators grow it); past the bound a
        # key's scopes are found per request and never seeded.
        if len(self._applicable) < 100_000 or key.key_id in self._applicable:
            self._applicable[key.key_id] = (key, marker, result, has_cap)
            if has_cap and not had_cap and self.seed_needed is not None:
                self.seed_needed(key.key_id)
        return result

    def _bucket(self, budget: BudgetConfig, kind: str, ident: str, what: str, limit: int, now: float) -> _Bucket:
        index = (budget.scope + "/" + what, kind, ident)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket(limit, now)
        elif bucket.capacity != limit:
            bucket.refill(now)
            bucket.resize(limit)
        return bucket

    def admit(self, key: Any, estimated_tokens: int) -> None:
        """
        Raise :class:`RateLimited` or :class:`BudgetExceeded` (with the
        seconds until a retry can pass) unless every budget that
        applies to ``key`` admits one more request of this size.
        """
        if key is None:
            return
        applicable = self._for_key(key)
        if not applicable:
            return
        now = self._clock.seconds()
        day, month, to_day, to_month = day_and_month(now)
        taken: list[_Bucket] = []
        for budget, kind, ident in applicable:
            label = _scope_label(budget, kind)
            if budget.requests_per_minute is not None:
                bucket = self._bucket(budget, kind, ident, "rpm", budget.requests_per_minute, now)
                if bucket.refill(now) < 1.0:
                    for b in taken:
                        b.level += 1.0
                    raise RateLimited(
                        f"Rate limit reached for {label}: {budget.requests_per_minute} requests per minute",
                        retry_seconds(bucket.wait_for(1.0)),
                    )
                bucket.level -= 1.0
                taken.append(bucket)
            if budget.tokens_per_minute is not None:
                bucket = self._bucket(budget, kind, ident, "tpm", budget.tokens_per_minute, now)
                need = float(min(max(estimated_tokens, 1), budget.tokens_per_minute))
                if bucket.refill(now) < need:
                    for b in taken:
                        b.level += 1.0
                    raise RateLimited(
                        f"Rate limit reached for {label}: {budget.tokens_per_minute} tokens per minute",
                        retry_seconds(bucket.wait_for(need)),
                    )
            spend = (self._key_spend if kind == "key" else self._team_spend).get(ident)
            if spend is None:
                continue
            if budget.daily_usd is not None and spend.today(day) >= budget.daily_usd:
                for b in taken:
                    b.level += 1.0
                raise BudgetExceeded(
                    f"Budget exceeded for {label}: daily limit of ${budget.daily_usd} reached "
                    f"(${spend.today(day)} spent today, UTC)",
                    retry_seconds(to_day),
                )
            if budget.monthly_usd is not None and spend.this_month(month) >= budget.monthly_usd:
                for b in taken:
                    b.level += 1.0
                raise BudgetExceeded(
                    f"Budget exceeded for {label}: monthly limit of ${budget.monthly_usd} reached "
                    f"(${spend.this_month(month)} spent this month, UTC)",
                    retry_seconds(to_month),
                )
        if self._shared is not None:
            try:
                self._shared.admit(applicable, estimated_tokens, now)
            except Refusal:
                for b in taken:
                    b.level += 1.0
                raise

    def observe(self, record: UsageRecord) -> None:
        """Count one finished request's cost and tokens (never raises)."""
        cost = record.cost_usd
        found = self._applicable.get(record.key_id) if record.key_id is not None else None
        # Without [budgets], spend is counted only for keys with a cap of
        # their own (seeded from the ledger when it appears): a proxy with
        # no limit at all does no work here.
        if cost and (self._by_scope or (found is not None and found[3])):
            day, month, _, _ = day_and_month(record.created_at)
            if record.key_id is not None:
                self._spend(self._key_spend, record.key_id).add(day, month, cost)
            if record.team is not None and self._by_scope:
                self._spend(self._team_spend, record.team).add(day, month, cost)
        if found is None or not found[2]:
            return
        tokens = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
        applicable = found[2]
        if tokens:
            now = self._clock.seconds()
            for budget, kind, ident in applicable:
                if budget.tokens_per_minute is not None:
                    bucket = self._bucket(budget, kind, ident, "tpm", budget.tokens_per_minute, now)
                    bucket.refill(now)
                    bucket.level -= tokens
        if self._shared is not None:
            self._shared.observe(applicable, tokens, cost or Decimal(0), record.created_at, self._clock.seconds())

    def seed(self, records: Iterable[UsageRecord], before: float) -> int:
        """
        Add the spend of stored records created before ``before`` (the
        process start: later ones arrive through :meth:`observe`).  Returns
        how many were counted.
        """
        count = 0
        for record in records:
            if record.created_at < before and record.cost_usd:
                day, month, _, _ = day_and_month(record.created_at)
                if record.key_id is not None:
                    self._spend(self._key_spend, record.key_id).add(day, month, record.cost_usd)
                if record.team is not None:
                    self._spend(self._team_spend, record.team).add(day, month, record.cost_usd)
                count += 1
        if self._shared is not None:
            now = self._clock.seconds()
            day, month, _, _ = day_and_month(now)
            for kind, table in (("key", self._key_spend), ("team", self._team_spend)):
                for ident, spend in table.items():
                    self._shared.seed_periods(kind, ident, now, spend.today(day), spend.this_month(month))
        return count

    def seed_key(self, key_id: str, today: Decimal, this_month: Decimal) -> None:
        """
        What the ledger has stored for ``key_id`` today and this month (every
        process's records), asked for through ``seed_needed`` when a spend
        cap of its own appears: the floor of this process's figures (unless
        the full seed counts every key) and of the shared view.  A floor,
        not an addition, so it never counts a record twice; records still
        queued in a writer (a flush interval's worth) are missed.
        """
        now = self._clock.seconds()
        if not self._by_scope:
            day, month, _, _ = day_and_month(now)
            self._spend(self._key_spend, key_id).floor(day, month, today, this_month)
        if self._shared is not None:
            self._shared.seed_periods("key", key_id, now, today, this_month)

    @staticmethod
    def _spend(table: dict[str, _Spend], ident: str) -> _Spend:
        spend = table.get(ident)
        if spend is None:
            spend = table[ident] = _Spend()
        return spend

    def spent(self, key_id: Optional[str] = None, team: Optional[str] = None) -> tuple[Decimal, Decimal]:
        """(today, this month) for a key id or a team, UTC (for tests and health)."""
        day, month, _, _ = day_and_month(self._clock.seconds())
        table, ident = (self._key_spend, key_id) if key_id is not None else (self._team_spend, team)
        spend = table.get(ident or "")
        if spend is None:
            return Decimal(0), Decimal(0)
        return spend.today(day), spend.this_month(month)


def _scope_label(budget: BudgetConfig, kind: str) -> str:
    if budget.scope == "*":
        return "this key"
    if kind == "team":
        return budget.scope.replace("team:", "team ", 1)
    return "this key"
