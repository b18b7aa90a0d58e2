"""
``dd0c-route usage``: savings per key and per model, measured from the
records (requested-model cost vs paid; shadow-rule cost vs paid).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dd0c_route.cli import EXIT_OK, main
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.ledger.summary import by_key, by_route, savings


def rec(n: int, **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = dict(
        request_id=f"req-{n}", key_id="key_a", model_requested="gpt-4o", model="gpt-4o",
        prompt_tokens=100, completion_tokens=10, cost_usd=Decimal("0.00035"),
        cost_requested_usd=Decimal("0.00035"), status=200, created_at=1_773_000_000.0 + n,
        route_rule="default", complexity="simple",
    )
    fields.update(kw)
    return UsageRecord(**fields)


RECORDS = [
    rec(1, model="gpt-4o-mini", cost_usd=Decimal("0.000021"), route_rule="cheap"),
    rec(2, model="gpt-4o-mini", cost_usd=Decimal("0.000021"), route_rule="cheap", key_id="key_b"),
    rec(3),
    rec(4, route_rule="shadow:cheap", shadow_model="gpt-4o-mini", cost_shadow_usd=Decimal("0.000021")),
    rec(5, model="claude-haiku-4-5", cost_usd=None, route_rule="cheap"),
]


def test_savings_sums():
    """Saved = requested cost - paid over records with both known; shadow = paid - shadow cost."""
    (total,) = savings(RECORDS)
    assert total.requests == 5 and total.routed == 3 and total.shadowed == 1
    assert total.saved_usd == Decimal("0.000658")
    assert total.shadow_saved_usd == Decimal("0.000329")
    per_key = {s.group: s for s in savings(RECORDS, by_key)}
    assert per_key["key_b"].saved_usd == Decimal("0.000329")
    per_route = {s.group: s for s in savings(RECORDS, by_route)}
    assert per_route["gpt-4o->gpt-4o-mini"].routed == 2
    assert per_route["gpt-4o->claude-haiku-4-5"].saved_usd == 0


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "c.toml"
    path.write_text(f'[ledger]\npath = "{tmp_path / "l.sqlite3"}"\n')
    with SQLiteLedger(str(tmp_path / "l.sqlite3")) as store:
        store.write_records(RECORDS)
    return str(path)


def test_usage_prints_savings_per_key_and_model(capsys: Any, config: str):
    """usage shows savings tables by key and by requested->served model, then the totals line last."""
    assert main(["--config", config, "usage"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Savings by key:")
    assert lines[start + 1].split() == [
        "key_id", "requests", "routed", "cost_usd", "requested_usd", "saved_usd", "shadowed", "shadow_saved_usd",
    ]
    assert lines[start + 2].split() == ["key_a", "4", "2", "0.000721", "0.00105", "0.000329", "1", "0.000329"]
    models = lines.index("Savings by model (requested->served):")
    assert lines[models + 2].split()[:2] == ["gpt-4o->gpt-4o-mini", "2"]
    assert any(line.startswith("Routing saved $0.000658 on 3 routed requests; shadow rules would have saved $0.000329") for line in lines)
    assert lines[-1].startswith("Total: 5 requests")


def test_usage_json_has_routing_fields(capsys: Any, config: str):
    """usage --json carries the routing fields, money as strings."""
    import json

    assert main(["--config", config, "usage", "--json"]) == EXIT_OK
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[3]["shadow_model"] == "gpt-4o-mini" and rows[3]["cost_shadow_usd"] == "0.000021"
    assert rows[0]["route_rule"] == "cheap" and rows[0]["cost_requested_usd"] == "0.00035"
    assert "attempts" in rows[0]
