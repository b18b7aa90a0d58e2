# Tests: tests/test_admin_api.py, tests/test_admin_security.py
"""
The admin API's routing endpoints: ``routing`` (the rules in force and how
often each matched, with what it saved) and ``whatif`` (a candidate
``[routing]`` table, JSON or TOML, replayed over the stored records with
the prices in force, without touching the running config).
"""

from __future__ import annotations

import tomllib
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks

from ..config import Config, RoutingConfig
from ..config_rules import check_routing
from ..ledger.usage_query import RecordFilter, period_bounds
from ..routing.whatif import replay
from ..schema import ConfigError, build
from .api_call import ApiError, Call, parse_range, parse_time, str_or_none

__all__ = ["RoutingEndpoints"]


class RoutingEndpoints:
    """The routing endpoints (each store call off the reactor through ``run``)."""

    def __init__(self, *, store: Any, run: Callable[..., Deferred[Any]], config: Config, prices: Any, clock: Any) -> None:
        self.store, self.run, self.config, self.prices, self.clock = store, run, config, prices, clock

    @inlineCallbacks
    def routing(self, call: Call) -> Any:
        start, end = parse_range(call, self.clock.seconds())
        hits = yield self.run(self.store.usage_summary, start, end, ("route",))
        routing = self.config.routing
        return {
            "mode": routing.mode,
            "rules": [_rule_json(rule) for rule in routing.rules],
            "aliases": dict(routing.aliases),
            "hits": [{"route": row.values[0], "requests": row.requests, "savings_usd": format(row.savings_usd, "f"),
                      "shadow_savings_usd": format(row.shadow_savings_usd, "f")} for row in hits.groups],
        }

    @inlineCallbacks
    def whatif(self, call: Call) -> Any:
        if call.ctype in ("application/toml", "text/toml"):
            try:
                raw = tomllib.loads(call.body.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as why:
                raise ApiError(400, f"The body is not valid TOML: {why}", "invalid_toml") from None
        else:
            raw = call.json()
        table = raw.get("routing")
        if not isinstance(table, dict):
            raise ApiError(400, "The body needs a routing table (the [routing] table of a config)", "invalid_value", "routing")
        try:
            candidate = build(RoutingConfig, table, "routing")
            check_routing(candidate, self.config.providers)
        except ConfigError as why:
            raise ApiError(400, str(why), "invalid_routing", why.key) from None
        start = parse_time(str_or_none(raw.get("from"), "from"), "from", period_bounds("monthly", self.clock.seconds())[0])
        end = parse_time(str_or_none(raw.get("to"), "to"), "to", self.clock.seconds() + 1)
        records = yield self.run(self.store.query_records, RecordFilter(start=start, end=end, limit=None))
        infos = yield self.run(self.store.list_keys)
        names = {info.key_id: info.name for info in infos}
        result = replay(candidate, records, self.prices, names)
        return {"from": start, "to": end, **result.to_json()}


def _rule_json(rule: Any) -> dict[str, Any]:
    match = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(rule.match).items() if v not in ((), None)}
    return {"name": rule.name, "match": match, "model": rule.model, "fallbacks": list(rule.fallbacks)}

