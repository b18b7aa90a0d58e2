"""
Tests for dd0c_route.cli: the ``dd0c-route`` operator commands, run
in-process through ``main([...])`` and once as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from dd0c_route.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from dd0c_route.ledger.keycache import KeyCache
from dd0c_route.ledger.keys import PROXY_KEY_PATTERN, hash_key
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.testing.doubles import SynchronousRunner

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOW = 1_772_366_400.0  # 2026-03-01T12:00:00Z


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def config(tmp_path: Path, ledger_path: Path) -> str:
    path = tmp_path / "dd0c-route.toml"
    path.write_text(f"[ledger]\npath = {json.dumps(str(ledger_path))}\n")
    return str(path)


def run(capsys: Any, *argv: str, now: float = NOW) -> tuple[int, str, str]:
    """main(argv) with no environment; returns (code, stdout, stderr)."""
    code = main(list(argv), environ={}, now=lambda: now)
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys: Any, config: str, name: str, *extra: str) -> str:
    code, out, err = run(capsys, "--config", config, "keys", "create", "--name", name, *extra)
    assert code == EXIT_OK, err
    return out.splitlines()[-1]


def record(n: int, **kw: Any) -> UsageRecord:
    values: dict[str, Any] = dict(
        request_id=f"req-{n}",
        response_id=f"chatcmpl-{n}",
        key_id="key_aaaaaaaaaaaa",
        provider="openai",
        model_requested="gpt-4o-mini",
        model="gpt-4o-mini",
        prompt_tokens=100,
        completion_tokens=20,
        cost_usd=Decimal("0.000027"),
        status=200,
        stream=True,
        ttfb_ms=80.0,
        latency_ms=900.0,
        created_at=NOW + n * 3600,
    )
    values.update(kw)
    return UsageRecord(**values)


def test_check_ok(capsys: Any, config: str) -> None:
    """check prints OK and exits 0 for a valid config."""
    assert run(capsys, "--config", config, "check") == (EXIT_OK, "OK\n", "")


def test_check_defaults(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Without --config the embedded defaults are valid."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "check")[:2] == (EXIT_OK, "OK\n")


def test_check_bad_config_names_key(capsys: Any, tmp_path: Path) -> None:
    """A bad config exits 2 with a message on stderr naming the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[ledger]\npath = ""\n')
    code, out, err = run(capsys, "--config", str(bad), "check")
    assert code == EXIT_USAGE and out == ""
    assert "ledger.path" in err


def test_missing_config_file(capsys: Any, tmp_path: Path) -> None:
    """A config file that does not exist is a config error (exit 2)."""
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "keys", "list")
    assert code == EXIT_USAGE and "nope.toml" in err


def test_usage_error_exit_2(capsys: Any, config: str) -> None:
    """A missing required option exits 2 and names it."""
    code, _, err = run(capsys, "--config", config, "keys", "create")
    assert code == EXIT_USAGE and "--name" in err


def test_create_prints_key_once_stores_hash(capsys: Any, config: str, ledger_path: Path) -> None:
    """keys create prints the key alone on the last line and stores only its hash."""
    code, out, _ = run(capsys, "--config", config, "keys", "create", "--name", "ci", "--team", "platform")
    assert code == EXIT_OK
    lines = out.splitlines()
    key = lines[-1]
    assert PROXY_KEY_PATTERN.fullmatch(key)
    assert all(key not in line for line in lines[:-1])
    with SQLiteLedger(str(ledger_path)) as store:
        info = store.find_by_hash(hash_key(key))
    assert info is not None and info.name == "ci" and info.team == "platform"
    assert info.created_at == NOW
    for path in ledger_path.parent.glob("ledger.sqlite3*"):
        assert key.encode() not in path.read_bytes()


def test_create_duplicate_name(capsys: Any, config: str) -> None:
    """A second active key with the same name is refused (exit 2, names --name)."""
    create(capsys, config, "ci")
    code, out, err = run(capsys, "--config", config, "keys", "create", "--name", "ci")
    assert code == EXIT_USAGE and out == "" and "--name" in err


def test_create_rejects_blank_name(capsys: Any, config: str) -> None:
    """A blank or unprintable name is refused with a message naming --name."""
    for bad in ["  ", "a\nb", "x" * 65]:
        code, _, err = run(capsys, "--config", config, "keys", "create", "--name", bad)
        assert code == EXIT_USAGE and "--name" in err


def test_list_never_shows_keys(capsys: Any, config: str) -> None:
    """keys list shows id, name, team, created and revoked, never a key or its hash."""
    key = create(capsys, config, "ci", "--team", "platform")
    create(capsys, config, "batch", "--admin")
    code, out, _ = run(capsys, "--config", config, "keys", "list")
    assert code == EXIT_OK
    header, first, second = out.splitlines()
    assert header.split() == ["id", "name", "team", "created", "revoked", "admin"]
    assert first.split()[1:] == ["ci", "platform", "2026-03-01T12:00:00Z", "-", "-"]
    assert first.startswith("key_") and second.split()[1] == "batch" and second.split()[-1] == "yes"
    assert key not in out and hash_key(key) not in out and "dd0c-" not in out


def test_list_empty(capsys: Any, config: str) -> None:
    """keys list on an empty ledger says so."""
    assert run(capsys, "--config", config, "keys", "list") == (EXIT_OK, "No keys.\n", "")


def test_revoke_by_name_and_id(capsys: Any, config: str, ledger_path: Path) -> None:
    """keys revoke accepts a name or an id; a second revoke reports the first time."""
    create(capsys, config, "ci")
    code, out, _ = run(capsys, "--config", config, "keys", "revoke", "ci", now=NOW + 60)
    assert code == EXIT_OK and "Revoked key" in out
    with SQLiteLedger(str(ledger_path)) as store:
        (info,) = store.list_keys()
    assert info.revoked_at == NOW + 60
    code, out, _ = run(capsys, "--config", config, "keys", "revoke", info.key_id, now=NOW + 120)
    assert code == EXIT_OK and "already revoked at 2026-03-01T12:01:00Z" in out
    assert "2026-03-01T12:01:00Z" in run(capsys, "--config", config, "keys", "list")[1]


def test_revoke_unknown_exit_1(capsys: Any, config: str) -> None:
    """Revoking a key that does not exist exits 1 with a message on stderr."""
    code, out, err = run(capsys, "--config", config, "keys", "revoke", "ghost")
    assert code == EXIT_NOT_FOUND and out == "" and "ghost" in err


def test_revocation_reaches_a_running_cache(capsys: Any, config: str, ledger_path: Path) -> None:
    """A key revoked by the CLI is refused by a proxy's key cache within 5 s."""
    key = create(capsys, config, "ci")
    clock = Clock()
    with SQLiteLedger(str(ledger_path)) as store:
        cache = KeyCache(store, clock, SynchronousRunner().run, ttl=5.0)
        cache.startService()
        hit, info = cache.lookup_cached(key)
        assert hit and info is not None and info.name == "ci"
        assert run(capsys, "--config", config, "keys", "revoke", "ci")[0] == EXIT_OK
        clock.advance(5.0)
        assert cache.lookup_cached(key) == (True, None)
        cache.stopService()


def write_records(ledger_path: Path, *records: UsageRecord) -> None:
    with SQLiteLedger(str(ledger_path)) as store:
        store.write_records(records)


def test_usage_table_and_summaries(capsys: Any, config: str, ledger_path: Path) -> None:
    """usage prints each record and totals per model and per key."""
    write_records(
        ledger_path,
        record(1),
        record(2, model="claude-3-5-haiku-latest", key_id="key_bbbbbbbbbbbb", cost_usd=Decimal("0.001")),
        record(3, cost_usd=None, disconnected=True, completion_tokens=3, tokens_counted_locally="completion"),
    )
    code, out, _ = run(capsys, "--config", config, "usage")
    assert code == EXIT_OK
    for n in (1, 2, 3):
        assert f"req-{n}" in out
    lines = out.splitlines()
    by_model = lines[lines.index("By model:") + 1 : lines.index("By key:") - 1]
    assert by_model[0].split() == ["model", "requests", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced"]
    assert by_model[1].split() == ["gpt-4o-mini", "2", "200", "23", "0.000027", "1"]
    assert by_model[2].split() == ["claude-3-5-haiku-latest", "1", "100", "20", "0.001", "0"]
    by_key = lines[lines.index("By key:") + 1 :]
    assert by_key[1].split()[:2] == ["key_aaaaaaaaaaaa", "2"]
    assert lines[-1] == (
        "Total: 3 requests, 300 prompt + 43 completion tokens, $0.001027 (1 without a price)"
    )
    assert "SDL" in out


def test_usage_json(capsys: Any, config: str, ledger_path: Path) -> None:
    """usage --json prints one object per record with exact costs as strings (or null)."""
    write_records(ledger_path, record(1), record(2, cost_usd=None, stream=False))
    code, out, _ = run(capsys, "--config", config, "usage", "--json")
    assert code == EXIT_OK
    first, second = (json.loads(line) for line in out.splitlines())
    required = {
        "request_id", "response_id", "key_id", "provider", "model_requested", "model",
        "prompt_tokens", "completion_tokens", "cost_usd", "status", "stream",
        "disconnected", "ttfb_ms", "latency_ms",
    }
    assert required <= set(first)
    assert first["cost_usd"] == "0.000027" and second["cost_usd"] is None
    assert first["stream"] is True and second["stream"] is False
    assert first["request_id"] == "req-1" and first["prompt_tokens"] == 100


def test_usage_since(capsys: Any, config: str, ledger_path: Path) -> None:
    """usage --since keeps records at or after the (UTC) time given."""
    write_records(ledger_path, record(0), record(1), record(2))
    code, out, _ = run(capsys, "--config", config, "usage", "--json", "--since", "2026-03-01T13:00:00Z")
    assert code == EXIT_OK
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["req-1", "req-2"]
    out = run(capsys, "--config", config, "usage", "--json", "--since", "2026-03-01T14:00")[1]
    assert len(out.splitlines()) == 1


def test_usage_bad_since(capsys: Any, config: str) -> None:
    """An unparseable --since exits 2 and names the option."""
    code, _, err = run(capsys, "--config", config, "usage", "--since", "yesterday")
    assert code == EXIT_USAGE and "--since" in err


def test_usage_empty(capsys: Any, config: str) -> None:
    """usage on an empty ledger says so."""
    assert run(capsys, "--config", config, "usage") == (EXIT_OK, "No usage records.\n", "")


def test_unopenable_ledger(capsys: Any, tmp_path: Path) -> None:
    """A ledger path that cannot be opened exits 2 naming ledger.path."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[ledger]\npath = {json.dumps(str(tmp_path / 'missing' / 'x.sqlite3'))}\n")
    code, _, err = run(capsys, "--config", str(cfg), "keys", "list")
    assert code == EXIT_USAGE and "ledger.path" in err


def test_default_ledger_in_working_directory(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Without --config the ledger is dd0c-route.sqlite3 in the working directory."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "keys", "create", "--name", "ci")[0] == EXIT_OK
    assert (tmp_path / "dd0c-route.sqlite3").exists()


def test_subprocess(config: str, ledger_path: Path) -> None:
    """``python -m dd0c_route.cli`` runs: exit codes and the key on the last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dd0c_route.cli", "--config", config, *argv],
            capture_output=True, text=True, env=env, timeout=60,
        )

    created = cli("keys", "create", "--name", "ci")
    assert created.returncode == EXIT_OK, created.stderr
    assert PROXY_KEY_PATTERN.fullmatch(created.stdout.splitlines()[-1])
    missing = cli("keys", "revoke", "ghost")
    assert missing.returncode == EXIT_NOT_FOUND and "ghost" in missing.stderr
