"""
Tests for dd0c_route.ledger.keycache: key checks from memory, revocation
within the TTL, and bounded work for unknown keys.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.ledger.interfaces import KeyInfo, LedgerUnavailable
from dd0c_route.ledger.keycache import KeyCache
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.testing.doubles import DeferredRunner, InMemoryLedger, SynchronousRunner


def add_key(store: InMemoryLedger, name: str, when: float = 0.0) -> tuple[str, KeyInfo]:
    """Store a fresh key; return it and its stored form."""
    key = generate_key()
    info = KeyInfo(key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=when)
    store.add_key(info)
    return key, info


class KeyCacheTests(SynchronousTestCase):
    """The cache on a Clock with a synchronous 'thread'."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = InMemoryLedger()
        self.runner = SynchronousRunner()
        self.key, self.info = add_key(self.store, "ci")

    def make_cache(self, runner: Any = None, start: bool = True, **kw: Any) -> KeyCache:
        cache = KeyCache(self.store, self.clock, (runner or self.runner).run, **kw)
        if start:
            cache.startService()
            self.addCleanup(cache.stopService)
        return cache

    def reads(self) -> int:
        return self.store.calls.get("find_by_hash", 0) + self.store.calls.get("list_keys", 0)

    def test_start_loads_all_keys(self) -> None:
        """Starting loads every key in one query; lookups then hit without a read."""
        cache = self.make_cache()
        assert self.store.calls == {"add_key": 1, "list_keys": 1}
        for _ in range(100):
            assert cache.lookup_cached(self.key) == (True, self.info)
        assert self.reads() == 1

    def test_miss_then_fetch_then_hit(self) -> None:
        """An uncached key is a miss; fetch reads it once and later lookups hit."""
        cache = self.make_cache(start=False)
        assert cache.lookup_cached(self.key) == (False, None)
        assert self.successResultOf(cache.fetch(self.key)) == self.info
        assert cache.lookup_cached(self.key) == (True, self.info)
        assert self.store.calls["find_by_hash"] == 1

    def test_lookup_returns_value_or_deferred(self) -> None:
        """lookup gives the cached answer directly, or a Deferred on a miss."""
        cache = self.make_cache(start=False)
        pending = cache.lookup(self.key)
        assert isinstance(pending, Deferred)
        assert self.successResultOf(pending) == self.info
        assert cache.lookup(self.key) == self.info

    def test_revoked_key_refused_within_ttl(self) -> None:
        """A key revoked in the store is refused after at most ttl seconds, with no request-time read."""
        cache = self.make_cache(ttl=5.0)
        reads = self.reads()
        self.store.revoke(self.info.key_id, self.clock.seconds())
        refused_at = None
        for tick in range(1, 60):
            self.clock.advance(0.1)
            if cache.lookup_cached(self.key) == (True, None):
                refused_at = tick / 10
                break
            assert cache.lookup_cached(self.key) == (True, self.info)
        assert refused_at is not None and refused_at <= 5.0
        # Only the background reloads read the store.
        assert self.store.calls.get("find_by_hash", 0) == 0
        assert self.reads() - reads == self.store.calls["list_keys"] - 1

    def test_stalled_reload_expires_entries(self) -> None:
        """If reloads stop answering, a cached key stops being trusted after ttl."""
        runner = DeferredRunner()
        cache = self.make_cache(runner=runner, start=False, ttl=5.0)
        fetched = cache.fetch(self.key)
        runner.release()
        assert self.successResultOf(fetched) == self.info
        cache.startService()
        self.addCleanup(cache.stopService)
        # The reload started at start is never released.
        self.clock.advance(4.9)
        assert cache.lookup_cached(self.key) == (True, self.info)
        self.clock.advance(0.1)
        assert cache.lookup_cached(self.key) == (False, None)

    def test_stale_read_does_not_undo_newer(self) -> None:
        """A read that started before a newer reload cannot overwrite the newer answer."""
        runner = DeferredRunner()
        cache = self.make_cache(runner=runner, start=False)
        slow_fetch = cache.fetch(self.key)
        self.clock.advance(1)
        self.store.revoke(self.info.key_id, 1.0)
        reload = cache.refresh()
        runner.pending.append(runner.pending.pop(0))  # the reload finishes first
        runner.release()
        self.successResultOf(reload)
        assert cache.lookup_cached(self.key) == (True, None)
        self.store._keys[0] = self.info  # the slow read saw the key before revocation
        runner.release()
        self.successResultOf(slow_fetch)
        assert cache.lookup_cached(self.key) == (True, None)

    def test_unknown_key_cached_briefly(self) -> None:
        """An unknown key is refused from memory for negative_ttl, then read again."""
        cache = self.make_cache(negative_ttl=1.0)
        stranger = generate_key()
        assert self.successResultOf(cache.fetch(stranger)) is None
        assert cache.lookup_cached(stranger) == (True, None)
        self.clock.advance(1.0)
        assert cache.lookup_cached(stranger) == (False, None)

    def test_new_key_found_after_negative_answer(self) -> None:
        """A key created after being refused works once its negative entry expires or a reload sees it."""
        cache = self.make_cache()
        key = generate_key()
        assert self.successResultOf(cache.fetch(key)) is None
        info = KeyInfo(key_id=new_key_id(), name="late", key_hash=hash_key(key), created_at=0.0)
        self.store.add_key(info)
        self.clock.advance(2.5)
        assert cache.lookup_cached(key) == (True, info)

    def test_negative_cache_is_bounded(self) -> None:
        """A flood of random keys keeps at most max_negative entries and never evicts real keys."""
        cache = self.make_cache(max_negative=100)
        for _ in range(1000):
            self.successResultOf(cache.fetch(generate_key()))
        assert cache.size == (1, 100)
        assert cache.lookup_cached(self.key) == (True, self.info)

    def test_concurrent_misses_share_one_read(self) -> None:
        """Many lookups of one uncached key cause a single store read."""
        runner = DeferredRunner()
        cache = self.make_cache(runner=runner, start=False)
        waiting = [cache.fetch(self.key) for _ in range(10)]
        assert len(runner.pending) == 1
        runner.release()
        assert [self.successResultOf(d) for d in waiting] == [self.info] * 10

    def test_reads_are_capped(self) -> None:
        """Past max_fetches concurrent reads, unknown keys are refused without a read."""
        runner = DeferredRunner()
        cache = self.make_cache(runner=runner, start=False, max_fetches=3)
        for _ in range(3):
            cache.fetch(generate_key())
        assert self.successResultOf(cache.fetch(generate_key())) is None
        assert len(runner.pending) == 3 and cache.shed == 1
        while runner.pending:
            runner.release()

    def test_malformed_keys_never_reach_the_store(self) -> None:
        """Keys not shaped like ours are refused without hashing into the cache or reading."""
        cache = self.make_cache(start=False)
        for junk in ["", "sk-test-not-ours", "dd0c-short", self.key + "x", "dd0c-" + "!" * 43]:
            assert cache.lookup_cached(junk) == (True, None)
            assert self.successResultOf(cache.fetch(junk)) is None
        assert self.reads() == 0 and cache.size == (0, 0)

    def test_store_failure_fails_fetch(self) -> None:
        """A failing read fails every waiter's Deferred and caches nothing."""

        class Broken(InMemoryLedger):
            def find_by_hash(self, key_hash: str) -> Optional[KeyInfo]:
                raise OSError("database is locked (simulated)")

        runner = DeferredRunner()
        cache = KeyCache(Broken(), self.clock, runner.run)
        first, second = cache.fetch(self.key), cache.fetch(self.key)
        runner.release()
        self.failureResultOf(first, OSError)
        self.failureResultOf(second, OSError)
        assert cache.lookup_cached(self.key) == (False, None)

    def test_store_down_keeps_serving_known_keys(self) -> None:
        """With the store down, a known key (even past its ttl) keeps its last state; an unknown one fails."""
        store = self.store
        revoked_key, _ = add_key(store, "gone")
        store.revoke("gone", 1.0)
        cache = self.make_cache(start=False, ttl=5.0)
        self.successResultOf(cache.refresh())

        def down(*args: Any) -> Any:
            raise LedgerUnavailable("down (simulated)")

        store.find_by_hash = down  # type: ignore[method-assign]
        self.clock.advance(60)
        assert cache.lookup_cached(self.key) == (False, None)
        assert self.successResultOf(cache.fetch(self.key)) == self.info
        assert self.successResultOf(cache.fetch(revoked_key)) is None
        self.failureResultOf(cache.fetch(generate_key()), LedgerUnavailable)

    def test_reload_failure_is_logged_not_raised(self) -> None:
        """A failing reload is logged and the reload loop keeps running."""

        class Broken(InMemoryLedger):
            def list_keys(self) -> list[KeyInfo]:
                raise OSError("database is locked (simulated)")

        cache = KeyCache(Broken(), self.clock, self.runner.run)
        cache.startService()
        self.clock.advance(2.5)
        assert len(self.flushLoggedErrors(OSError)) == 2
        cache.stopService()
        assert self.clock.getDelayedCalls() == []

    def test_stop_leaves_no_timer(self) -> None:
        """Stopping the service cancels the reload timer."""
        cache = self.make_cache()
        cache.stopService()
        assert self.clock.getDelayedCalls() == []

    def test_rejects_bad_ttl(self) -> None:
        """A ttl that is not positive is refused with a message naming it."""
        with self.assertRaises(ValueError) as caught:
            KeyCache(self.store, self.clock, self.runner.run, ttl=0)
        assert "ttl" in str(caught.exception)
