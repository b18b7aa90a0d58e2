# Tests: tests/test_admin_api.py, tests/test_admin_security.py
"""
The admin JSON API, ``/admin/v1/...`` on the admin listener (docs: the
OpenAPI file beside this module, served at ``/admin/v1/openapi.json``).

Every call needs an admin key (``Authorization: Bearer``) whatever
``[admin] require_key`` says, because these endpoints create keys and show
spend: a client key is refused with 403, no key with 401.  The dashboard's
session cookie stands for the key on reads; a mutating call with a cookie
must also send the session's ``X-CSRF-Token`` (see :mod:`.sessions`).
Errors are OpenAI-shaped JSON.

Every store call runs off the reactor through the ledger's thread runner.
Answers never hold a prompt or a key (only key ids and names), and a key
is shown once, in the answer that created it.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ..config import Config, RoutingConfig
from ..config_rules import check_routing
from ..ledger.interfaces import KeyInfo, KeyNameTaken
from ..ledger.keys import generate_key, hash_key, new_key_id
from ..ledger.records import UsageRecord, record_to_json
from ..ledger.usage_query import RecordFilter, parse_summary_group_by, period_bounds
from ..routing.whatif import replay
from ..schema import ConfigError, build
from ..web.auth import presented_key
from .sessions import COOKIE, Session, SessionTable

__all__ = ["AdminApi", "ApiError", "respond_json"]

log = Logger()

#: Record fields the request log shows (no content exists on a record; the
#: client's X-Request-ID is left out as client text of no use here).
LOG_FIELDS = (
    "request_id", "created_at", "key_id", "team", "provider", "model_requested", "model", "endpoint",
    "status", "stream", "disconnected", "prompt_tokens", "completion_tokens", "cost_usd",
    "cost_requested_usd", "latency_ms", "ttfb_ms", "route_rule", "complexity", "error_type",
)
MAX_PAGE = 500
_MUTATING = frozenset({b"POST", b"PATCH", b"PUT", b"DELETE"})


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        elif self.status == 403:
            kind = "permission_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def respond_json(request: IRequest, status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    for name, value in headers:
        request.responseHeaders.addRawHeader(name, value)
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def parse_time(text: Optional[str], name: str, default: float) -> float:
    """An ISO 8601 instant (naive means UTC) as a timestamp."""
    if text is None or text == "":
        return default
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date or time, like 2025-01-31T00:00:00Z", "invalid_time", name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _money(value: Any, name: str) -> Optional[Decimal]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ApiError(400, f"{name} must be a number of USD (or null)", "invalid_value", name)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ApiError(400, f"{name} must be a number of USD (or null)", "invalid_value", name) from None
    if not amount.is_finite() or amount < 0:
        raise ApiError(400, f"{name} must be a non-negative number of USD", "invalid_value", name)
    return amount


def _text(body: dict[str, Any], name: str, required: bool = False) -> Optional[str]:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ApiError(400, f"{name} must be a non-empty string of at most 200 characters", "invalid_value", name)
    return value.strip()


def key_json(info: KeyInfo) -> dict[str, Any]:
    """A key as the API shows it: never the key, never its hash."""
    return {
        "key_id": info.key_id, "name": info.name, "team": info.team, "admin": info.admin,
        "created_at": info.created_at, "revoked_at": info.revoked_at, "active": info.active,
        "daily_usd": None if info.daily_usd is None else format(info.daily_usd, "f"),
        "monthly_usd": None if info.monthly_usd is None else format(info.monthly_usd, "f"),
    }


def log_json(record: UsageRecord) -> dict[str, Any]:
    full = record_to_json(record)
    return {name: full[name] for name in LOG_FIELDS}


@attrs.define
class _Call:
    request: IRequest
    method: bytes
    args: dict[bytes, list[bytes]]
    match: re.Match[str]
    body: bytes
    ctype: str

    def arg(self, name: str) -> Optional[str]:
        values = self.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "The body must be a JSON object", "invalid_json") from None
        if not isinstance(value, dict):
            raise ApiError(400, "The body must be a JSON object", "invalid_json")
        return value


Handler = Callable[[_Call], Any]


class AdminApi:
    """The ``/admin/v1`` endpoints; :meth:`serve` authenticates and dispatches."""

    def __init__(
        self, *, store: Any, run: Callable[..., Deferred[Any]], keys: Any, config: Config, prices: Any,
        clock: Any, sessions: SessionTable,
    ) -> None:
        self.store, self.run, self.keys, self.config, self.prices = store, run, keys, config, prices
        self.clock, self.sessions = clock, sessions
        self._routes: list[tuple[bytes, re.Pattern[str], Handler]] = [
            (b"GET", re.compile(r"/admin/v1/openapi\.json"), self.openapi),
            (b"GET", re.compile(r"/admin/v1/keys"), self.list_keys),
            (b"POST", re.compile(r"/admin/v1/keys"), self.create_key),
            (b"PATCH", re.compile(r"/admin/v1/keys/(?P<key>[^/]+)"), self.update_key),
            (b"POST", re.compile(r"/admin/v1/keys/(?P<key>[^/]+)/revoke"), self.revoke_key),
            (b"GET", re.compile(r"/admin/v1/usage/summary"), self.summary),
            (b"GET", re.compile(r"/admin/v1/overview"), self.overview),
            (b"GET", re.compile(r"/admin/v1/requests"), self.requests),
            (b"GET", re.compile(r"/admin/v1/routing"), self.routing),
            (b"POST", re.compile(r"/admin/v1/whatif"), self.whatif),
            (b"GET", re.compile(r"/admin/v1/alerts"), self.alerts),
        ]

    # -- dispatch and authentication ----------------------------------------

    def serve(self, request: IRequest) -> None:
        """Answer one ``/admin/v1`` request (always finishes it)."""
        path = request.path.decode("utf-8", "replace")
        method = b"GET" if request.method == b"HEAD" else request.method
        found: Optional[tuple[Handler, re.Match[str]]] = None
        allowed = False
        for verb, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is not None:
                allowed = True
                if verb == method:
                    found = (handler, match)
                    break
        if found is None:
            error = ApiError(405, "Method not allowed here", "method_not_allowed") if allowed else ApiError(
                404, f"Unknown admin API path {path!r} (see /admin/v1/openapi.json)", "not_found"
            )
            respond_json(request, error.status, error.body())
            return
        handler, match = found
        content = request.content
        body = content.read() if content is not None else b""
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1").split(";")[0].strip().lower()
        call = _Call(request, method, request.args or {}, match, body, ctype)
        d = self._authorize(request, method)
        d.addCallback(lambda _: handler(call))
        d.addCallbacks(lambda answer: self._answer(request, answer), lambda f: self._failed(request, f))

    def _authorize(self, request: IRequest, method: bytes) -> Deferred[Any]:
        key = presented_key(request)
        if key is None:
            session = self.session_of(request)
            if session is None:
                raise_ = ApiError(401, "The admin API requires an admin key: Authorization: Bearer <key>", "invalid_api_key")
                return _failed(raise_)
            if method in _MUTATING and not session.csrf_ok(_header(request, b"x-csrf-token")):
                return _failed(ApiError(403, "A dashboard change needs the session's X-CSRF-Token header", "csrf_failed"))
            return succeed(session)
        d: Deferred[Any] = Deferred()
        found = self.keys.lookup(key)
        if isinstance(found, Deferred):
            found.chainDeferred(d)
        else:
            d.callback(found)

        def check(info: Optional[KeyInfo]) -> KeyInfo:
            if info is None:
                raise ApiError(401, "Invalid API key provided.", "invalid_api_key")
            if not info.admin:
                raise ApiError(403, "This key is not an admin key (dd0c-route keys create --admin)", "not_admin")
            return info

        return d.addCallback(check)

    def session_of(self, request: IRequest) -> Optional[Session]:
        cookie = request.getCookie(COOKIE)
        return self.sessions.get(cookie.decode("ascii", "replace") if cookie else None)

    def _answer(self, request: IRequest, answer: Any) -> None:
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        if not request.finished:  # type: ignore[attr-defined]
            respond_json(request, status, body)

    def _failed(self, request: IRequest, failure: Any) -> None:
        error = failure.value
        if not isinstance(error, ApiError):
            log.failure("admin API call failed", failure)
            error = ApiError(500, "The admin API failed (see the proxy's log)", "internal_error")
        if not request.finished:  # type: ignore[attr-defined]
            respond_json(request, error.status, error.body())

    # -- keys -------------------------------------------------------------------

    def openapi(self, call: _Call) -> Any:
        text = resources.files("dd0c_route.admin").joinpath("openapi.json").read_text("utf-8")
        return json.loads(text)

    @inlineCallbacks
    def list_keys(self, call: _Call) -> Any:
        infos = yield self.run(self.store.list_keys)
        return {"data": [key_json(info) for info in infos]}

    @inlineCallbacks
    def create_key(self, call: _Call) -> Any:
        body = call.json()
        name = _text(body, "name", required=True)
        assert name is not None
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise ApiError(400, "admin must be true or false", "invalid_value", "admin")
        key = generate_key()
        info = KeyInfo(
            key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=self.clock.seconds(),
            team=_text(body, "team"), admin=admin, daily_usd=_money(body.get("daily_usd"), "daily_usd"),
            monthly_usd=_money(body.get("monthly_usd"), "monthly_usd"),
        )
        try:
            yield self.run(self.store.add_key, info)
        except KeyNameTaken:
            raise ApiError(409, f"An active key is already named {name!r}", "name_taken", "name") from None
        return 201, {**key_json(info), "key": key}

    @inlineCallbacks
    def _find(self, ident: str) -> Any:
        infos = yield self.run(self.store.list_keys)
        for info in infos:
            if info.key_id == ident:
                return info
        named = [info for info in infos if info.name == ident]
        active = [info for info in named if info.active]
        if active or named:
            return (active or named)[-1]
        raise ApiError(404, f"No key with id or name {ident!r}", "key_not_found", "key")

    @inlineCallbacks
    def update_key(self, call: _Call) -> Any:
        body = call.json()
        unknown = set(body) - {"team", "daily_usd", "monthly_usd"}
        if unknown:
            raise ApiError(400, f"Unknown field {sorted(unknown)[0]!r} (team, daily_usd, monthly_usd)", "invalid_value")
        info = yield self._find(call.match["key"])
        changes: dict[str, Any] = {}
        if "team" in body:
            changes["team"] = _text(body, "team")
        for name in ("daily_usd", "monthly_usd"):
            if name in body:
                changes[name] = _money(body[name], name)
        info = attrs.evolve(info, **changes)
        yield self.run(self.store.update_key, info)
        yield self.keys.refresh()
        return key_json(info)

    @inlineCallbacks
    def revoke_key(self, call: _Call) -> Any:
        info = yield self._find(call.match["key"])
        revoked = yield self.run(self.store.revoke, info.key_id, self.clock.seconds())
        # The cache forgets it now rather than after its TTL.
        yield self.keys.refresh()
        self.sessions.revoke_key(info.key_id)
        return key_json(revoked)

    # -- usage --------------------------------------------------------------------

    def _range(self, call: _Call, default_start: Optional[float] = None) -> tuple[float, float]:
        now = self.clock.seconds()
        start = parse_time(call.arg("from"), "from", period_bounds("monthly", now)[0] if default_start is None else default_start)
        end = parse_time(call.arg("to"), "to", now + 1)
        if end <= start:
            raise ApiError(400, "to must be after from", "invalid_time", "to")
        return start, end

    @inlineCallbacks
    def summary(self, call: _Call) -> Any:
        try:
            group_by = parse_summary_group_by(call.arg("group_by") or "model")
        except ValueError as why:
            raise ApiError(400, str(why), "invalid_group_by", "group_by") from None
        start, end = self._range(call)
        summary = yield self.run(self.store.usage_summary, start, end, group_by)
        return {"from": start, "to": end, **summary.to_json()}

    @inlineCallbacks
    def overview(self, call: _Call) -> Any:
        now = self.clock.seconds()
        day_start, month = period_bounds("daily", now)[0], period_bounds("monthly", now)[0]
        today = yield self.run(self.store.usage_summary, day_start, now + 1, ("day",))
        this_month = yield self.run(self.store.usage_summary, month, now + 1, ("day",))
        budgets = [
            {"scope": b.scope, "daily_usd": None if b.daily_usd is None else format(b.daily_usd, "f"),
             "monthly_usd": None if b.monthly_usd is None else format(b.monthly_usd, "f")}
            for b in self.config.budgets
        ]
        return {
            "today": today.totals.to_json(), "month": this_month.totals.to_json(),
            "by_day": [row.to_json(("day",)) for row in this_month.groups],
            "budgets": budgets, "routing_mode": self.config.routing.mode,
        }

    @inlineCallbacks
    def requests(self, call: _Call) -> Any:
        start, end = self._range(call, default_start=0.0)
        limit = _int(call.arg("limit"), "limit", 50)
        offset = _int(call.arg("offset"), "offset", 0)
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit must be 1 to {MAX_PAGE}", "invalid_value", "limit")
        disconnected = call.arg("disconnected")
        if disconnected not in (None, "", "true", "false"):
            raise ApiError(400, "disconnected must be true or false", "invalid_value", "disconnected")
        status = call.arg("status")
        where = RecordFilter(
            start=start, end=end, model=call.arg("model") or None, key_id=call.arg("key_id") or None,
            status=_int(status, "status", 0) if status else None, route=call.arg("route") or None,
            disconnected=None if not disconnected else disconnected == "true", limit=limit + 1, offset=offset,
        )
        records = yield self.run(self.store.query_records, where)
        more = len(records) > limit
        return {
            "data": [log_json(r) for r in records[:limit]], "limit": limit, "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    # -- routing ------------------------------------------------------------------

    @inlineCallbacks
    def routing(self, call: _Call) -> Any:
        start, end = self._range(call)
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
    def whatif(self, call: _Call) -> Any:
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
        start = parse_time(_str_or_none(raw.get("from"), "from"), "from", period_bounds("monthly", self.clock.seconds())[0])
        end = parse_time(_str_or_none(raw.get("to"), "to"), "to", self.clock.seconds() + 1)
        records = yield self.run(self.store.query_records, RecordFilter(start=start, end=end, limit=None))
        infos = yield self.run(self.store.list_keys)
        names = {info.key_id: info.name for info in infos}
        result = replay(candidate, records, self.prices, names)
        return {"from": start, "to": end, **result.to_json()}

    @inlineCallbacks
    def alerts(self, call: _Call) -> Any:
        rows = yield self.run(self.store.list_alerts, 200)
        return {"data": [row.to_json() for row in rows]}


def _rule_json(rule: Any) -> dict[str, Any]:
    match = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(rule.match).items() if v not in ((), None)}
    return {"name": rule.name, "match": match, "model": rule.model, "fallbacks": list(rule.fallbacks)}


def _int(text: Optional[str], name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", "invalid_value", name) from None
    if value < 0:
        raise ApiError(400, f"{name} must not be negative", "invalid_value", name)
    return value


def _str_or_none(value: Any, name: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, f"{name} must be an ISO 8601 string", "invalid_time", name)


def _header(request: IRequest, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
