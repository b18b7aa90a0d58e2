# Tests: tests/test_ledger.py, tests/test_keycache.py
"""
In-memory doubles for the ledger seams, shipped so any module's tests can
use them.

:class:`InMemoryLedger` is a verified fake: it passes the same contract tests as
:class:`~dd0c_route.ledger.sqlite.SQLiteLedger`.  :class:`SynchronousRunner` runs
"threaded" calls at once on the calling thread, so ordering and retry logic
can be proved with a ``Clock`` and no real thread.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ..ledger.interfaces import IKeyStore, ISessionStore, IThreadRunner, IUsageStore, KeyInfo, KeyNameTaken
from ..ledger.records import UsageRecord
from ..ledger.session_records import SessionRecord

__all__ = ["DeferredRunner", "FlakyUsageStore", "InMemoryLedger", "SynchronousRunner"]


@implementer(IUsageStore, IKeyStore, ISessionStore)
class InMemoryLedger:
    """
    The ledger contract in lists and dicts.

    ``calls`` counts store calls by method name, so tests can prove that a
    cache did (or did not) read the store.
    """

    def __init__(self) -> None:
        self._records: list[UsageRecord] = []
        self._request_ids: set[str] = set()
        self._keys: list[KeyInfo] = []
        self._sessions: dict[str, SessionRecord] = {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        self._count("write_records")
        for record in records:
            if record.request_id not in self._request_ids:
                self._request_ids.add(record.request_id)
                self._records.append(record)

    def read_records(self, since: Optional[float] = None) -> list[UsageRecord]:
        self._count("read_records")
        return [r for r in self._records if since is None or r.created_at >= since]

    def add_key(self, info: KeyInfo) -> None:
        self._count("add_key")
        if any(k.key_id == info.key_id or k.key_hash == info.key_hash for k in self._keys):
            raise ValueError("duplicate key id or hash")
        if info.active and any(k.active and k.name == info.name for k in self._keys):
            raise KeyNameTaken(f"an active key is already named {info.name!r}")
        self._keys.append(info)

    def find_by_hash(self, key_hash: str) -> Optional[KeyInfo]:
        self._count("find_by_hash")
        for info in self._keys:
            if info.key_hash == key_hash:
                return info
        return None

    def list_keys(self) -> list[KeyInfo]:
        self._count("list_keys")
        return sorted(self._keys, key=lambda k: k.created_at)

    def revoke(self, key_id_or_name: str, when: float) -> Optional[KeyInfo]:
        self._count("revoke")
        matches = [k for k in self._keys if k.key_id == key_id_or_name]
        if not matches:
            named = [k for k in self._keys if k.name == key_id_or_name]
            # Active first, then the newest.
            named.sort(key=lambda k: (k.active, k.created_at), reverse=True)
            matches = named[:1]
        if not matches:
            return None
        info = matches[0]
        if not info.active:
            return info
        revoked = attrs.evolve(info, revoked_at=when)
        self._keys[self._keys.index(info)] = revoked
        return revoked

    def update_key(self, info: KeyInfo) -> None:
        self._count("update_key")
        for i, known in enumerate(self._keys):
            if known.key_id == info.key_id:
                self._keys[i] = attrs.evolve(
                    known, team=info.team, daily_usd=info.daily_usd, monthly_usd=info.monthly_usd,
                    requests_per_minute=info.requests_per_minute, tokens_per_minute=info.tokens_per_minute,
                )

    def spend_between(
        self, start: float, end: float, key_ids: Optional[Sequence[str]] = None, team: Optional[str] = None
    ) -> Decimal:
        self._count("spend_between")
        return sum(
            (
                r.cost_usd for r in self._records
                if start <= r.created_at < end and r.cost_usd is not None
                and (key_ids is None or r.key_id in key_ids) and (team is None or r.team == team)
            ),
            Decimal(0),
        )

    def add_session(self, record: SessionRecord) -> None:
        self._count("add_session")
        self._sessions = {h: s for h, s in self._sessions.items() if s.expires_at > record.created_at}
        self._sessions[record.id_hash] = record

    def find_session(self, id_hash: str, now: float) -> Optional[SessionRecord]:
        self._count("find_session")
        record = self._sessions.get(id_hash)
        if record is None or record.expires_at <= now:
            return None
        if not any(k.key_id == record.key_id and k.active and k.admin for k in self._keys):
            return None
        return record

    def end_session(self, id_hash: str) -> None:
        self._count("end_session")
        self._sessions.pop(id_hash, None)


@implementer(IUsageStore)
class FlakyUsageStore:
    """
    A usage store whose next ``failures`` writes raise, then delegate.

    Proves that a failed batch is kept and retried, not lost.
    """

    def __init__(self, store: IUsageStore, failures: int = 1) -> None:
        self.store = store
        self.failures = failures
        self.attempts: list[tuple[str, ...]] = []

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        self.attempts.append(tuple(r.request_id for r in records))
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk I/O error (simulated)")
        self.store.write_records(records)

    def read_records(self, since: Optional[float] = None) -> Any:
        return self.store.read_records(since)


@implementer(IThreadRunner)
class SynchronousRunner:
    """
    An :class:`IThreadRunner` that calls at once and returns a fired Deferred.
    """

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.calls = 0

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls += 1
        try:
            return succeed(f(*args, **kwargs))
        except BaseException:
            return fail()


@implementer(IThreadRunner)
class DeferredRunner:
    """
    An :class:`IThreadRunner` that holds each call until the test releases it.

    Lets a test observe the state "a write is in flight" and prove that no
    second write starts meanwhile.
    """

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Deferred[Any]]] = []

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((f, args, kwargs, d))
        return d

    def release(self) -> None:
        """Run the oldest held call and fire its Deferred with the outcome."""
        f, args, kwargs, d = self.pending.pop(0)
        try:
            result = f(*args, **kwargs)
        except BaseException:
            d.errback()
        else:
            d.callback(result)
