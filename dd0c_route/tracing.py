# Tests: tests/test_tracing_live.py
"""
OpenTelemetry traces, opt-in: ``[telemetry] otlp_endpoint``.

This module is imported only when tracing is configured, so with it off the
hot path pays one ``app.tracer is None`` test per request: no import, no
span object.  With it on, each request is one SERVER span (started when
the request arrives, continuing an inbound ``traceparent``), each upstream
attempt a CLIENT child span whose context is sent upstream as
``traceparent``, and the request span is finished from the usage record
(a record subscriber) with the GenAI semantic-convention attributes:
``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens``/``output_tokens``, plus ``dd0c.route`` and
``dd0c.cost_usd``.

Spans are exported by the SDK's ``BatchSpanProcessor``, whose export runs
on its own thread, to ``<otlp_endpoint>/v1/traces`` (OTLP/HTTP protobuf).
The standard ``OTEL_*`` variables apply: sampler (``OTEL_TRACES_SAMPLER``),
resource and service name, exporter headers and timeouts, batch sizes.

No attribute holds a key or message content: every value comes from the
usage record (whose client-controlled text is already redacted) or from
the config, never from headers or bodies.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from twisted.web.iweb import IRequest

from .config import Config
from .ledger.records import UsageRecord
from .metering.meter import RequestInfo

__all__ = ["RequestTracer", "operation_name"]

_PROPAGATOR = TraceContextTextMapPropagator()

_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/responses": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}


def operation_name(endpoint: str) -> str:
    """The GenAI ``gen_ai.operation.name`` of an endpoint (or the endpoint's last part)."""
    return _OPERATIONS.get(endpoint) or endpoint.rsplit("/", 1)[-1] or "request"


def _nanos(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _resource() -> Resource:
    # The operator's OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return Resource.create({} if named else {"service.name": "dd0c-route"})


class RequestTracer:
    """One span per request, one child per upstream attempt; see the module docstring."""

    def __init__(self, config: Config, exporter: Optional[SpanExporter] = None) -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = config.telemetry.otlp_endpoint or ""
            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        self.provider = TracerProvider(resource=_resource())
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("dd0c_route")
        self._kinds = {provider.name: provider.kind for provider in config.providers}
        #: Request spans by request id, until their record arrives.
        self._open: dict[str, Any] = {}

    def start(self, info: RequestInfo, request: IRequest) -> None:
        """A request arrived: open its span (continuing the client's trace, if any)."""
        context = None
        parent = request.requestHeaders.getRawHeaders(b"traceparent")
        if parent:
            carrier = {"traceparent": parent[0].decode("latin-1")}
            state = request.requestHeaders.getRawHeaders(b"tracestate")
            if state:
                carrier["tracestate"] = state[0].decode("latin-1")
            context = _PROPAGATOR.extract(carrier)
        self._open[info.request_id] = self._tracer.start_span(
            "dd0c-route request", context=context, kind=SpanKind.SERVER, start_time=_nanos(info.started)
        )

    def attempt(self, info: RequestInfo, headers: dict[bytes, list[bytes]]) -> Callable[[int, Optional[str]], None]:
        """An upstream attempt is sent: a child span, its context in ``headers``; returns its end."""
        parent = self._open.get(info.request_id)
        operation = operation_name(info.endpoint)
        model = info.model or ""
        span = self._tracer.start_span(
            f"{operation} {model}".strip(),
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": self._kinds.get(info.provider or "", "unknown"),
                "gen_ai.request.model": model,
                "dd0c.provider": info.provider or "",
            },
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        for name, value in carrier.items():
            headers[name.encode("latin-1")] = [value.encode("latin-1")]

        def end(status: int, failure: Optional[str]) -> None:
            if status:
                span.set_attribute("http.response.status_code", status)
            if failure is not None or status >= 500 or status == 0:
                span.set_attribute("error.type", failure or str(status or "no_response"))
                span.set_status(Status(StatusCode.ERROR))
            span.end()

        return end

    def finish(self, record: UsageRecord) -> None:
        """The record subscriber: the request span gets its attributes and ends."""
        span = self._open.pop(record.request_id, None)
        if span is None:
            return
        operation = operation_name(record.endpoint)
        model = record.model or record.model_requested or ""
        span.update_name(f"{operation} {model}".strip())
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self._kinds.get(record.provider or "", "unknown"),
            "http.response.status_code": record.status,
            "url.path": record.endpoint,
            "dd0c.request_id": record.request_id,
            "dd0c.route": record.route_rule or "default",
            "dd0c.stream": record.stream,
        }
        optional = {
            "gen_ai.request.model": record.model_requested,
            "gen_ai.response.model": record.model,
            "gen_ai.response.id": record.response_id,
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "dd0c.cost_usd": None if record.cost_usd is None else float(record.cost_usd),
            "dd0c.provider": record.provider,
            "dd0c.key_id": record.key_id,
            "dd0c.client_request_id": record.client_request_id,
            "dd0c.attempts": record.attempts,
            "error.type": record.error_type,
        }
        attributes.update({name: value for name, value in optional.items() if value is not None})
        if record.disconnected:
            attributes["dd0c.client_disconnected"] = True
        span.set_attributes(attributes)
        if record.status >= 500 or record.status == 0:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_nanos(record.created_at + record.latency_ms / 1000))

    def shutdown(self) -> None:
        """Export what is left and stop the export thread (blocking: call it in a thread)."""
        self.provider.shutdown()
