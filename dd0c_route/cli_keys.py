# Tests: tests/test_cli.py, tests/test_cli_postgres.py
"""
``dd0c-route keys create|list|revoke``: proxy keys in the ledger.

A new key is printed once, alone on the last line, so scripts can take it
with ``tail -n 1``; only its hash is stored.  A revocation is also
broadcast through ``[state]`` Redis when configured, so running proxies
drop the key at once instead of at their next key reload.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from .cli_exit import EXIT_NOT_FOUND, EXIT_OK, Fail
from .cli_format import iso, table

__all__ = ["keys"]

_MAX_NAME = 64


def keys(store: Any, args: argparse.Namespace, now: Callable[[], float], config: Any) -> int:
    """Run ``keys <args.keys_command>`` on the open store."""
    ttl = getattr(config.ledger, "key_cache_ttl", 5.0)
    handler = {"create": _keys_create, "list": _keys_list, "revoke": _keys_revoke}
    code = handler[args.keys_command](store, args, now, ttl)
    if args.keys_command == "revoke" and config.state is not None:
        _broadcast_revocation(config.state, store, args.key)
    return code


def _check_label(option: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_NAME or not value.isprintable():
        raise Fail(f"{option}: must be 1 to {_MAX_NAME} printable characters")
    return value


def _keys_create(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    from .ledger.interfaces import KeyInfo, KeyNameTaken
    from .ledger.keys import generate_key, hash_key, new_key_id

    name = _check_label("--name", args.name)
    team = None if args.team is None else _check_label("--team", args.team)
    key = generate_key()
    info = KeyInfo(
        key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=now(), team=team, admin=args.admin
    )
    try:
        store.add_key(info)
    except KeyNameTaken:
        raise Fail(
            f"--name: an active key is already named {name!r}; revoke it or choose another name"
        ) from None
    kind = "admin key" if info.admin else "key"
    print(f"Created {kind} {info.key_id} named {name!r}" + (f" for team {team!r}" if team else "") + ".")
    print("Copy it now: only its hash is stored, it cannot be shown again.")
    print(key)
    return EXIT_OK


def _keys_list(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    keys = store.list_keys()
    if not keys:
        print("No keys.")
        return EXIT_OK
    rows = [
        [k.key_id, k.name, k.team or "-", iso(k.created_at), "-" if k.active else iso(k.revoked_at), "yes" if k.admin else "-"]
        for k in keys
    ]
    table(["id", "name", "team", "created", "revoked", "admin"], rows)
    return EXIT_OK


def _keys_revoke(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    when = now()
    info = store.revoke(args.key, when)
    if info is None:
        raise Fail(f"no key with id or name {args.key!r}", EXIT_NOT_FOUND)
    if info.revoked_at != when:
        print(f"Key {info.key_id} ({info.name!r}) was already revoked at {iso(info.revoked_at)}.")
    else:
        print(
            f"Revoked key {info.key_id} ({info.name!r}); running proxies refuse it "
            f"within {ttl:g} seconds."
        )
    return EXIT_OK


def _broadcast_revocation(state: Any, store: Any, key: str) -> None:
    """Tell every proxy subscribed to ``[state]`` Redis to drop the key now."""
    from .state.revocations import publish_revocation

    for info in store.list_keys():
        if not info.active and key in (info.key_id, info.name):
            try:
                heard = publish_revocation(state, info.key_id)
            except OSError as error:
                print(f"Could not reach {state.display_url} ({error}): proxies refuse the key at their next key reload.")
                return
            print(f"Broadcast to {heard} running prox{'y' if heard == 1 else 'ies'} through {state.display_url}.")
