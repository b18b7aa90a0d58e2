"""
The admin JSON API over a ledger seeded with known records, on SQLite and
on PostgreSQL: every summary equals sums computed here, independently, from
the seeded records; what-if on "simple gpt-4o -> gpt-4o-mini" reports
exactly the savings the seed implies; the request log pages and filters;
keys are created (shown once), updated and revoked.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.rollup import LATENCY_BOUNDS_MS

from .admin_fixtures import DAY, open_store, prices, seed_records, serve_admin

ISO_FROM = "2025-03-10T00:00:00Z"
ISO_TO = "2025-03-12T00:00:00Z"
FIELD = {"key": "key_id"}


def group_value(name: str, r: Any) -> str:
    # Whole seconds first: fromtimestamp rounds to microseconds, which would move a
    # record a fraction of a microsecond before midnight into the next day.
    when = datetime.fromtimestamp(math.floor(r.created_at), UTC)
    return {
        "day": when.strftime("%Y-%m-%d"),
        "hour": when.strftime("%Y-%m-%dT%H:00Z"),
        "model": r.model or r.model_requested or "-",
        "provider": r.provider or "-",
        "key": r.key_id or "-",
        "team": r.team or "-",
        "route": r.route_rule or "-",
    }[name]


def bucketed(latency: float, top: float) -> float:
    """The documented bucket semantics: the first bound at or above the latency, capped at the group's max."""
    bound = next((b for b in LATENCY_BOUNDS_MS if latency <= b), math.inf)
    return min(bound, top)


def expected_totals(records: list[Any]) -> dict[str, Any]:
    """The summary fields of a group, computed the slow, obvious way (percentiles: nearest rank, then bucketed)."""
    latencies = sorted(r.latency_ms for r in records)

    def rank(p: float) -> Any:
        return bucketed(latencies[max(1, math.ceil(p * len(latencies))) - 1], latencies[-1]) if latencies else None

    known = [r for r in records if r.cost_usd is not None and r.cost_requested_usd is not None]
    shadowed = [r for r in records if r.shadow_model is not None and r.cost_usd is not None and r.cost_shadow_usd is not None]
    return {
        "requests": len(records),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in records),
        "completion_tokens": sum(r.completion_tokens or 0 for r in records),
        "cost_usd": sum((r.cost_usd for r in records if r.cost_usd is not None), Decimal(0)),
        "cost_requested_usd": sum((r.cost_requested_usd for r in records if r.cost_requested_usd is not None), Decimal(0)),
        "savings_usd": sum((r.cost_requested_usd - r.cost_usd for r in known), Decimal(0)),
        "shadow_savings_usd": sum((r.cost_usd - r.cost_shadow_usd for r in shadowed), Decimal(0)),
        "errors": sum(1 for r in records if r.status >= 400 and not r.disconnected),
        "disconnects": sum(1 for r in records if r.disconnected),
        "latency_p50_ms": rank(0.5),
        "latency_p95_ms": rank(0.95),
    }


def openapi_document() -> dict[str, Any]:
    from importlib import resources

    return json.loads(resources.files("dd0c_route.admin").joinpath("openapi.json").read_text("utf-8"))


def openapi_validate(answer: Any, path: str, verb: str, status: str) -> None:
    """``answer`` fits the shipped OpenAPI document's response schema, which names every field it has."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    document = openapi_document()
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; "#/components/..." resolves in the document.
    registry = Registry().with_resource("urn:openapi", Resource(contents=document, specification=DRAFT202012))
    parts = ("paths", path, verb, "responses", status, "content", "application/json", "schema")
    pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)
    Draft202012Validator({"$ref": "urn:openapi#/" + pointer}, registry=registry).validate(answer)
    named = set(document["components"]["schemas"]["Key"]["properties"]) | {"key"}
    assert set(answer) <= named, set(answer) - named


def test_every_openapi_reference_resolves() -> None:
    """Each $ref in the shipped openapi.json points at something in it; every operation has its 401, 403, 503."""
    document = openapi_document()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    target: Any = document
                    for part in value.removeprefix("#/").split("/"):
                        target = target[part]
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            if path != "/admin/v1/openapi.json":
                assert {"401", "403", "503"} <= set(operation["responses"]), (path, verb)


def as_answer(totals: dict[str, Any]) -> dict[str, Any]:
    return {k: (Decimal(v) if k.endswith("_usd") else v) for k, v in totals.items()}


class _ApiTests:
    kind = "sqlite"
    timeout = 60

    @inlineCallbacks
    def seeded(self) -> Any:
        store = open_store(self, self.kind)
        records = seed_records()
        yield deferToThread(store.write_records, records)
        served = yield serve_admin(self, store)
        return served, records

    def assert_summary(self, answer: dict[str, Any], records: list[Any], group_by: tuple[str, ...]) -> None:
        groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
        for r in records:
            groups[tuple(group_value(g, r) for g in group_by)].append(r)
        got = {}
        for row in answer["groups"]:
            values = tuple(row.pop(FIELD.get(g, g)) for g in group_by)
            got[values] = as_answer(row)
        self.assertEqual(got, {values: expected_totals(rs) for values, rs in groups.items()})
        self.assertEqual(as_answer(answer["totals"]), expected_totals(records))

    @inlineCallbacks
    def test_summaries_equal_independent_sums(self):
        """Every group_by (one and two names) over the seeded range equals sums computed in the test."""
        served, records = yield self.seeded()
        for group_by in ("model", "day", "hour", "provider", "key", "team", "route", "day,model", "team,route", "hour,key"):
            status, answer = yield served.call("GET", f"/admin/v1/usage/summary?from={ISO_FROM}&to={ISO_TO}&group_by={group_by}")
            self.assertEqual(status, 200, answer)
            self.assert_summary(answer, records, tuple(group_by.split(",")))
            self.assertIsInstance(answer["totals"]["cost_usd"], str)

    @inlineCallbacks
    def test_summary_range_is_from_inclusive_to_exclusive(self):
        """Only the first day: the records with DAY <= created_at < DAY + 1 day."""
        served, records = yield self.seeded()
        status, answer = yield served.call("GET", "/admin/v1/usage/summary?from=2025-03-10&to=2025-03-11&group_by=model")
        self.assertEqual(status, 200)
        self.assert_summary(answer, [r for r in records if DAY <= r.created_at < DAY + 86400], ("model",))

    @inlineCallbacks
    def test_summary_over_a_range_inside_hours(self):
        """From and to inside hours (those edges come from the records, the rest from the rollup): still exact."""
        served, records = yield self.seeded()
        start, end = "2025-03-10T05:17:23.5Z", "2025-03-11T19:42:00Z"
        s, e = datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp()
        for group_by in ("model", "hour,key", "day,team", "route"):
            status, answer = yield served.call("GET", f"/admin/v1/usage/summary?from={start}&to={end}&group_by={group_by}")
            self.assertEqual(status, 200, answer)
            self.assert_summary(answer, [r for r in records if s <= r.created_at < e], tuple(group_by.split(",")))

    @inlineCallbacks
    def test_bad_group_by_and_time_are_openai_shaped_400s(self):
        """A wrong group_by or date is a 400 naming the parameter."""
        served, _ = yield self.seeded()
        status, answer = yield served.call("GET", "/admin/v1/usage/summary?group_by=colour")
        self.assertEqual((status, answer["error"]["param"]), (400, "group_by"))
        status, answer = yield served.call("GET", "/admin/v1/usage/summary?from=yesterday")
        self.assertEqual((status, answer["error"]["param"], answer["error"]["type"]), (400, "from", "invalid_request_error"))

    def expected_whatif(self, records: list[Any]) -> tuple[Decimal, int, int]:
        saved, moved, unjudged = Decimal(0), 0, 0
        for r in records:
            if r.complexity is None:
                unjudged += 1
                continue
            if r.complexity == "simple" and r.model_requested == "gpt-4o" and r.model != "gpt-4o-mini":
                if r.cost_usd is None:
                    unjudged += 1
                    continue
                moved += 1
                saved += r.cost_usd - prices().cost_usd("gpt-4o-mini", r.prompt_tokens, r.completion_tokens)
        return saved, moved, unjudged

    @inlineCallbacks
    def test_whatif_simple_gpt4o_to_mini_reports_the_seeded_savings(self):
        """JSON and TOML candidates both report exactly the savings the seed implies."""
        served, records = yield self.seeded()
        saved, moved, unjudged = self.expected_whatif(records)
        self.assertGreater(moved, 10)
        rule = {"name": "cheap", "match": {"model": "gpt-4o", "complexity": "simple"}, "action": {"model": "gpt-4o-mini"}}
        body = {"routing": {"mode": "enforce", "rules": [rule]}, "from": ISO_FROM, "to": ISO_TO}
        status, answer = yield served.call("POST", "/admin/v1/whatif", body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["rules"], [{"name": "cheap", "moved": moved, "savings_usd": format(saved, "f")}])
        self.assertEqual((Decimal(answer["total_savings_usd"]), answer["unjudged"]), (saved, unjudged))
        toml = (
            f'from = "{ISO_FROM}"\nto = "{ISO_TO}"\n[routing]\nmode = "enforce"\n[[routing.rules]]\nname = "cheap"\n'
            'match = { model = "gpt-4o", complexity = "simple" }\naction = { model = "gpt-4o-mini" }\n'
        )
        status, again = yield served.call("POST", "/admin/v1/whatif", toml, ctype="application/toml")
        self.assertEqual((status, again["rules"], again["unjudged"]), (200, answer["rules"], unjudged))

    @inlineCallbacks
    def test_whatif_refuses_a_bad_candidate_naming_its_key(self):
        """A rule to a model no provider serves is a 400 naming the config key."""
        served, _ = yield self.seeded()
        rule = {"name": "x", "match": {}, "action": {"model": "no-such-model"}}
        status, answer = yield served.call("POST", "/admin/v1/whatif", {"routing": {"rules": [rule]}})
        self.assertEqual((status, answer["error"]["code"]), (400, "invalid_routing"))
        self.assertIn("routing.rules[0].action.model", answer["error"]["message"])

    @inlineCallbacks
    def test_request_log_pages_and_filters_without_keys_or_content(self):
        """Filtered pages, newest first, concatenate to exactly the matching records; no key material."""
        served, records = yield self.seeded()
        want = [r.request_id for r in sorted(records, key=lambda r: -r.created_at) if r.model == "gpt-4o" and r.status == 200]
        got, offset = [], 0
        while offset is not None:
            status, page = yield served.call("GET", f"/admin/v1/requests?model=gpt-4o&status=200&limit=7&offset={offset}")
            self.assertEqual(status, 200)
            got += [row["request_id"] for row in page["data"]]
            for row in page["data"]:
                self.assertFalse({"key", "key_hash", "messages", "prompt"} & set(row))
            offset = page["next_offset"]
        self.assertEqual(got, want)
        status, page = yield served.call("GET", "/admin/v1/requests?disconnected=true&route=cheap&limit=500")
        self.assertEqual(
            [row["request_id"] for row in page["data"]],
            [r.request_id for r in sorted(records, key=lambda r: -r.created_at) if r.disconnected and r.route_rule == "cheap"],
        )

    @inlineCallbacks
    def test_keys_create_once_update_and_revoke(self):
        """The key is in the creating answer only; team and budgets stick; a revoked key shows revoked."""
        served, _ = yield self.seeded()
        status, created = yield served.call("POST", "/admin/v1/keys", {"name": "svc", "team": "ml", "daily_usd": "2.5"})
        self.assertEqual((status, created["team"], created["daily_usd"]), (201, "ml", "2.5"))
        self.assertTrue(created["key"].startswith("dd0c-"))
        status, listed = yield served.call("GET", "/admin/v1/keys")
        (svc,) = [k for k in listed["data"] if k["name"] == "svc"]
        self.assertNotIn("key", svc)
        self.assertNotIn("key_hash", svc)
        status, updated = yield served.call("PATCH", f"/admin/v1/keys/{svc['key_id']}", {"team": "ops", "monthly_usd": 40})
        self.assertEqual((status, updated["team"], updated["daily_usd"], updated["monthly_usd"]), (200, "ops", "2.5", "40"))
        status, revoked = yield served.call("POST", "/admin/v1/keys/svc/revoke", {})
        self.assertEqual((status, revoked["active"]), (200, False))
        status, listed = yield served.call("GET", "/admin/v1/keys")
        (svc,) = [k for k in listed["data"] if k["name"] == "svc"]
        self.assertEqual((svc["active"], svc["team"], svc["monthly_usd"]), (False, "ops", "40"))
        status, _ = yield served.call("POST", "/admin/v1/keys", {"name": "svc"})
        self.assertEqual(status, 201)
        status, taken = yield served.call("POST", "/admin/v1/keys", {"name": "svc"})
        self.assertEqual((status, taken["error"]["code"]), (409, "name_taken"))

    @inlineCallbacks
    def test_key_limits_round_trip_and_match_the_openapi_schema(self):
        """rpm/tpm set at create and by PATCH (null lifts), bad values are 400s naming the field; answers fit the schema."""
        served, _ = yield self.seeded()
        body = {"name": "lim", "requests_per_minute": 60, "tokens_per_minute": 10000, "monthly_usd": "3"}
        status, created = yield served.call("POST", "/admin/v1/keys", body)
        self.assertEqual((status, created["requests_per_minute"], created["tokens_per_minute"]), (201, 60, 10000))
        openapi_validate(created, "/admin/v1/keys", "post", "201")
        status, updated = yield served.call("PATCH", "/admin/v1/keys/lim", {"requests_per_minute": None, "tokens_per_minute": 5})
        self.assertEqual((status, updated["requests_per_minute"], updated["tokens_per_minute"]), (200, None, 5))
        openapi_validate(updated, "/admin/v1/keys/{key}", "patch", "200")
        status, listed = yield served.call("GET", "/admin/v1/keys")
        (lim,) = [k for k in listed["data"] if k["name"] == "lim"]
        self.assertEqual((lim["requests_per_minute"], lim["tokens_per_minute"], lim["monthly_usd"]), (None, 5, "3"))
        for bad in (0, -1, "5", True, 1.5):
            status, answer = yield served.call("PATCH", "/admin/v1/keys/lim", {"tokens_per_minute": bad})
            self.assertEqual((status, answer["error"]["param"]), (400, "tokens_per_minute"), bad)
        status, answer = yield served.call("PATCH", "/admin/v1/keys/lim", {"rpm": 5})
        self.assertEqual((status, answer["error"]["code"]), (400, "invalid_value"))

    @inlineCallbacks
    def test_routing_hits_per_rule(self):
        """Hits per route over the range equal the seeded counts."""
        served, records = yield self.seeded()
        status, answer = yield served.call("GET", f"/admin/v1/routing?from={ISO_FROM}&to={ISO_TO}")
        self.assertEqual(status, 200)
        counts: dict[str, int] = defaultdict(int)
        for r in records:
            counts[r.route_rule] += 1
        self.assertEqual({h["route"]: h["requests"] for h in answer["hits"]}, dict(counts))
        self.assertEqual(answer["mode"], "off")


class SQLiteApiTests(_ApiTests, TestCase):
    kind = "sqlite"


class PostgresApiTests(_ApiTests, TestCase):
    kind = "postgres"
