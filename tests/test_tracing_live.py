"""
Traces, live: the proxy with ``[telemetry] otlp_endpoint`` pointed at a
collector stand-in (a twisted.web server in the test that decodes the
OTLP/HTTP protobuf); one SERVER span per request with the GenAI
attributes, a CLIENT child per upstream attempt whose context reached the
provider as ``traceparent``, the client's trace continued, and no secret in
any exported byte.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from .live import in_thread, start_live_proxy

MESSAGES = [{"role": "user", "content": "A secret-free prompt for tracing"}]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


class _Collector(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.paths: list[bytes] = []

    def render_POST(self, request: Any) -> bytes:
        self.paths.append(request.path)
        self.bodies.append(request.content.read())
        request.setHeader(b"content-type", b"application/x-protobuf")
        return b""


def spans(bodies: list[bytes]) -> list[Any]:
    out = []
    for body in bodies:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                out.extend(scope.spans)
    return out


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


class TracingTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_one_span_per_request_with_genai_attributes(self):
        collector = _Collector()
        port = reactor.listenTCP(0, Site(collector), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = f"http://127.0.0.1:{port.getHost().port}"
        live = yield start_live_proxy(self, extra_config={"telemetry": {"otlp_endpoint": endpoint}})
        client = live.openai_client()
        yield in_thread(
            client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": PARENT}
        )
        stream = yield in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES, stream=True)
        yield in_thread(lambda: list(stream))
        records = yield live.records()
        upstream_parents = [r.headers.get("traceparent") for r in live.openai.state.requests]
        yield live.built.service.stopService()  # the tracer exports what is left at stop

        self.assertTrue(collector.paths and all(p == b"/v1/traces" for p in collector.paths))
        exported = spans(collector.bodies)
        servers = [s for s in exported if s.kind == s.SPAN_KIND_SERVER]
        children = [s for s in exported if s.kind == s.SPAN_KIND_CLIENT]
        self.assertEqual(len(servers), 2)
        self.assertEqual(len(children), 2)
        by_request = {attributes(s)["dd0c.request_id"]: s for s in servers}
        self.assertEqual(set(by_request), {r.request_id for r in records})
        for record in records:
            span = by_request[record.request_id]
            attrs = attributes(span)
            self.assertEqual(attrs["gen_ai.operation.name"], "chat")
            self.assertEqual(attrs["gen_ai.provider.name"], "openai")
            self.assertEqual(attrs["gen_ai.request.model"], record.model_requested)
            self.assertEqual(attrs["gen_ai.response.model"], record.model)
            self.assertEqual(attrs["gen_ai.usage.input_tokens"], record.prompt_tokens)
            self.assertEqual(attrs["gen_ai.usage.output_tokens"], record.completion_tokens)
            self.assertEqual(attrs["dd0c.route"], "default")
            self.assertAlmostEqual(attrs["dd0c.cost_usd"], float(record.cost_usd))
            self.assertEqual(span.name, f"chat {record.model}")
            (child,) = [c for c in children if c.parent_span_id == span.span_id]
            self.assertEqual(child.trace_id, span.trace_id)
        first = by_request[records[0].request_id]
        self.assertEqual(first.trace_id.hex(), CLIENT_TRACE)
        self.assertNotEqual(by_request[records[1].request_id].trace_id.hex(), CLIENT_TRACE)
        # The provider got each attempt's span context, never the client's own header.
        for parent, child in zip(upstream_parents, sorted(children, key=lambda c: c.start_time_unix_nano), strict=True):
            self.assertEqual(len(parent), 1)
            self.assertTrue(parent[0].startswith(f"00-{child.trace_id.hex()}-{child.span_id.hex()}-"), parent)
        everything = b"".join(collector.bodies)
        for secret in (live.key, *live.provider_keys.values()):
            self.assertNotIn(secret.encode(), everything)
        self.assertNotIn(MESSAGES[0]["content"].encode(), everything)
