"""Admin keys in the SQLite ledger, and the migration that added them (issue #15)."""

from __future__ import annotations

import sqlite3

from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteLedger


def test_old_ledger_gains_admin_flag_and_client_request_id(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    conn = sqlite3.connect(path)
    # Every migration before the one that added the admin flag (and the client's X-Request-ID).
    before = next(i for i, step in enumerate(_MIGRATIONS) if any("admin" in s for s in step if isinstance(s, str)))
    for version in range(before):
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("INSERT INTO keys (key_id, name, key_hash, created_at) VALUES ('key_old', 'old', 'h1', 1.0)")
    conn.execute(f"PRAGMA user_version = {before}")
    conn.commit()
    conn.close()
    with SQLiteLedger(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        (old,) = store.list_keys()
        assert old.key_id == "key_old" and old.admin is False
        store.add_key(KeyInfo("key_ops", "ops", "h2", 2.0, admin=True))
        assert [k.admin for k in store.list_keys()] == [False, True]
        assert store.find_by_hash("h2").admin is True
        record = UsageRecord(request_id="r1", client_request_id="trace-1")
        store.write_records([record])
        assert store.read_records() == [record]
