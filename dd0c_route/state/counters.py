# Tests: tests/test_shared_counters.py, tests/test_state_live.py
"""
Spend and rate windows shared by every instance, admitted from memory.

Each limit is a set of integer counters in Redis (requests, tokens,
micro-dollars), one per period: a UTC day or month for spend, a minute for
the rate windows.  A request is admitted from this instance's *view*, never
by asking Redis: ``seen`` is the global total at the last reconciliation and
``pending`` what this instance added since.  Every ``sync_interval`` the
reconciler (:mod:`dd0c_route.state.reconciler`) sends the pending deltas in
one Lua script and reads back the global totals.

The lease bounds the overshoot.  Between two reconciliations an instance may
add at most ``lease_fraction / instances`` of the headroom left at the last
one (``limit - seen``), and always one request while it has added nothing
since — so all instances together use at most ``lease_fraction`` of what was
left, plus one request each.  With the defaults (0.2) a limit is exceeded by
at most one request per instance (the tokens of one request for
``tokens_per_minute``; for spend, as in one process, what requests in flight
cost when the cap is reached), however fast a burst arrives: the bound of
docs/shared-state.md.

Rate limits are sliding windows: the previous minute's count weighted by the
part of it still inside the last 60 s, plus this minute's.

When Redis is down the view freezes; each instance then enforces the
headroom it last saw divided by the instances it last saw (a period that
began during the outage: the full limit divided by them) — or, with
``on_redis_down = "closed"``, refuses.  Deltas stay pending and are sent
when Redis is back; a key Redis lost (a restart) is rebuilt from the
highest view any instance sends (the script keeps ``max(stored, view)``).
"""

from __future__ import annotations

import time
from decimal import ROUND_CEILING, Decimal
from typing import Any, Optional, Sequence

from zope.interface import implementer

from ..routing.errors import BudgetExceeded, RateLimited, StateUnavailable, retry_seconds
from .interfaces import ISharedCounters

__all__ = ["SYNC_SCRIPT", "SharedCounters", "micros"]

_MICRO = Decimal(1_000_000)

#: KEYS[1]: the instance heartbeat set; KEYS[2..]: counters.
#: ARGV: instance id, now, stale seconds, then per counter: view, delta, ttl.
#: Returns the number of live instances, then each counter's global total.
SYNC_SCRIPT = """
local now = tonumber(ARGV[2])
local stale = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
redis.call('EXPIRE', KEYS[1], math.ceil(stale * 10))
local out = {redis.call('ZCARD', KEYS[1])}
for i = 2, #KEYS do
  local j = 4 + (i - 2) * 3
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local view = tonumber(ARGV[j])
  if cur < view then cur = view end
  cur = cur + tonumber(ARGV[j + 1])
  redis.call('SET', KEYS[i], string.format('%d', cur), 'EX', ARGV[j + 2])
  out[#out + 1] = cur
end
return out
"""

#: An instance that has not reconciled for this long is no longer counted.
STALE_SECONDS = 3.0


def micros(amount: Decimal) -> int:
    """Whole micro-dollars, rounded up (a budget never under-counts)."""
    return int((amount * _MICRO).to_integral_value(rounding=ROUND_CEILING))


class _Counter:
    __slots__ = ("key", "pending", "period_end", "seen", "ttl")

    def __init__(self, key: str, ttl: int, period_end: float) -> None:
        self.key = key
        self.ttl = ttl
        self.period_end = period_end
        self.seen = 0
        self.pending = 0


@implementer(ISharedCounters)
class SharedCounters:
    """
    This instance's view of the shared counters; see the module docstring.

    ``down`` and ``instances`` are set by the reconciler; ``kick`` (if set)
    is called when a lease runs out, to reconcile early.
    """

    def __init__(self, prefix: str, *, lease_fraction: float = 0.2, closed_when_down: bool = False) -> None:
        self._prefix = prefix
        self._fraction = lease_fraction
        self._closed_when_down = closed_when_down
        self._counters: dict[str, _Counter] = {}
        self.instances = 1
        self.down = False
        self.kick: Any = None

    # -- the hot path ----------------------------------------------------

    def _counter(self, key: str, ttl: int, period_end: float) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter(key, ttl, period_end)
        return counter

    def _window(self, what: str, budget: Any, kind: str, ident: str, now: float) -> tuple[_Counter, _Counter, float]:
        minute = int(now // 60)
        base = f"{self._prefix}{what}:{budget.scope}|{kind}|{ident}:"
        end = (minute + 1) * 60.0
        current = self._counter(base + str(minute), 150, end)
        previous = self._counter(base + str(minute - 1), 150, end - 60.0)
        return current, previous, 1.0 - (now % 60) / 60.0

    def _spend(self, span: str, kind: str, ident: str, when: float) -> _Counter:
        t = time.gmtime(when)
        if span == "day":
            label = f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            end = when - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) + 86400
            ttl = 2 * 86400
        else:
            label = f"{t.tm_year}-{t.tm_mon:02d}"
            end = when + 32 * 86400
            ttl = 33 * 86400
        return self._counter(f"{self._prefix}usd:{span}:{kind}|{ident}:{label}", ttl, end)

    def _share(self) -> float:
        if self.down:
            return 1.0 / self.instances
        return self._fraction / self.instances

    def _fits(self, seen: float, ours: float, need: float, limit: float) -> bool:
        # The global view must fit (spend, whose cost is known only later,
        # as in one process: while under the cap); and this instance must
        # be within its lease, or have added nothing since the last round.
        if (seen + ours + need > limit) if need > 0 else (seen + ours >= limit):
            return False
        return ours <= 0 or ours + need <= self._share() * (limit - seen)

    def _window_fits(
        self, window: tuple[_Counter, _Counter, float], need: float, limit: float
    ) -> Optional[float]:
        """None when it fits, else seconds until it may."""
        current, previous, weight = window
        seen = current.seen + weight * previous.seen
        ours = current.pending + weight * previous.pending
        if self._fits(seen, ours, need, limit):
            return None
        if seen < limit:
            self._lease_out()
            return 1.0
        into = (1.0 - weight) * 60.0
        curr = current.seen + current.pending
        prev = previous.seen + previous.pending
        if curr + need <= limit and prev > 0:
            return max(1.0, 60.0 * (1.0 - (limit - need - curr) / prev) - into)
        return (60.0 - into) + 60.0 * max(0.0, 1.0 - (limit - need) / max(curr, 1))

    def _lease_out(self) -> None:
        if self.kick is not None and not self.down:
            self.kick()

    def admit(self, applicable: Sequence[Any], estimated_tokens: int, now: float) -> None:
        if self.down and self._closed_when_down:
            raise StateUnavailable(
                "Limits cannot be checked: the shared state store is unavailable", 1
            )
        take: list[_Counter] = []
        for budget, kind, ident in applicable:
            label = "this key" if budget.scope == "*" or kind != "team" else budget.scope.replace("team:", "team ", 1)
            limit = budget.requests_per_minute
            if limit is not None:
                window = self._window("rpm", budget, kind, ident, now)
                wait = self._window_fits(window, 1, limit)
                if wait is not None:
                    raise RateLimited(
                        f"Rate limit reached for {label}: {limit} requests per minute", retry_seconds(wait)
                    )
                take.append(window[0])
            limit = budget.tokens_per_minute
            if limit is not None:
                need = min(max(estimated_tokens, 1), limit)
                wait = self._window_fits(self._window("tpm", budget, kind, ident, now), need, limit)
                if wait is not None:
                    raise RateLimited(
                        f"Rate limit reached for {label}: {limit} tokens per minute", retry_seconds(wait)
                    )
            for span, cap in (("day", budget.daily_usd), ("month", budget.monthly_usd)):
                if cap is None:
                    continue
                counter = self._spend(span, kind, ident, now)
                if not self._fits(counter.seen, counter.pending, 0, micros(cap)):
                    spent = Decimal(counter.seen + counter.pending) / _MICRO
                    if counter.seen < micros(cap):
                        self._lease_out()
                        raise BudgetExceeded(
                            f"Budget exceeded for {label}: this instance's share of the {span}ly limit of "
                            f"${cap} is used until the next reconciliation",
                            1,
                        )
                    when = "today" if span == "day" else "this month"
                    raise BudgetExceeded(
                        f"Budget exceeded for {label}: {'daily' if span == 'day' else 'monthly'} limit of ${cap} "
                        f"reached (${spent.quantize(Decimal('0.000001'))} spent {when}, UTC, across all instances)",
                        retry_seconds(counter.period_end - now),
                    )
        for counter in take:
            counter.pending += 1

    def observe(self, applicable: Sequence[Any], tokens: int, cost: Decimal, when: float, now: float) -> None:
        amount = micros(cost) if cost else 0
        spent: set[tuple[str, str]] = set()
        for budget, kind, ident in applicable:
            if tokens and budget.tokens_per_minute is not None:
                self._window("tpm", budget, kind, ident, now)[0].pending += tokens
            if amount and (budget.daily_usd is not None or budget.monthly_usd is not None):
                if (kind, ident) not in spent:
                    spent.add((kind, ident))
                    self._spend("day", kind, ident, when).pending += amount
                    self._spend("month", kind, ident, when).pending += amount

    def seed_periods(self, kind: str, ident: str, now: float, today: Decimal, this_month: Decimal) -> None:
        """The ledger's totals for today and this month become this view's floor."""
        day = self._spend("day", kind, ident, now)
        day.seen = max(day.seen, micros(today))
        month = self._spend("month", kind, ident, now)
        month.seen = max(month.seen, micros(this_month))

    # -- reconciliation --------------------------------------------------

    def sync_request(self, instance: str, now: float) -> tuple[list[str], list[str], list[tuple[_Counter, int]]]:
        """The script's keys and arguments for one round, and what it sends."""
        keys = [self._prefix + "instances"]
        args = [instance, repr(now), repr(STALE_SECONDS)]
        batch: list[tuple[_Counter, int]] = []
        for key, counter in list(self._counters.items()):
            if counter.period_end + 60.0 < now and counter.pending == 0:
                del self._counters[key]
                continue
            sent = counter.pending
            keys.append(key)
            args += [str(counter.seen), str(sent), str(counter.ttl)]
            batch.append((counter, sent))
        return keys, args, batch

    def sync_reply(self, batch: Sequence[tuple[_Counter, int]], reply: Sequence[Any]) -> None:
        """Take the global totals; what was sent is now in them."""
        self.instances = max(1, int(reply[0]))
        for (counter, sent), total in zip(batch, reply[1:], strict=True):
            counter.seen = int(total)
            counter.pending -= sent

    @property
    def pending_total(self) -> int:
        """Units counted here and not yet in Redis (for tests and health)."""
        return sum(c.pending for c in self._counters.values())
