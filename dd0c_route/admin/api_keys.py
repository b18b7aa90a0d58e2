# Tests: tests/test_admin_api.py, tests/test_admin_security.py, tests/test_key_limits_live.py
"""
The admin API's key endpoints, ``/admin/v1/keys...``: list, create (the
key is shown once, in this answer), update team, budgets and limits, revoke.

A key's own ``daily_usd``, ``monthly_usd``, ``requests_per_minute`` and
``tokens_per_minute`` are enforced like a ``[budgets]`` table for that key
(:mod:`dd0c_route.routing.key_limits`).  A change reaches this process's
key cache at once (``refresh``), every other worker's and instance's within
a Redis round trip with ``[state]`` (a broadcast), else at its next reload
(``ledger.key_cache_ttl / 2``); a revoked admin key's
dashboard sessions end here at once and elsewhere within the session
cache's TTL.  Answers show key ids and names, never a key's hash.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks

from ..ledger.interfaces import KeyInfo, KeyNameTaken
from ..ledger.keys import generate_key, hash_key, new_key_id
from .api_call import ApiError, Call, parse_limit, parse_money, parse_text
from .sessions import SessionTable

__all__ = ["KeyEndpoints", "key_json"]


def key_json(info: KeyInfo) -> dict[str, Any]:
    """A key as the API shows it: never the key, never its hash."""
    return {
        "key_id": info.key_id, "name": info.name, "team": info.team, "admin": info.admin,
        "created_at": info.created_at, "revoked_at": info.revoked_at, "active": info.active,
        "daily_usd": None if info.daily_usd is None else format(info.daily_usd, "f"),
        "monthly_usd": None if info.monthly_usd is None else format(info.monthly_usd, "f"),
        "requests_per_minute": info.requests_per_minute, "tokens_per_minute": info.tokens_per_minute,
    }


#: The fields PATCH may change, each with its check.
_SETTABLE: dict[str, Callable[[Any, str], Any]] = {
    "daily_usd": parse_money, "monthly_usd": parse_money,
    "requests_per_minute": parse_limit, "tokens_per_minute": parse_limit,
}


class KeyEndpoints:
    """The key endpoints (each store call off the reactor through ``run``)."""

    def __init__(
        self, *, store: Any, run: Callable[..., Deferred[Any]], keys: Any, clock: Any, sessions: SessionTable,
        announcer: Any = None,
    ) -> None:
        self.store, self.run, self.keys, self.clock, self.sessions = store, run, keys, clock, sessions
        #: With ``[state]``: tells every proxy at once (``state/revocations.py``).
        self.announcer = announcer

    @inlineCallbacks
    def list_keys(self, call: Call) -> Any:
        infos = yield self.run(self.store.list_keys)
        return {"data": [key_json(info) for info in infos]}

    @inlineCallbacks
    def create_key(self, call: Call) -> Any:
        body = call.json()
        name = parse_text(body, "name", required=True)
        assert name is not None
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise ApiError(400, "admin must be true or false", "invalid_value", "admin")
        limits = {field: check(body.get(field), field) for field, check in _SETTABLE.items()}
        key = generate_key()
        info = KeyInfo(
            key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=self.clock.seconds(),
            team=parse_text(body, "team"), admin=admin, **limits,
        )
        try:
            yield self.run(self.store.add_key, info)
        except KeyNameTaken:
            raise ApiError(409, f"An active key is already named {name!r}", "name_taken", "name") from None
        return 201, {**key_json(info), "key": key}

    @inlineCallbacks
    def _find(self, ident: str) -> Any:
        infos = yield self.run(self.store.list_keys)
        for info in infos:
            if info.key_id == ident:
                return info
        named = [info for info in infos if info.name == ident]
        active = [info for info in named if info.active]
        if active or named:
            return (active or named)[-1]
        raise ApiError(404, f"No key with id or name {ident!r}", "key_not_found", "key")

    @inlineCallbacks
    def update_key(self, call: Call) -> Any:
        body = call.json()
        unknown = set(body) - {"team", *_SETTABLE}
        if unknown:
            raise ApiError(400, f"Unknown field {sorted(unknown)[0]!r} (team, {', '.join(_SETTABLE)})", "invalid_value")
        changes: dict[str, Any] = {name: check(body[name], name) for name, check in _SETTABLE.items() if name in body}
        if "team" in body:
            changes["team"] = parse_text(body, "team")
        info = yield self._find(call.match["key"])
        info = attrs.evolve(info, **changes)
        yield self.run(self.store.update_key, info)
        yield self.keys.refresh()
        if self.announcer is not None:
            self.announcer.changed(info.key_id)
        return key_json(info)

    @inlineCallbacks
    def revoke_key(self, call: Call) -> Any:
        info = yield self._find(call.match["key"])
        revoked = yield self.run(self.store.revoke, info.key_id, self.clock.seconds())
        # The cache forgets it now rather than after its TTL.
        yield self.keys.refresh()
        if self.announcer is not None:
            self.announcer.revoked(info.key_id)
        self.sessions.forget_key(info.key_id)
        return key_json(revoked)
