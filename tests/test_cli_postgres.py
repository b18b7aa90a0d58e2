"""
Tests for dd0c_route.cli on both stores: the same commands give the same
output on SQLite and PostgreSQL; ``usage --group-by``; ``migrate`` and
``migrate-ledger``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dd0c_route.cli import EXIT_OK, EXIT_USAGE, main
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.sqlite import SQLiteLedger

from .pg import create_database
from .test_cli import NOW, record


class _Cleanups:
    """The addCleanup that create_database needs, for a pytest fixture."""

    def __init__(self) -> None:
        self.cleanups: list[Any] = []

    def addCleanup(self, f: Any) -> None:
        self.cleanups.append(f)


@pytest.fixture
def pg_dsn() -> Any:
    holder = _Cleanups()
    yield create_database(holder)
    for cleanup in reversed(holder.cleanups):
        cleanup()


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={}, now=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


RECORDS = [
    record(i, key_id=f"key_{i % 3:012d}", team=["a", "b"][i % 2], model=f"m{i % 2}",
           cost_usd=Decimal(i + 1) / 10**6, cost_requested_usd=Decimal(i + 1) / 10**5)
    for i in range(40)
]


def test_same_output_on_both_stores(tmp_path: Path, pg_dsn: str, capsys: Any) -> None:
    """usage (plain, --json, --group-by, --since, --limit) prints the same on SQLite and PostgreSQL."""
    sqlite_path = tmp_path / "l.sqlite3"
    with SQLiteLedger(str(sqlite_path)) as store:
        store.write_records(RECORDS)
    with PostgresLedger(pg_dsn) as store:
        store.write_records(RECORDS)
    sqlite_cfg = write(tmp_path / "s.toml", f"[ledger]\npath = {json.dumps(str(sqlite_path))}\n")
    pg_cfg = write(tmp_path / "p.toml", f"[ledger]\nurl = {json.dumps(pg_dsn)}\n")
    for args in (
        ["usage"], ["usage", "--json"], ["usage", "--group-by", "day"],
        ["usage", "--group-by", "team,model", "--json"], ["usage", "--group-by", "key", "--limit", "2"],
        ["usage", "--group-by", "day,key", "--since", "2026-03-02T05:30:00Z", "--json"],
    ):
        outputs = []
        for cfg in (sqlite_cfg, pg_cfg):
            code, out, err = run(capsys, "--config", cfg, *args)
            assert code == EXIT_OK, err
            outputs.append(out)
        assert outputs[0] == outputs[1], args
        assert outputs[0].strip()


def test_group_by_json_fields(tmp_path: Path, capsys: Any) -> None:
    """--json --group-by prints one object per group with the group's fields and decimal-string money."""
    path = tmp_path / "l.sqlite3"
    with SQLiteLedger(str(path)) as store:
        store.write_records(RECORDS)
    cfg = write(tmp_path / "s.toml", f"[ledger]\npath = {json.dumps(str(path))}\n")
    code, out, _ = run(capsys, "--config", cfg, "usage", "--json", "--group-by", "model")
    assert code == EXIT_OK
    groups = [json.loads(line) for line in out.splitlines()]
    assert [set(g) for g in groups] == [
        {"model", "requests", "prompt_tokens", "completion_tokens", "cost_usd", "cost_requested_usd"}
    ] * 2
    assert sum(g["requests"] for g in groups) == 40
    assert sum(Decimal(g["cost_usd"]) for g in groups) == sum(r.cost_usd for r in RECORDS if r.cost_usd)
    assert groups[0]["cost_usd"] >= groups[1]["cost_usd"]


def test_bad_group_by(tmp_path: Path, capsys: Any) -> None:
    """An unknown group or a --limit without --group-by names the option."""
    cfg = write(tmp_path / "s.toml", f"[ledger]\npath = {json.dumps(str(tmp_path / 'x.sqlite3'))}\n")
    code, _, err = run(capsys, "--config", cfg, "usage", "--group-by", "week")
    assert code == EXIT_USAGE and "--group-by" in err and "day, key, team, model" in err
    code, _, err = run(capsys, "--config", cfg, "usage", "--limit", "3")
    assert code == EXIT_USAGE and "--limit" in err


def test_keys_on_fresh_postgres_and_migrate(tmp_path: Path, pg_dsn: str, capsys: Any) -> None:
    """keys create migrates a fresh database; with auto_migrate = false only migrate does."""
    manual = write(tmp_path / "m.toml", f"[ledger]\nurl = {json.dumps(pg_dsn)}\nauto_migrate = false\n")
    code, _, err = run(capsys, "--config", manual, "keys", "list")
    assert code == EXIT_USAGE and "ledger.url" in err and "dd0c-route migrate" in err
    code, out, err = run(capsys, "--config", manual, "migrate")
    assert code == EXIT_OK, err
    from dd0c_route.ledger.postgres import SCHEMA_VERSION

    assert f"version {SCHEMA_VERSION}" in out
    code, out, err = run(capsys, "--config", manual, "keys", "create", "--name", "ci")
    assert code == EXIT_OK, err
    code, out, _ = run(capsys, "--config", manual, "keys", "list")
    assert "ci" in out


def test_migrate_ledger_copies_once(tmp_path: Path, pg_dsn: str, capsys: Any) -> None:
    """migrate-ledger copies keys and records; run twice, nothing is doubled."""
    sqlite_path = tmp_path / "old.sqlite3"
    sqlite_cfg = write(tmp_path / "s.toml", f"[ledger]\npath = {json.dumps(str(sqlite_path))}\n")
    pg_cfg = write(tmp_path / "p.toml", f"[ledger]\nurl = {json.dumps(pg_dsn)}\n")
    code, _, _ = run(capsys, "--config", sqlite_cfg, "keys", "create", "--name", "old")
    assert code == EXIT_OK
    run(capsys, "--config", sqlite_cfg, "keys", "revoke", "old")
    with SQLiteLedger(str(sqlite_path)) as store:
        store.write_records(RECORDS)
    for _ in range(2):
        code, out, err = run(capsys, "--config", pg_cfg, "migrate-ledger", "--from", str(sqlite_path))
        assert "40 usage records" in out
        assert code == EXIT_OK, err
    with PostgresLedger(pg_dsn) as store, SQLiteLedger(str(sqlite_path)) as old:
        assert store.list_keys() == old.list_keys()
        assert store.read_records() == old.read_records()
        totals = store.group_totals(None, ("day",))
        assert sum(t.requests for t in totals) == 40
    code, _, err = run(capsys, "--config", sqlite_cfg, "migrate-ledger", "--from", str(sqlite_path))
    assert code == EXIT_USAGE and "ledger.url" in err
