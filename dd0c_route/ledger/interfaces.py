# Tests: tests/test_ledger.py
"""
Seams of the ledger: where usage records and proxy keys are kept.

The hot path never talks to these directly: it hands records to a writer
queue and checks keys through an in-memory cache; only the background
threads call the stores.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from .records import UsageRecord

__all__ = [
    "IKeyStore",
    "ISessionStore",
    "IThreadRunner",
    "IUsageStore",
    "KeyInfo",
    "KeyNameTaken",
    "LedgerSchemaError",
    "LedgerUnavailable",
]


@attrs.frozen
class KeyInfo:
    """
    A proxy key as stored: its id, name, team and state; never the key.
    """

    key_id: str
    name: str
    key_hash: str
    created_at: float
    team: Optional[str] = None
    revoked_at: Optional[float] = None
    #: May call the admin listener when ``[admin] require_key`` is set.
    admin: bool = False
    #: The key's own limits, set from the admin API: USD per UTC day /
    #: month, requests and tokens per minute.  Enforced like a ``[budgets]``
    #: table of scope ``key:ID`` (:mod:`dd0c_route.routing.key_limits`).
    daily_usd: Optional[Decimal] = None
    monthly_usd: Optional[Decimal] = None
    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyNameTaken(ValueError):
    """
    An active key already has this name.

    Names must be unique among active keys because operators revoke keys by
    name; a revoked key's name may be reused.
    """


class LedgerSchemaError(Exception):
    """The database's schema is not the one this code writes (newer, or not migrated)."""


class LedgerUnavailable(Exception):
    """
    The store cannot be reached now (a network store that is down or slow).

    Callers treat it as temporary: the writer keeps or spools the records,
    the key cache keeps serving the keys it knows, and an unknown key gets a
    503 instead of a 401 because the store could not say whether it exists.
    """


class IUsageStore(Interface):
    """
    Durable storage of usage records (blocking: call it off the reactor).
    """

    def write_records(records: Sequence[UsageRecord]) -> None:
        """
        Persist the records atomically (all or none).

        Idempotent by ``request_id``: a record whose request id is already
        stored is skipped, so a batch retried after an ambiguous failure is
        never counted twice.
        """

    def read_records(since: Optional[float] = None) -> Iterable[UsageRecord]:
        """Stored records (``created_at >= since`` if given), oldest first."""


class IKeyStore(Interface):
    """
    Durable storage of proxy keys, by SHA-256 hash (blocking).
    """

    def add_key(info: KeyInfo) -> None:
        """Store a new key; raise :class:`KeyNameTaken` if an active key has its name."""

    def find_by_hash(key_hash: str) -> Optional[KeyInfo]:
        """The key with this hash, revoked or not, or None."""

    def list_keys() -> Sequence[KeyInfo]:
        """All keys, oldest first."""

    def revoke(key_id_or_name: str, when: float) -> Optional[KeyInfo]:
        """
        Mark the key revoked; None when there is no such key.

        An id wins over a name; a name means the active key of that name (or,
        when none is active, the newest revoked one, returned unchanged).
        Revoking a revoked key keeps its first ``revoked_at``.
        """


class ISessionStore(Interface):
    """
    Dashboard sessions, by SHA-256 of the session id (blocking), shared by
    every process on the ledger (:mod:`dd0c_route.ledger.session_records`).
    """

    def add_session(record: Any) -> None:
        """Store a new :class:`SessionRecord`; sessions expired by its ``created_at`` may be dropped."""

    def find_session(id_hash: str, now: float) -> Any:
        """
        The session with this hash while it is live at ``now`` (not expired,
        not ended, its key an active admin key), else None.
        """

    def end_session(id_hash: str) -> None:
        """End the session (a logout); ending an unknown one does nothing."""


class IThreadRunner(Interface):
    """
    Runs blocking calls off the reactor thread, one at a time.

    The writer owns its runner's lifetime (``start``/``stop``); tests use a
    synchronous double so no thread is needed to prove ordering or retries.
    """

    def start() -> None:
        """Start the worker thread(s)."""

    def stop() -> None:
        """Stop the worker thread(s) after the calls already queued."""

    def run(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Call ``f`` in the worker; the Deferred fires on the reactor thread."""
