# Tests: tests/test_metrics.py, tests/test_admin_live.py
"""
Prometheus metrics, from the one record each request ends in.

Counters and histograms are updated by :meth:`ProxyMetrics.observe`, a
record subscriber: once per finished request, a few dict lookups and
additions (microseconds), never per chunk.  Gauges (requests and streams
in flight, upstream connections, breaker state, ledger backlog, key cache)
are read when ``/metrics`` is scraped, by callables registered with
:meth:`ProxyMetrics.gauge`, so the hot path pays nothing for them.

Everything lives in a :class:`CollectorRegistry` of our own, not
``prometheus_client``'s global one, so tests (and two proxies in one
process) never share series.

Label cardinality is bounded whatever clients send: ``endpoint`` is one of
the known endpoints or ``other``; ``model`` is one of the first
``max_models`` names seen (the configured ones first) or ``other``;
``provider`` and ``route`` come from the config; ``status`` is the HTTP
status code; ``key_id`` is a label only with ``[admin] metrics_per_key``.

Workers (issue #14): each worker process will own one of these registries;
aggregation across workers belongs there (prometheus_client's multiprocess
mode, or the parent summing the workers' expositions).  Nothing here
assumes a single process beyond the registry itself.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..ledger.records import UsageRecord

__all__ = ["KNOWN_ENDPOINTS", "ProxyMetrics"]

#: Endpoints that get their own label value; any other path is ``other``.
KNOWN_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/models", "/v1/messages",
        "/v1/messages/count_tokens", "/v1/completions", "/v1/moderations",
    }
)

_TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

_REJECTIONS = frozenset({"budget_exceeded", "rate_limited"})

Reading = Union[Optional[float], Mapping[str, float]]


class _Bounded:
    """At most ``cap`` distinct values (the seeded ones first); the rest are ``other``."""

    def __init__(self, seed: Iterable[str], cap: int) -> None:
        self._seen: set[str] = set()
        self._cap = cap
        for value in seed:
            self(value)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._cap:
            self._seen.add(value)
            return value
        return "other"


class _ReadOnScrape:
    """A collector whose samples are read from callables at scrape time."""

    def __init__(self) -> None:
        self.readers: list[tuple[str, str, str, Optional[str], Callable[[], Reading]]] = []

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for kind, name, doc, label, read in self.readers:
            value = read()
            if value is None:
                continue
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(name, doc, labels=[label] if label else None)
            else:
                family = GaugeMetricFamily(name, doc, labels=[label] if label else None)
            if isinstance(value, Mapping):
                for key, number in sorted(value.items()):
                    family.add_metric([key], number)
            else:
                family.add_metric([], value)
            yield family


class ProxyMetrics:
    """The proxy's metrics; :meth:`observe` is the record subscriber."""

    def __init__(self, *, per_key: bool = False, models: Iterable[str] = (), max_models: int = 64) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=False)
        self.per_key = per_key
        self._model = _Bounded(models, max_models)
        request_labels = ["endpoint", "provider", "model", "status", "route"] + (["key_id"] if per_key else [])
        self.requests = Counter(
            "dd0c_route_requests", "Finished requests, by what served them and how they ended (HTTP status).",
            request_labels, registry=registry,
        )
        by_model = ["provider", "model"]
        self.prompt_tokens = Counter("dd0c_route_prompt_tokens", "Prompt (input) tokens billed.", by_model, registry=registry)
        self.completion_tokens = Counter(
            "dd0c_route_completion_tokens", "Completion (output) tokens billed.", by_model, registry=registry
        )
        self.cost = Counter("dd0c_route_cost_usd", "What the served requests cost, in USD.", by_model, registry=registry)
        self.cost_requested = Counter(
            "dd0c_route_cost_requested_usd",
            "What the requests would have cost on the model the client asked for (savings = requested - cost).",
            by_model, registry=registry,
        )
        self.ttfb = Histogram(
            "dd0c_route_ttfb_seconds", "Time from request arrival to the first byte of the answer.",
            ["endpoint", "provider"], buckets=_TTFB_BUCKETS, registry=registry,
        )
        self.latency = Histogram(
            "dd0c_route_request_duration_seconds", "Time from request arrival to its end.",
            ["endpoint", "provider"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.disconnects = Counter(
            "dd0c_route_client_disconnects", "Requests the client left before the end.", ["endpoint"], registry=registry
        )
        self.fallbacks = Counter(
            "dd0c_route_fallbacks", "Attempts that failed over to the next model or provider.",
            ["provider", "reason"], registry=registry,
        )
        self.rejections = Counter(
            "dd0c_route_budget_rejections", "Requests refused by a budget or rate limit.", ["reason"], registry=registry
        )
        self._on_scrape = _ReadOnScrape()
        registry.register(self._on_scrape)  # type: ignore[arg-type]
        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    # -- scrape-time readings --------------------------------------------

    def gauge(self, name: str, doc: str, read: Callable[[], Reading], label: Optional[str] = None) -> None:
        """A gauge read at scrape time (None: not exported; a mapping: one sample per ``label`` value)."""
        self._on_scrape.readers.append(("gauge", name, doc, label, read))

    def counter(self, name: str, doc: str, read: Callable[[], Reading], label: Optional[str] = None) -> None:
        """A monotonic count kept elsewhere (say the key cache's hits), read at scrape time."""
        self._on_scrape.readers.append(("counter", name, doc, label, read))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    # -- the record subscriber ---------------------------------------------

    def observe(self, record: UsageRecord) -> None:
        """Count one finished request (runs on the reactor, once per request)."""
        endpoint = record.endpoint if record.endpoint in KNOWN_ENDPOINTS else "other"
        provider = record.provider or "none"
        model = self._model(record.model or record.model_requested or "none")
        key = (endpoint, provider, model, record.status, record.route_rule, record.key_id if self.per_key else None)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make_children(endpoint, provider, model, record)
        requests, prompt, completion, cost, requested, ttfb, latency = children
        requests.inc()
        if record.prompt_tokens:
            prompt.inc(record.prompt_tokens)
        if record.completion_tokens:
            completion.inc(record.completion_tokens)
        if record.cost_usd:
            cost.inc(float(record.cost_usd))
        if record.cost_requested_usd:
            requested.inc(float(record.cost_requested_usd))
        if record.ttfb_ms is not None:
            ttfb.observe(record.ttfb_ms / 1000)
        latency.observe(record.latency_ms / 1000)
        if record.disconnected:
            self.disconnects.labels(endpoint).inc()
        if record.attempts:
            for attempt in record.attempts.split(",")[:-1]:
                served, _, reason = attempt.rpartition(":")
                self.fallbacks.labels(served.rpartition("@")[2] or "none", reason or "unknown").inc()
        if record.error_type in _REJECTIONS:
            self.rejections.labels(record.error_type).inc()

    def _make_children(self, endpoint: str, provider: str, model: str, record: UsageRecord) -> tuple[Any, ...]:
        labels = [endpoint, provider, model, str(record.status), record.route_rule or "default"]
        if self.per_key:
            labels.append(record.key_id or "none")
        return (
            self.requests.labels(*labels),
            self.prompt_tokens.labels(provider, model),
            self.completion_tokens.labels(provider, model),
            self.cost.labels(provider, model),
            self.cost_requested.labels(provider, model),
            self.ttfb.labels(endpoint, provider),
            self.latency.labels(endpoint, provider),
        )
