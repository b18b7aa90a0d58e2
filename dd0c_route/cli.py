# Tests: tests/test_cli.py
"""
``dd0c-route``: the operator's commands for keys, usage and the config.

    dd0c-route [--config FILE] serve [--listen STRPORTS]
    dd0c-route [--config FILE] keys create --name NAME [--team TEAM] [--admin]
    dd0c-route [--config FILE] keys list
    dd0c-route [--config FILE] keys revoke KEY_ID_OR_NAME
    dd0c-route [--config FILE] usage [--json] [--since ISO] [--group-by day|key|team|model[,...]] [--limit N]
    dd0c-route [--config FILE] check
    dd0c-route [--config FILE] prices [MODEL...]
    dd0c-route [--config FILE] migrate
    dd0c-route [--config FILE] migrate-ledger --from dd0c-route.sqlite3

Every command works on either store: SQLite (``ledger.path``) or
PostgreSQL (``ledger.url``), with the same output.  Opening the store
migrates its schema unless ``ledger.auto_migrate = false``; then only
``migrate`` does.  ``usage --group-by`` prints totals per group (from the
daily rollup on PostgreSQL, so a month of millions of records answers at
once); with ``--json`` one object per group per line.  ``migrate-ledger``
copies a SQLite ledger's keys and records into the configured PostgreSQL
(idempotent: run it again and nothing is copied twice).

``usage`` adds savings per key and per model when requests were routed
(what the requested model would have cost minus what was paid) or matched
a shadow rule (what the rule's model would have saved), and names the models
no source prices.  ``check`` warns (on stderr, still exit 0) about every
configured exact model name nothing prices and about price data older than
90 days.  ``prices`` prints the rates in force (source, tiers, USD per
million tokens) for the models named, or for every configured exact model.

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
    create.add_argument("--admin", action="store_true", help="may call the admin listener ([admin] require_key)")
    key_commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key", metavar="KEY_ID_OR_NAME")

    usage = commands.add_parser("usage", help="show usage records and totals")
    usage.add_argument("--json", action="store_true", help="one JSON object per record per line")
    usage.add_argument("--since", metavar="ISO", help="only records at or after this UTC time")
    usage.add_argument(
        "--group-by", metavar="GROUPS",
        help="totals per day, key, team or model (one, or two comma-separated)",
    )
    usage.add_argument("--limit", type=int, metavar="N", help="with --group-by: at most N groups")

    commands.add_parser("check", help="validate the config and print OK")
    commands.add_parser("migrate", help="bring the ledger's schema up to date")
    copy = commands.add_parser("migrate-ledger", help="copy a SQLite ledger into the configured PostgreSQL")
    copy.add_argument("--from", dest="source", required=True, metavar="SQLITE_FILE")
    prices = commands.add_parser("prices", help="print the rates in force for models")
    prices.add_argument("models", nargs="*", metavar="MODEL", help="provider/model or model (default: configured)")
    serve = commands.add_parser(
        "serve", help="run the proxy in the foreground (no pidfile, logs on stdout; for containers)"
    )
    serve.add_argument("--listen", metavar="STRPORTS", help="override server.listen")
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
    from .loop import refuse_self_pointing

    try:
        config = load_config(args.config, environ)
        if args.command in ("check", "serve"):
            if getattr(args, "listen", None):
                import attrs

                config = attrs.evolve(config, server=attrs.evolve(config.server, listen=args.listen))
            refuse_self_pointing(config)
    except ConfigError as error:
        raise _Fail(str(error)) from None
    if args.command in ("check", "prices"):
        from .cli_prices import check, prices

        return check(config, now) if args.command == "check" else prices(config, args.models)
    if args.command == "serve":
        from .serve import serve

        return serve(args.config, args.listen)

    if args.command == "migrate-ledger":
        return _migrate_ledger(config, args, environ)
    store = _open_ledger(config, environ, migrate=True if args.command == "migrate" else None)
    try:
        if args.command == "migrate":
            print(f"Ledger schema is at version {_schema_version(store)}.")
            return EXIT_OK
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


def _open_ledger(config: Any, environ: Mapping[str, str], migrate: Optional[bool] = None) -> Any:
    from .config import ConfigError
    from .ledger.opening import open_ledger

    try:
        return open_ledger(config.ledger, environ, migrate=migrate)
    except ConfigError as error:
        raise _Fail(str(error)) from None


def _schema_version(store: Any) -> int:
    return int(store.schema_version)


def _migrate_ledger(config: Any, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Copy keys and records from a SQLite file into the configured PostgreSQL."""
    import sqlite3

    from .ledger.opening import is_postgres
    from .ledger.sqlite import SQLiteLedger

    if not is_postgres(config.ledger):
        raise _Fail("config key 'ledger.url': migrate-ledger copies into PostgreSQL; set ledger.url")
    if not os.path.isfile(args.source):
        raise _Fail(f"--from: no SQLite ledger at {args.source!r}")
    try:
        source = SQLiteLedger(args.source)
    except Exception as error:  # LedgerSchemaError or sqlite3.Error
        raise _Fail(f"--from: cannot open {args.source!r}: {error}") from None
    target = _open_ledger(config, environ)
    try:
        keys = source.list_keys()
        added = target.import_keys(keys)
        records = source.read_records()
        for start in range(0, len(records), 1000):
            target.write_records(records[start:start + 1000])
    except sqlite3.Error as error:
        raise _Fail(f"--from: cannot read {args.source!r}: {error}") from None
    finally:
        source.close()
        target.close()
    print(
        f"Copied {len(keys)} keys ({added} new) and {len(records)} usage records from "
        f"{args.source} (records already present were skipped)."
    )
    return EXIT_OK


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
        key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=now(), team=team, admin=args.admin
    )
    try:
        store.add_key(info)
    except KeyNameTaken:
        raise _Fail(
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
        [k.key_id, k.name, k.team or "-", _iso(k.created_at), "-" if k.active else _iso(k.revoked_at), "yes" if k.admin else "-"]
        for k in keys
    ]
    _table(["id", "name", "team", "created", "revoked", "admin"], rows)
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
    if args.limit is not None and args.group_by is None:
        raise _Fail("--limit: only with --group-by")
    if args.limit is not None and args.limit < 1:
        raise _Fail("--limit: must be at least 1")
    if args.group_by is not None:
        return _usage_groups(store, args, since)
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


def _usage_groups(store: Any, args: argparse.Namespace, since: Optional[float]) -> int:
    from .ledger.groups import GROUP_FIELDS, group_records, parse_group_by

    try:
        group_by = parse_group_by(args.group_by)
    except ValueError as error:
        raise _Fail(f"--group-by: {error}") from None
    if hasattr(store, "group_totals"):
        totals = store.group_totals(since, group_by, args.limit)
    else:
        totals = group_records(store.read_records(since), group_by, args.limit)
    if args.json:
        for group in totals:
            print(json.dumps(group.to_json(), separators=(",", ":")))
        return EXIT_OK
    if not totals:
        print("No usage records.")
        return EXIT_OK
    _table(
        [*(GROUP_FIELDS[g] for g in group_by), "requests", "prompt_tokens", "completion_tokens",
         "cost_usd", "cost_requested_usd", "unpriced"],
        [
            [*t.values, str(t.requests), str(t.prompt_tokens), str(t.completion_tokens),
             _money(t.cost_usd), _money(t.cost_requested_usd), str(t.unpriced)]
            for t in totals
        ],
    )
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
    unpriced_models = sorted({r.model for r in records if r.cost_usd is None and r.model})
    if unpriced_models:
        print(f"Models without a price (cost_usd null): {', '.join(unpriced_models)}")
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
