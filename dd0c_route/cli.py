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
import os
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from .cli_exit import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Fail

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "main"]


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
    except Fail as failure:
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
        raise Fail(str(error)) from None
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
            from .cli_keys import keys

            return keys(store, args, now, config)
        from .cli_usage import usage

        return usage(store, args)
    finally:
        store.close()


def _open_ledger(config: Any, environ: Mapping[str, str], migrate: Optional[bool] = None) -> Any:
    from .config import ConfigError
    from .ledger.opening import open_ledger

    try:
        return open_ledger(config.ledger, environ, migrate=migrate)
    except ConfigError as error:
        raise Fail(str(error)) from None


def _schema_version(store: Any) -> int:
    return int(store.schema_version)


def _migrate_ledger(config: Any, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Copy keys and records from a SQLite file into the configured PostgreSQL."""
    import sqlite3

    from .ledger.opening import is_postgres
    from .ledger.sqlite import SQLiteLedger

    if not is_postgres(config.ledger):
        raise Fail("config key 'ledger.url': migrate-ledger copies into PostgreSQL; set ledger.url")
    if not os.path.isfile(args.source):
        raise Fail(f"--from: no SQLite ledger at {args.source!r}")
    try:
        source = SQLiteLedger(args.source)
    except Exception as error:  # LedgerSchemaError or sqlite3.Error
        raise Fail(f"--from: cannot open {args.source!r}: {error}") from None
    target = _open_ledger(config, environ)
    try:
        keys = source.list_keys()
        added = target.import_keys(keys)
        records = source.read_records()
        for start in range(0, len(records), 1000):
            target.write_records(records[start:start + 1000])
    except sqlite3.Error as error:
        raise Fail(f"--from: cannot read {args.source!r}: {error}") from None
    finally:
        source.close()
        target.close()
    print(
        f"Copied {len(keys)} keys ({added} new) and {len(records)} usage records from "
        f"{args.source} (records already present were skipped)."
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
