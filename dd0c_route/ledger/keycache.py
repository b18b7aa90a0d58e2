# Tests: tests/test_keycache.py
"""
Proxy-key checks without a database read per request.

The cache keeps every stored key (active or revoked) by hash, reloaded in
one ``list_keys`` query every ``ttl / 2`` seconds off the reactor thread.
An entry is trusted only while the read that produced it started less than
``ttl`` seconds ago, so a key revoked in the store (say by the CLI, or
another instance on the same PostgreSQL) stops working within ``ttl`` even
if the reload stalls: stale entries then become misses, and a miss reads
the store.  If that read fails (the database is down), a key we knew keeps
its last known state: the proxy keeps serving its known keys through an
outage, and nobody can revoke a key meanwhile anyway.

Keys nobody stored get a separate, small negative cache: an LRU of at most
``max_negative`` hashes, each trusted for ``negative_ttl`` seconds.  Known
keys and unknown hashes are kept apart so that a flood of random keys can
neither grow memory (the LRU is capped; known keys are bounded by the key
table, which only operators grow) nor evict real keys.  Concurrent misses
for one hash share one read, and at most ``max_fetches`` reads run at once:
past that, unknown keys are refused without a read (a key created in the
last few seconds may be refused during such a flood; a stored key never is
once it is cached).

Why a dict lookup is a safe comparison: we never compare the presented
secret itself.  It is hashed with SHA-256 and the digest looked up; timing
differences of that lookup can reveal at most something about digests,
and knowing a digest does not help to find a key with it (preimage
resistance over a 256-bit key).  Malformed keys are refused before any
hashing, caching or store access.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .interfaces import IKeyStore, KeyInfo
from .keys import PROXY_KEY_PATTERN, hash_key

__all__ = ["KeyCache"]

_KEY_LENGTH = 48


def _usable(info: Optional[KeyInfo]) -> Optional[KeyInfo]:
    return info if info is not None and info.active else None


class KeyCache(Service):
    """
    An in-memory front for an :class:`IKeyStore`; lookups answer "which active key
    is this?" with a :class:`KeyInfo`, or None for "refuse".

    ``run_in_thread(f, *args)`` must run ``f`` off the reactor thread and
    return a Deferred that fires on it (for example
    ``partial(deferToThreadPool, reactor, reactor.getThreadPool())``).
    As a service it runs the background reload while started.
    """

    _log = Logger()

    def __init__(
        self,
        store: IKeyStore,
        reactor: IReactorTime,
        run_in_thread: Callable[..., Deferred[Any]],
        ttl: float = 5.0,
        *,
        negative_ttl: float = 1.0,
        max_negative: int = 10_000,
        max_fetches: int = 64,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        self.setName("key-cache")
        self._store = store
        self._reactor = reactor
        self._run = run_in_thread
        self._ttl = ttl
        self._negative_ttl = min(negative_ttl, ttl)
        self._max_negative = max_negative
        self._max_fetches = max_fetches
        self._known: dict[str, tuple[KeyInfo, float]] = {}
        self._absent: OrderedDict[str, float] = OrderedDict()
        self._fetching: dict[str, list[Deferred[Optional[KeyInfo]]]] = {}
        self._loop: Optional[LoopingCall] = None
        #: Misses refused without a read because ``max_fetches`` were running.
        self.shed = 0
        #: Lookups answered from memory, and those that had to read the store.
        self.hits = 0
        self.misses = 0
        #: The first full load has finished (readiness waits for it).
        self.loaded = False

    # -- the hot path ----------------------------------------------------

    def lookup_cached(self, presented_key: str) -> tuple[bool, Optional[KeyInfo]]:
        """
        ``(True, info)`` when the cache can answer now (info None: refuse);
        ``(False, None)`` when the caller must wait for :meth:`fetch`.
        """
        if len(presented_key) != _KEY_LENGTH or not PROXY_KEY_PATTERN.fullmatch(presented_key):
            return True, None
        key_hash = hash_key(presented_key)
        now = self._reactor.seconds()
        known = self._known.get(key_hash)
        if known is not None:
            info, stamp = known
            if now - stamp < self._ttl:
                self.hits += 1
                return True, _usable(info)
            self.misses += 1
            return False, None
        stamp_absent = self._absent.get(key_hash)
        if stamp_absent is not None and now - stamp_absent < self._negative_ttl:
            self._absent.move_to_end(key_hash)
            self.hits += 1
            return True, None
        self.misses += 1
        return False, None

    def lookup(self, presented_key: str) -> Union[Optional[KeyInfo], Deferred[Optional[KeyInfo]]]:
        """The cached answer if there is one, else a Deferred from :meth:`fetch`."""
        hit, info = self.lookup_cached(presented_key)
        if hit:
            return info
        return self.fetch(presented_key)

    def fetch(self, presented_key: str) -> Deferred[Optional[KeyInfo]]:
        """
        Read the key from the store (off the reactor), cache and return it.

        Fires with the active :class:`KeyInfo` or None; fails if the store fails.
        """
        if len(presented_key) != _KEY_LENGTH or not PROXY_KEY_PATTERN.fullmatch(presented_key):
            return succeed(None)
        key_hash = hash_key(presented_key)
        waiting = self._fetching.get(key_hash)
        if waiting is not None:
            d: Deferred[Optional[KeyInfo]] = Deferred()
            waiting.append(d)
            return d
        if len(self._fetching) >= self._max_fetches:
            self.shed += 1
            return succeed(None)
        self._fetching[key_hash] = []
        stamp = self._reactor.seconds()

        def found(info: Optional[KeyInfo]) -> Optional[KeyInfo]:
            self._remember(key_hash, info, stamp)
            answer = _usable(info)
            for waiter in self._fetching.pop(key_hash):
                waiter.callback(answer)
            return answer

        def failed(failure: Failure) -> Union[Optional[KeyInfo], Failure]:
            waiters = self._fetching.pop(key_hash)
            known = self._known.get(key_hash)
            if known is not None:
                # The store is down or failing: a key we knew keeps its
                # last known state (revoking needs the store too).
                answer = _usable(known[0])
                for waiter in waiters:
                    waiter.callback(answer)
                return answer
            for waiter in waiters:
                waiter.errback(failure)
            return failure

        return self._run(self._store.find_by_hash, key_hash).addCallbacks(found, failed)

    def _remember(self, key_hash: str, info: Optional[KeyInfo], stamp: float) -> None:
        known = self._known.get(key_hash)
        if known is not None and known[1] > stamp:
            return
        if info is not None:
            self._known[key_hash] = (info, stamp)
            self._absent.pop(key_hash, None)
            return
        self._known.pop(key_hash, None)
        self._absent[key_hash] = stamp
        self._absent.move_to_end(key_hash)
        while len(self._absent) > self._max_negative:
            self._absent.popitem(last=False)

    def evict(self, key_id: str) -> int:
        """
        Stop ``key_id`` now (a revocation broadcast), not at the next
        reload.  Its entry is replaced by a revoked copy stamped now, so a
        reload or read that began before the revocation cannot bring the
        active key back; the first reload after it confirms from the store.
        Returns how many entries it hit.
        """
        now = self._reactor.seconds()
        hit = 0
        for key_hash, (info, _stamp) in list(self._known.items()):
            if info.key_id == key_id:
                self._known[key_hash] = (attrs.evolve(info, revoked_at=info.revoked_at or now), now)
                hit += 1
        return hit

    # -- background reload -----------------------------------------------

    def refresh(self) -> Deferred[None]:
        """
        Reload every key in one query; never fails (errors are logged and
        the entries age out after ``ttl``).
        """
        stamp = self._reactor.seconds()

        def loaded(keys: list[KeyInfo]) -> None:
            known: dict[str, tuple[KeyInfo, float]] = {k.key_hash: (k, stamp) for k in keys}
            for key_hash, entry in self._known.items():
                if entry[1] > stamp:
                    known[key_hash] = entry
            self._known = known
            for key_hash in known:
                self._absent.pop(key_hash, None)
            self.loaded = True

        def failed(failure: Failure) -> None:
            self._log.failure("Reloading proxy keys failed; cached keys expire in {ttl}s", failure, ttl=self._ttl)

        return self._run(self._store.list_keys).addCallbacks(loaded, failed)

    @property
    def size(self) -> tuple[int, int]:
        """(known keys, cached unknown hashes)."""
        return len(self._known), len(self._absent)

    def startService(self) -> None:
        """Load all keys now and every ``ttl / 2`` seconds."""
        Service.startService(self)
        loop = self._loop = LoopingCall(self.refresh)
        loop.clock = self._reactor
        loop.start(self._ttl / 2, now=True)

    def stopService(self) -> None:
        """Stop the reload timer."""
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
