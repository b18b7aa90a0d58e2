# Tests: tests/test_fakeprovider.py
"""
What a fake provider should do next, and what it has seen.

The fake providers are driven by data, not by subclassing: a test (or, over
HTTP, a test in another process) queues :class:`Scenario` values on a
:class:`FakeProviderState`, and each provider request consumes one.  The same
state records every request and every TCP connection, so a proxy test can
assert what reached the provider and prove that connections were released.
"""

from __future__ import annotations

__all__ = [
    "FakeProviderState",
    "ReceivedRequest",
    "Scenario",
    "SimpleTokenCounter",
    "TokenCounter",
    "argument_fragments",
    "default_counter",
    "reply_text_for",
    "split_reply",
]

import re
from collections import deque
from typing import Any, Callable, Iterator, Optional, Protocol

import attrs
from twisted.internet.defer import Deferred


class TokenCounter(Protocol):
    """
    Counts tokens for the usage the fakes report.

    Pluggable so that a proxy test can use the very counter the proxy meters
    with, and then compare the provider's report with its own count exactly.
    """

    def count_text(self, model: str, text: str) -> int: ...

    def count_prompt(self, model: str, messages: list[dict[str, Any]]) -> int: ...


_PIECES = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]"  # CJK: one each
    r"|\w+|[^\w\s]",
)


def _flatten(content: object) -> str:
    """The text inside a message's content, whatever its shape (str or blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_flatten(part) for part in content)
    if isinstance(content, dict):
        return " ".join(
            _flatten(value)
            for key, value in content.items()
            if key in ("text", "content", "input", "arguments", "name")
        )
    return ""


@attrs.frozen
class SimpleTokenCounter:
    """
    A deterministic stand-in for a real tokenizer: words, punctuation marks
    and CJK characters count one each; every message costs 4 more tokens and
    a prompt 3 more, as in OpenAI's published counting recipe.
    """

    def count_text(self, model: str, text: str) -> int:
        return len(_PIECES.findall(text))

    def count_prompt(self, model: str, messages: list[dict[str, Any]]) -> int:
        total = 3
        for message in messages:
            total += 4 + self.count_text(model, _flatten(message.get("content")))
            total += self.count_text(model, str(message.get("role", "")))
        return total


@attrs.frozen
class _MeteringCounter:
    """Adapts the project's metering functions to :class:`TokenCounter`."""

    text: Callable[[str, str], int]
    prompt: Callable[[str, list[dict[str, Any]]], int]

    def count_text(self, model: str, text: str) -> int:
        return self.text(model, text)

    def count_prompt(self, model: str, messages: list[dict[str, Any]]) -> int:
        return self.prompt(model, messages)


def default_counter() -> TokenCounter:
    """
    The project's own token counter when it is importable, so the fake's
    usage agrees with the proxy's meter; otherwise :class:`SimpleTokenCounter`.
    """
    try:
        from dd0c_route.metering.tokens import (  # type: ignore[import-not-found,unused-ignore]
            count_prompt_tokens,
            count_text_tokens,
        )
    except ImportError:
        return SimpleTokenCounter()
    return _MeteringCounter(text=count_text_tokens, prompt=count_prompt_tokens)


def _tool_calls(value: object) -> tuple[tuple[str, str], ...]:
    """Accept lists from JSON as well as tuples from Python."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"tool_calls must be a list of (name, arguments), got {value!r}")
    calls = []
    for item in value:
        name, arguments = item
        calls.append((str(name), str(arguments)))
    return tuple(calls)


def _headers(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"headers must be a mapping of str to str, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and value < 0:  # type: ignore[operator]
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and value < 1:  # type: ignore[operator]
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


#: The broken answers a scenario can ask for (see :class:`Scenario`).
FAULTS = ("truncated_json", "short_body", "html", "bad_sse_line")


@attrs.frozen(kw_only=True)
class Scenario:
    """
    How the fake answers one request.  Every field is optional; the default
    is a prompt, successful, deterministic answer.

    Delays are seconds on the injected reactor.  ``chunk_count`` (or else
    ``words_per_chunk``) shapes a stream's content chunks; with neither, the
    chunks carry 1, 2, 3, 1, 2, 3... words.  ``reset_after_chunks`` aborts
    the TCP connection after that many content chunks (for a non-streamed
    answer: after the headers and half the body).  ``mid_stream_error`` is
    the provider's inner error object, sent after the content instead of a
    normal end.  ``hang`` never answers until the client goes away.

    ``fault`` makes a broken 200 of the kinds load balancers and flaky
    providers send: ``"truncated_json"`` (half a JSON body, with a
    Content-Length that matches what is sent), ``"short_body"`` (a
    Content-Length for the whole body, half of it sent, then a clean close),
    ``"html"`` (a ``text/html`` page; empty for a stream request), and
    ``"bad_sse_line"`` (a non-JSON ``data:`` line after the second content
    chunk of a stream).

    ``cached_tokens`` and ``reasoning_tokens`` are the usage details a
    Responses answer reports (reasoning tokens are added to the output).
    """

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict, converter=_headers)
    error_body: Optional[dict[str, Any]] = None
    reply_text: Optional[str] = None
    reply_words: int = attrs.field(default=12, validator=_positive)
    chunk_count: Optional[int] = attrs.field(default=None, validator=_positive)
    words_per_chunk: Optional[int] = attrs.field(default=None, validator=_positive)
    first_token_delay: float = attrs.field(default=0.0, validator=_non_negative)
    header_delay: float = attrs.field(default=0.0, validator=_non_negative)
    chunk_delay: float = attrs.field(default=0.0, validator=_non_negative)
    reset_after_chunks: Optional[int] = attrs.field(default=None, validator=_non_negative)
    tool_calls: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_tool_calls)
    mid_stream_error: Optional[dict[str, Any]] = None
    hang: bool = False
    fault: Optional[str] = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(FAULTS)))
    cached_tokens: int = attrs.field(default=0, validator=_non_negative)
    reasoning_tokens: int = attrs.field(default=0, validator=_non_negative)

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Scenario:
        """
        Build from the JSON of ``POST /_fake/scenario``; unknown fields are
        refused so a typo in a test cannot silently become the default.
        """
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown Scenario fields: {', '.join(unknown)}")
        return cls(**fields)


@attrs.frozen
class ReceivedRequest:
    """One request as the fake received it (header names lowercased)."""

    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes


_FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu"
).split()


def reply_text_for(scenario: Scenario, last_user_text: str) -> str:
    """
    The reply's text: ``scenario.reply_text``, or ``"Echo: "`` and the first
    eight words of the last user message, padded with filler words to
    ``reply_words`` words (to ``chunk_count`` words if that is larger).
    Deterministic, so a test can predict the text and its token count.
    """
    if scenario.reply_text is not None:
        return scenario.reply_text
    total = max(scenario.reply_words, scenario.chunk_count or 0)
    words = ["Echo:", *last_user_text.split()[:8]]
    index = 0
    while len(words) < total:
        words.append(_FILLER[index % len(_FILLER)])
        index += 1
    return " ".join(words[:total])


def split_reply(scenario: Scenario, text: str) -> Iterator[str]:
    """
    Cut ``text`` into stream chunks, lazily; joined they give ``text`` back.
    """
    words = re.findall(r"\S+\s*|\s+", text)
    if not words:
        return
    if scenario.chunk_count is not None:
        count = min(scenario.chunk_count, len(words))
        base, extra = divmod(len(words), count)
        start = 0
        for i in range(count):
            size = base + (1 if i < extra else 0)
            yield "".join(words[start : start + size])
            start += size
        return
    sizes = [scenario.words_per_chunk] if scenario.words_per_chunk else [1, 2, 3]
    start = 0
    i = 0
    while start < len(words):
        size = sizes[i % len(sizes)]
        yield "".join(words[start : start + size])
        start += size
        i += 1


def argument_fragments(arguments: str) -> list[str]:
    """Cut a tool's JSON arguments the way providers stream them: a few characters at a time."""
    step = 8
    return [arguments[i : i + step] for i in range(0, len(arguments), step)] or [""]


@attrs.define
class FakeProviderState:
    """
    The mutable heart of a fake provider: its scenario queue, its counters
    and its record of requests.  Shared by the HTTP resources, the
    connection-counting factory and the test.
    """

    default_scenario: Scenario = attrs.field(factory=Scenario)
    expected_key: Optional[str] = attrs.field(default=None, repr=False)
    counter: TokenCounter = attrs.field(factory=default_counter)
    scenarios: deque[Scenario] = attrs.field(factory=deque)
    requests: list[ReceivedRequest] = attrs.field(factory=list)
    #: ``GET /v1/models`` requests, kept apart: the proxy lists models in
    #: the background, and that must not shift a test's view of the API
    #: calls it makes (``requests``) nor consume its queued scenarios.
    listings: list[ReceivedRequest] = attrs.field(factory=list)
    open_connections: int = 0
    total_connections: int = 0
    stream_pauses: int = 0
    #: The ids the fake issued (responses, tool calls, request ids), in
    #: order; the latest 4,096 (a fake under a benchmark runs for long).
    issued_ids: deque[str] = attrs.field(factory=lambda: deque(maxlen=4096))
    _connection_waiters: list[tuple[int, Deferred[None]]] = attrs.field(factory=list)
    _pause_waiters: list[Deferred[None]] = attrs.field(factory=list)
    _request_waiters: list[tuple[int, Deferred[None]]] = attrs.field(factory=list)
    _ids: int = 0

    def push(self, *scenarios: Scenario) -> None:
        """Queue scenarios for the next requests, in order."""
        self.scenarios.extend(scenarios)

    def next_scenario(self) -> Scenario:
        """The scenario for a request that just arrived (FIFO, then the default)."""
        if self.scenarios:
            return self.scenarios.popleft()
        return self.default_scenario

    def reset(self) -> None:
        """Forget queued scenarios, recorded requests and the default scenario."""
        self.scenarios.clear()
        self.requests.clear()
        self.issued_ids.clear()
        self.default_scenario = Scenario()

    def record(self, request: ReceivedRequest) -> None:
        """Remember a request the fake received (see :meth:`request_handled`)."""
        if request.method == "GET" and request.path.rstrip("/") == "/v1/models":
            self.listings.append(request)
            return
        self.requests.append(request)

    def request_handled(self) -> None:
        """
        Wake :meth:`wait_for_requests` waiters.  Called once the request's
        handler has scheduled its answer, never from inside it, so a waiting
        test resumes with the fake in a settled state.
        """
        ready = [w for w in self._request_waiters if len(self.requests) >= w[0]]
        self._request_waiters = [w for w in self._request_waiters if w not in ready]
        for _, d in ready:
            d.callback(None)

    def wait_for_requests(self, n: int) -> Deferred[None]:
        """
        Fires once at least ``n`` requests were received (at once if so):
        the moment a test knows the provider holds the request it sent.
        """
        d: Deferred[None] = Deferred()
        self._request_waiters.append((n, d))
        if len(self.requests) >= n:
            self._request_waiters.remove((n, d))
            d.callback(None)
        return d

    def next_id(self, prefix: str, width: int = 24) -> str:
        """A unique, deterministic id such as ``chatcmpl-000...01``."""
        self._ids += 1
        issued = f"{prefix}{self._ids:0{width}x}"
        self.issued_ids.append(issued)
        return issued

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.total_connections += 1
        self._check_connection_waiters()

    def connection_closed(self) -> None:
        self.open_connections -= 1
        self._check_connection_waiters()

    def wait_for_open_connections(self, n: int) -> Deferred[None]:
        """
        A Deferred that fires once exactly ``n`` connections are open (at
        once if that is already so): how a test proves connections were
        released without polling.
        """
        d: Deferred[None] = Deferred()
        self._connection_waiters.append((n, d))
        self._check_connection_waiters()
        return d

    def _check_connection_waiters(self) -> None:
        ready = [w for w in self._connection_waiters if w[0] == self.open_connections]
        self._connection_waiters = [
            w for w in self._connection_waiters if w[0] != self.open_connections
        ]
        for _, d in ready:
            d.callback(None)

    def stream_paused(self) -> None:
        self.stream_pauses += 1
        waiters, self._pause_waiters = self._pause_waiters, []
        for d in waiters:
            d.callback(None)

    def wait_for_stream_pause(self) -> Deferred[None]:
        """
        Fires the next time a stream is paused by backpressure: proof that
        whoever reads the stream (the proxy) stopped reading the provider.
        """
        d: Deferred[None] = Deferred()
        self._pause_waiters.append(d)
        return d
