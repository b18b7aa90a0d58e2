# Tests: tests/test_cli.py
"""
``dd0c-route``: the operator's commands for keys, usage and the config.

    dd0c-route [--config FILE] keys create --name NAME [--team TEAM]
    dd0c-route [--config FILE] keys list
    dd0c-route [--config FILE] keys revoke KEY_ID_OR_NAME
    dd0c-route [--config FILE] usage [--json] [--since ISO]
    dd0c-route [--config FILE] check

``usage`` adds savings per key and per model when requests were routed
(what the requested model would have cost minus what was paid) or matched
a shadow rule (what the rule's model would have saved).

The CLI is its own process and opens the ledger file directly: SQLite's WAL
mode lets it read and write while a proxy runs, and running proxies notice a
revocation through their key cache within its TTL.

A new key is printed once, alone on the last line, so scripts can take it
with ``tail -n 1``; only its hash is stored.  Nothing else ever prints a key.

Exit codes: 0 success, 1 no such key, 2 usage or configuration error (the
message, on stderr, names the option or config key at fault).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

_MAX_NAME = 64


class _Fail(Exception):
    """Stop the command: print the message on stderr and exit with the code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dd0c-route",
        description="Manage dd0c-route proxy keys, read usage, and check the config.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: embedded defaults)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="create, list and revoke proxy keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="unique among active keys")
    create.add_argument("--team", help="team the key's usage is reported under")
    key_commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key", metavar="KEY_ID_OR_NAME")

    usage = commands.add_parser("usage", help="show usage records and totals")
    usage.add_argument("--json", action="store_true", help="one JSON object per record per line")
    usage.add_argument("--since", metavar="ISO", help="only records at or after this UTC time")

    commands.add_parser("check", help="validate the config and print OK")
    return parser


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    now: Callable[[], float] = time.time,
) -> int:
    """
    Run one command; returns the exit code (the console script exits with it).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        # argparse has printed help (code 0) or the error naming the option (2).
        code = exit.code
        return code if isinstance(code, int) else EXIT_OK if code is None else EXIT_USAGE
    try:
        return _run(args, os.environ if environ is None else environ, now)
    except _Fail as failure:
        print(f"dd0c-route: {failure}", file=sys.stderr)
        return failure.code
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK


def _run(args: argparse.Namespace, environ: Mapping[str, str], now: Callable[[], float]) -> int:
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config, environ)
    except ConfigError as error:
        raise _Fail(str(error)) from None
    if args.command == "check":
        print("OK")
        return EXIT_OK

    store = _open_ledger(config.ledger.path)
    try:
        if args.command == "keys":
            ttl = getattr(config.ledger, "key_cache_ttl", 5.0)
            handler = {"create": _keys_create, "list": _keys_list, "revoke": _keys_revoke}
            code = handler[args.keys_command](store, args, now, ttl)
            if args.keys_command == "revoke" and config.state is not None:
                _broadcast_revocation(config.state, store, args.key)
            return code
        return _usage(store, args)
    finally:
        store.close()


def _open_ledger(path: str) -> Any:
    import sqlite3

    from .ledger.sqlite import LedgerSchemaError, SQLiteLedger

    try:
        return SQLiteLedger(path)
    except LedgerSchemaError as error:
        raise _Fail(f"config key 'ledger.path': {error}") from None
    except sqlite3.Error as error:
        raise _Fail(f"config key 'ledger.path': cannot open {path!r}: {error}") from None


# -- keys ----------------------------------------------------------------


def _check_label(option: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_NAME or not value.isprintable():
        raise _Fail(f"{option}: must be 1 to {_MAX_NAME} printable characters")
    return value


def _keys_create(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    from .ledger.interfaces import KeyInfo, KeyNameTaken
    from .ledger.keys import generate_key, hash_key, new_key_id

    name = _check_label("--name", args.name)
    team = None if args.team is None else _check_label("--team", args.team)
    key = generate_key()
    info = KeyInfo(
        key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=now(), team=team
    )
    try:
        store.add_key(info)
    except KeyNameTaken:
        raise _Fail(
            f"--name: an active key is already named {name!r}; revoke it or choose another name"
        ) from None
    print(f"Created key {info.key_id} named {name!r}" + (f" for team {team!r}" if team else "") + ".")
    print("Copy it now: only its hash is stored, it cannot be shown again.")
    print(key)
    return EXIT_OK


def _keys_list(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    keys = store.list_keys()
    if not keys:
        print("No keys.")
        return EXIT_OK
    rows = [
        [k.key_id, k.name, k.team or "-", _iso(k.created_at), "-" if k.active else _iso(k.revoked_at)]
        for k in keys
    ]
    _table(["id", "name", "team", "created", "revoked"], rows)
    return EXIT_OK


def _keys_revoke(store: Any, args: argparse.Namespace, now: Callable[[], float], ttl: float) -> int:
    when = now()
    info = store.revoke(args.key, when)
    if info is None:
        raise _Fail(f"no key with id or name {args.key!r}", EXIT_NOT_FOUND)
    if info.revoked_at != when:
        print(f"Key {info.key_id} ({info.name!r}) was already revoked at {_iso(info.revoked_at)}.")
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


# -- usage ---------------------------------------------------------------


def _parse_since(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Fail(
            f"--since: {text!r} is not an ISO 8601 date or time "
            "(for example 2026-03-01 or 2026-03-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _usage(store: Any, args: argparse.Namespace) -> int:
    from .ledger.records import record_to_json

    since = None if args.since is None else _parse_since(args.since)
    records = store.read_records(since)
    if args.json:
        for record in records:
            print(json.dumps(record_to_json(record), separators=(",", ":")))
        return EXIT_OK
    if not records:
        print("No usage records.")
        return EXIT_OK
    _table(
        ["time", "request_id", "key_id", "model", "status", "prompt", "completion", "cost_usd", "flags", "latency_ms"],
        [
            [
                _iso(r.created_at),
                r.request_id,
                r.key_id or "-",
                r.model or r.model_requested or "-",
                str(r.status),
                _count(r.prompt_tokens),
                _count(r.completion_tokens),
                _money(r.cost_usd),
                _flags(r),
                f"{r.latency_ms:.0f}",
            ]
            for r in records
        ],
    )
    _summaries(records)
    return EXIT_OK


def _summaries(records: Sequence[Any]) -> None:
    from .ledger.summary import by_key, by_model, summarize

    for heading, column, group in (("By model:", "model", by_model), ("By key:", "key_id", by_key)):
        print()
        print(heading)
        _totals_table(column, summarize(records, group))
    _savings(records)
    print()
    (total,) = summarize(records)
    unpriced = f" ({total.unpriced} without a price)" if total.unpriced else ""
    print(
        f"Total: {total.requests} requests, {total.prompt_tokens} prompt + "
        f"{total.completion_tokens} completion tokens, ${_money(total.cost_usd)}{unpriced}"
    )


def _savings(records: Sequence[Any]) -> None:
    """Savings per key and per model, when any record was routed or shadowed."""
    from .ledger.summary import by_key, by_route, savings

    if not any(
        r.shadow_model is not None or (r.model and r.model_requested and r.model != r.model_requested)
        for r in records
    ):
        return
    for heading, column, group in (
        ("Savings by key:", "key_id", by_key),
        ("Savings by model (requested->served):", "model", by_route),
    ):
        print()
        print(heading)
        _table(
            [column, "requests", "routed", "cost_usd", "requested_usd", "saved_usd", "shadowed", "shadow_saved_usd"],
            [
                [
                    t.group, str(t.requests), str(t.routed), _money(t.cost_usd),
                    _money(t.cost_requested_usd), _money(t.saved_usd), str(t.shadowed),
                    _money(t.shadow_saved_usd),
                ]
                for t in savings(records, group)
            ],
        )
    (total,) = savings(records)
    print()
    print(
        f"Routing saved ${_money(total.saved_usd)} on {total.routed} routed requests; "
        f"shadow rules would have saved ${_money(total.shadow_saved_usd)} on {total.shadowed} more."
    )


def _totals_table(title: str, totals: Iterable[Any]) -> None:
    _table(
        [title, "requests", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced"],
        [
            [t.group, str(t.requests), str(t.prompt_tokens), str(t.completion_tokens), _money(t.cost_usd), str(t.unpriced)]
            for t in totals
        ],
    )


# -- formatting (never raises on odd data) -------------------------------


def _iso(when: Optional[float]) -> str:
    if when is None:
        return "-"
    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return repr(when)


def _count(value: Optional[int]) -> str:
    return "-" if value is None else str(value)


def _money(value: Optional[Decimal]) -> str:
    return "-" if value is None else format(value, "f")


def _flags(record: Any) -> str:
    """S: streamed; D: client disconnected; L: some tokens counted locally."""
    flags = ("S" if record.stream else "") + ("D" if record.disconnected else "")
    flags += "L" if record.tokens_counted_locally else ""
    return flags or "-"


def _cell(value: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cells = [list(headers)] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
