# Tests: tests/test_fakeprovider.py
"""
A fake Anthropic Messages API, answering with the real event sequence
(``message_start``, ``content_block_*``, ``ping``, ``message_delta``,
``message_stop``) and error shapes, so the proxy's translation and metering
are tested against what Anthropic actually sends.
"""

from __future__ import annotations

__all__ = ["FakeAnthropic", "anthropic_error"]

import json
from typing import Any, Callable, Iterator, Optional, Union

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import NOT_DONE_YET, Request

from ._fakehttp import Event, Exchange, json_body, serve
from ._fakestate import (
    FakeProviderState,
    Scenario,
    _flatten,
    argument_fragments,
    reply_text_for,
    split_reply,
)

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_MODELS = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022", "claude-opus-4-20250514")


def anthropic_error(status: int, message: Optional[str] = None) -> dict[str, Any]:
    """The body Anthropic sends with ``status``: ``{"type": "error", "error": {type, message}}``."""
    kind, default = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
    )
    return {"type": "error", "error": {"type": kind, "message": message or default}}


def _event(name: str, value: dict[str, Any], content: bool = False) -> Event:
    return Event(b"event: " + name.encode("ascii") + b"\ndata: " + json_body(value) + b"\n\n",
                 content)


def _bearer(authorization: Optional[str]) -> Optional[str]:
    """
    The key of an ``Authorization: Bearer`` header: the ``anthropic`` SDK
    (2.x) sends its API key that way instead of ``x-api-key``.
    """
    if authorization and authorization.startswith("Bearer "):
        return authorization[len("Bearer "):]
    return None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


@attrs.frozen
class FakeAnthropic:
    """Serves the Anthropic endpoints under ``/v1`` from a shared state."""

    reactor: IReactorTime
    state: FakeProviderState

    def render(self, request: Request) -> Union[bytes, int]:
        exchange = Exchange.begin(self.reactor, request, self.state)
        path = request.path.decode("utf-8", "replace").rstrip("/")
        handlers: dict[tuple[bytes, str], Callable[[Exchange, dict[str, Any]], None]] = {
            (b"POST", "/v1/messages"): self._messages,
            (b"POST", "/v1/messages/count_tokens"): self._count_tokens,
            (b"GET", "/v1/models"): self._models,
        }
        handler = handlers.get((request.method, path))
        if handler is None:
            self._fail(exchange, 404, f"Not found: {path}")
            return NOT_DONE_YET
        key = exchange.header("x-api-key") or _bearer(exchange.header("authorization"))
        if not key:
            self._fail(exchange, 401, "x-api-key header is required")
            return NOT_DONE_YET
        if self.state.expected_key is not None and key != self.state.expected_key:
            self._fail(exchange, 401)
            return NOT_DONE_YET
        if not exchange.header("anthropic-version"):
            self._fail(exchange, 400, "anthropic-version: header is required")
            return NOT_DONE_YET
        body: dict[str, Any] = {}
        if request.method == b"POST":
            parsed = exchange.json()
            if not isinstance(parsed, dict):
                self._fail(exchange, 400, "There was an error parsing the body: invalid JSON")
                return NOT_DONE_YET
            if not isinstance(parsed.get("model"), str):
                self._fail(exchange, 400, "model: Field required")
                return NOT_DONE_YET
            messages = parsed.get("messages")
            if not isinstance(messages, list) or not messages:
                self._fail(exchange, 400, "messages: Field required")
                return NOT_DONE_YET
            body = parsed
        handler(exchange, body)
        return NOT_DONE_YET

    def _fail(self, exchange: Exchange, status: int, message: Optional[str] = None) -> None:
        exchange.send(status, json_body(anthropic_error(status, message)), {})

    def _serve(
        self,
        exchange: Exchange,
        body: Callable[[Scenario], Any],
        stream: Optional[Callable[[Scenario], Iterator[Event]]] = None,
        queued: bool = True,
    ) -> None:
        scenario = self.state.next_scenario() if queued else self.state.default_scenario
        serve(
            exchange,
            scenario,
            error=anthropic_error,
            base_headers={"request-id": self.state.next_id("req_")},
            body=lambda: body(scenario),
            stream=(lambda: stream(scenario)) if stream is not None else None,
        )

    def _input_tokens(self, request: dict[str, Any]) -> int:
        messages = list(request["messages"])
        system = request.get("system")
        if system:
            messages.insert(0, {"role": "system", "content": _flatten(system)})
        return self.state.counter.count_prompt(request["model"], messages)

    def _count_tokens(self, exchange: Exchange, request: dict[str, Any]) -> None:
        tokens = self._input_tokens(request)
        self._serve(exchange, lambda scenario: {"input_tokens": tokens})

    def _messages(self, exchange: Exchange, request: dict[str, Any]) -> None:
        if not isinstance(request.get("max_tokens"), int):
            self._fail(exchange, 400, "max_tokens: Field required")
            return
        model: str = request["model"]
        counter = self.state.counter
        input_tokens = self._input_tokens(request)
        last_user = next(
            (_flatten(m.get("content")) for m in reversed(request["messages"])
             if isinstance(m, dict) and m.get("role") == "user"),
            "",
        )
        message_id = self.state.next_id("msg_")

        def output_tokens(scenario: Scenario) -> int:
            if scenario.tool_calls:
                return sum(
                    counter.count_text(model, name) + counter.count_text(model, arguments)
                    for name, arguments in scenario.tool_calls
                )
            return counter.count_text(model, reply_text_for(scenario, last_user))

        def tools(scenario: Scenario) -> list[tuple[str, str, str]]:
            return [(self.state.next_id("toolu_"), n, a) for n, a in scenario.tool_calls]

        def stop_reason(scenario: Scenario) -> str:
            return "tool_use" if scenario.tool_calls else "end_turn"

        def message(scenario: Scenario, content: list[Any], usage: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason(scenario) if content else None,
                "stop_sequence": None,
                "usage": usage,
            }

        def whole(scenario: Scenario) -> dict[str, Any]:
            content: list[dict[str, Any]]
            if scenario.tool_calls:
                content = [
                    {"type": "tool_use", "id": i, "name": n, "input": json.loads(a or "{}")}
                    for i, n, a in tools(scenario)
                ]
            else:
                content = [{"type": "text", "text": reply_text_for(scenario, last_user)}]
            return message(scenario, content, _usage(input_tokens, output_tokens(scenario)))

        def events(scenario: Scenario) -> Iterator[Event]:
            yield _event(
                "message_start",
                {"type": "message_start", "message": message(scenario, [], _usage(input_tokens, 1))},
            )
            blocks: list[tuple[dict[str, Any], Iterator[dict[str, Any]]]]
            if scenario.tool_calls:
                blocks = [
                    (
                        {"type": "tool_use", "id": i, "name": n, "input": {}},
                        ({"type": "input_json_delta", "partial_json": f}
                         for f in argument_fragments(a)),
                    )
                    for i, n, a in tools(scenario)
                ]
            else:
                text = reply_text_for(scenario, last_user)
                blocks = [
                    (
                        {"type": "text", "text": ""},
                        ({"type": "text_delta", "text": p} for p in split_reply(scenario, text)),
                    )
                ]
            for index, (start, deltas) in enumerate(blocks):
                yield _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                if index == 0:
                    yield _event("ping", {"type": "ping"})
                for delta in deltas:
                    yield _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                        content=True,
                    )
                if scenario.mid_stream_error is not None:
                    yield _event("error", {"type": "error", "error": scenario.mid_stream_error})
                    return
                yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
            yield _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(scenario), "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens(scenario)},
                },
            )
            yield _event("message_stop", {"type": "message_stop"})

        self._serve(exchange, whole, events if request.get("stream") else None)

    def _models(self, exchange: Exchange, request: dict[str, Any]) -> None:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in _MODELS
        ]
        self._serve(
            exchange,
            lambda scenario: {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
            },
            queued=False,
        )
