# Tests: tests/test_fakeprovider.py
"""
A fake OpenAI API, answering in the exact shapes of OpenAI's published
schema (``CreateChatCompletionResponse``, ``CreateChatCompletionStreamResponse``,
``CreateEmbeddingResponse``...), so that the proxy is tested against what
the real provider sends, chunk framing and usage reports included.
"""

from __future__ import annotations

__all__ = ["FakeOpenAI", "openai_error"]

import base64
import hashlib
import json
import math
import struct
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
from .fake_openai_responses import responses_answer

_ERRORS: dict[int, tuple[str, Optional[str], str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}

_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small")
_FINGERPRINT = "fp_fake00000"
_EMBEDDING_DIMENSIONS = 8


def openai_error(
    status: int, message: Optional[str] = None, *, param: Optional[str] = None
) -> dict[str, Any]:
    """The body OpenAI sends with ``status``: ``{"error": {message, type, param, code}}``."""
    kind, code, default = _ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"),
    )
    return {"error": {"message": message or default, "type": kind, "param": param, "code": code}}


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _sse(value: Any) -> Event:
    return Event(b"data: " + json_body(value) + b"\n\n")


def _embedding(item: object, dimensions: int) -> list[float]:
    """A deterministic unit vector for one input: same text, same vector."""
    seed = hashlib.sha256(json.dumps(item).encode("utf-8")).digest()
    raw = [(seed[i % len(seed)] - 127.5) / 127.5 + i * 1e-3 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


@attrs.frozen
class FakeOpenAI:
    """Serves the OpenAI endpoints under ``/v1`` from a shared state."""

    reactor: IReactorTime
    state: FakeProviderState

    def render(self, request: Request) -> Union[bytes, int]:
        exchange = Exchange.begin(self.reactor, request, self.state)
        path = request.path.decode("utf-8", "replace").rstrip("/")
        method = request.method
        handlers = {
            (b"POST", "/v1/chat/completions"): self._chat,
            (b"POST", "/v1/completions"): self._completions,
            (b"POST", "/v1/embeddings"): self._embeddings,
            (b"POST", "/v1/responses"): self._responses,
            (b"GET", "/v1/models"): self._models,
        }
        handler = handlers.get((method, path))
        if handler is None and method == b"GET" and path.startswith("/v1/models/"):
            handler = self._models
        if handler is None:
            exchange.send(404, json_body(openai_error(404, f"Unknown request URL: {path}")), {})
            return NOT_DONE_YET
        if not self._authorized(exchange):
            exchange.send(401, json_body(openai_error(401)), {})
            return NOT_DONE_YET
        body: dict[str, Any] = {}
        if method == b"POST":
            parsed = self._parse(exchange)
            if parsed is None:
                return NOT_DONE_YET
            body = parsed
        handler(exchange, body, path)
        return NOT_DONE_YET

    def _authorized(self, exchange: Exchange) -> bool:
        if self.state.expected_key is None:
            return True
        return exchange.header("authorization") == f"Bearer {self.state.expected_key}"

    def _parse(self, exchange: Exchange) -> Optional[dict[str, Any]]:
        body = exchange.json()
        if not isinstance(body, dict):
            exchange.send(
                400,
                json_body(
                    openai_error(
                        400,
                        "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly. The OpenAI API "
                        "expects a JSON payload, but what was sent was not valid JSON.",
                    )
                ),
                {},
            )
            return None
        if not isinstance(body.get("model"), str):
            exchange.send(
                400, json_body(openai_error(400, "you must provide a model parameter")), {}
            )
            return None
        return body

    def _invalid(self, exchange: Exchange, param: str, message: str) -> None:
        exchange.send(400, json_body(openai_error(400, message, param=param)), {})

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
            error=openai_error,
            base_headers={"x-request-id": self.state.next_id("req_", 32)},
            body=lambda: body(scenario),
            stream=(lambda: stream(scenario)) if stream is not None else None,
        )

    def _chat(self, exchange: Exchange, request: dict[str, Any], path: str) -> None:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            self._invalid(exchange, "messages", "Invalid 'messages': expected a non-empty array.")
            return
        model: str = request["model"]
        last_user = next(
            (_flatten(m.get("content")) for m in reversed(messages)
             if isinstance(m, dict) and m.get("role") == "user"),
            "",
        )
        counter = self.state.counter
        prompt_tokens = counter.count_prompt(model, messages)
        chat_id = self.state.next_id("chatcmpl-")
        created = int(self.reactor.seconds())

        def tool_calls(scenario: Scenario) -> list[dict[str, Any]]:
            return [
                {
                    "id": self.state.next_id("call_"),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for name, arguments in scenario.tool_calls
            ]

        def completion_tokens(scenario: Scenario, text: str) -> int:
            if scenario.tool_calls:
                return sum(
                    counter.count_text(model, name) + counter.count_text(model, arguments)
                    for name, arguments in scenario.tool_calls
                )
            return counter.count_text(model, text)

        def whole(scenario: Scenario) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
            if scenario.tool_calls:
                message["tool_calls"] = tool_calls(scenario)
                text = ""
            else:
                text = reply_text_for(scenario, last_user)
                message["content"] = text
            return {
                "id": chat_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": _FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if scenario.tool_calls else "stop",
                    }
                ],
                "usage": _usage(prompt_tokens, completion_tokens(scenario, text)),
            }

        options = request.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            value = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": _FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                value["usage"] = None
            value.update(extra)
            return value

        def delta(content: dict[str, Any], finish: Optional[str] = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

        def events(scenario: Scenario) -> Iterator[Event]:
            text = ""
            if scenario.tool_calls:
                yield _sse(chunk(delta({"role": "assistant", "content": None, "refusal": None})))
                for index, call in enumerate(tool_calls(scenario)):
                    header = {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                    yield Event(_sse(chunk(delta({"tool_calls": [header]}))).data, True)
                    for fragment in argument_fragments(call["function"]["arguments"]):
                        piece = {"index": index, "function": {"arguments": fragment}}
                        yield Event(_sse(chunk(delta({"tool_calls": [piece]}))).data, True)
            else:
                yield _sse(chunk(delta({"role": "assistant", "content": "", "refusal": None})))
                text = reply_text_for(scenario, last_user)
                for words in split_reply(scenario, text):
                    yield Event(_sse(chunk(delta({"content": words}))).data, True)
            if scenario.mid_stream_error is not None:
                yield _sse({"error": scenario.mid_stream_error})
                return
            finish = "tool_calls" if scenario.tool_calls else "stop"
            yield _sse(chunk(delta({}, finish)))
            if include_usage:
                usage = _usage(prompt_tokens, completion_tokens(scenario, text))
                yield _sse(chunk([], usage=usage))
            yield Event(b"data: [DONE]\n\n")

        self._serve(exchange, whole, events if request.get("stream") else None)

    def _responses(self, exchange: Exchange, request: dict[str, Any], path: str) -> None:
        if not isinstance(request.get("input"), (str, list)):
            return self._invalid(exchange, "input", "Invalid 'input': expected a string or an array.")
        whole, events = responses_answer(self.state, int(self.reactor.seconds()), request)
        self._serve(exchange, whole, events if request.get("stream") else None)

    def _completions(self, exchange: Exchange, request: dict[str, Any], path: str) -> None:
        prompt = request.get("prompt", "")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        if not isinstance(prompt, str):
            self._invalid(exchange, "prompt", "Invalid 'prompt': expected a string.")
            return
        model: str = request["model"]
        counter = self.state.counter
        prompt_tokens = counter.count_text(model, prompt)
        completion_id = self.state.next_id("cmpl-")
        created = int(self.reactor.seconds())

        def choice(text: str, finish: Optional[str]) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": _FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }

        def whole(scenario: Scenario) -> dict[str, Any]:
            text = reply_text_for(scenario, prompt)
            value = choice(text, "stop")
            value["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": counter.count_text(model, text),
                "total_tokens": prompt_tokens + counter.count_text(model, text),
            }
            return value

        def events(scenario: Scenario) -> Iterator[Event]:
            for piece in split_reply(scenario, reply_text_for(scenario, prompt)):
                yield Event(_sse(choice(piece, None)).data, True)
            if scenario.mid_stream_error is not None:
                yield _sse({"error": scenario.mid_stream_error})
                return
            yield _sse(choice("", "stop"))
            yield Event(b"data: [DONE]\n\n")

        self._serve(exchange, whole, events if request.get("stream") else None)

    def _embeddings(self, exchange: Exchange, request: dict[str, Any], path: str) -> None:
        raw = request.get("input")
        if isinstance(raw, str) or (
            isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)
        ):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            self._invalid(exchange, "input", "Invalid 'input': expected a string or array.")
            return
        model: str = request["model"]
        dimensions = request.get("dimensions") or _EMBEDDING_DIMENSIONS
        as_base64 = request.get("encoding_format") == "base64"
        tokens = sum(
            self.state.counter.count_text(model, item) if isinstance(item, str) else len(item)
            for item in inputs
        )

        def encode(vector: list[float]) -> Union[str, list[float]]:
            if as_base64:
                return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            return vector

        def whole(scenario: Scenario) -> dict[str, Any]:
            return {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": encode(_embedding(item, dimensions))}
                    for i, item in enumerate(inputs)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }

        self._serve(exchange, whole)

    def _models(self, exchange: Exchange, request: dict[str, Any], path: str) -> None:
        def model(name: str) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": 1700000000, "owned_by": "system"}

        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/"):]
            return self._serve(exchange, lambda scenario: model(name))
        self._serve(exchange, lambda scenario: {"object": "list", "data": [model(m) for m in _MODELS]}, queued=False)
