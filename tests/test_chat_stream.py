"""
The chat stream's byte-scan hot path (relay/chat_stream.py) gives the same
bytes to the client and the same facts to the meter as parsing every event
would: proved against a reference that parses each event in full (the
handler as it was before the scan), over generated streams split anywhere.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from dd0c_route.metering.usage import UsageFacts
from dd0c_route.relay.chat_stream import OpenAIChatStreamHandler
from dd0c_route.relay.handlers import GenericStreamHandler, stream_error_type
from dd0c_route.relay.sse import SSEEvent


class ReferenceHandler(GenericStreamHandler):
    """Every event decoded and json.loads-ed (the pre-scan implementation)."""

    def __init__(self, facts: UsageFacts, client_wants_usage: bool) -> None:
        super().__init__(facts)
        self.client_wants_usage = client_wants_usage

    def event(self, event: SSEEvent) -> Optional[bytes]:
        data = event.data
        if data == "[DONE]" or not data:
            return event.raw
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            self.invalid = "an event that is not a JSON object"
            return None
        facts = self.facts
        if facts.response_id is None:
            facts.response_id = chunk.get("id")
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if usage:
            facts.take_usage(usage)
            if not choices and not self.client_wants_usage:
                return None
        if choices:
            facts.take_delivered_choices(choices)
        elif "error" in chunk:
            facts.error_type = stream_error_type(chunk["error"])
        return event.raw


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['say "hi"', "back\\slash", "tab\tnew\nline", "emoji \U0001f600", "\u00e9t\u00e9", "</html>", '"usage":{'])


@st.composite
def chunk(draw: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if draw(st.booleans()):
        delta["content"] = draw(text)
    if draw(st.integers(0, 4)) == 0:
        delta["tool_calls"] = [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": draw(st.sampled_from(["f", "get_weather"])), "arguments": draw(text)}}
        ]
    value: dict[str, Any] = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    if draw(st.booleans()):
        value["usage"] = None
    return value


@st.composite
def stream(draw: Any) -> tuple[bytes, bool]:
    compact = draw(st.booleans())
    separators = (",", ":") if compact else (", ", ": ")
    events = [json.dumps(c, separators=separators, ensure_ascii=draw(st.booleans())) for c in draw(st.lists(chunk(), max_size=8))]
    tail = draw(st.sampled_from(["usage", "error", "none", "bad"]))
    if tail == "usage":
        events.append(json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                                  "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}, separators=separators))
    elif tail == "error":
        events.append(json.dumps({"error": {"message": "overloaded", "type": "server_error"}}, separators=separators))
    elif tail == "bad":
        events.insert(draw(st.integers(0, len(events))), "<html>bad gateway</html>")
    end = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n\n"]))
    wire = "".join(f"data: {e}{end}" for e in events)
    if draw(st.booleans()):
        wire = ": keep-alive" + end + wire
    if tail != "bad":
        wire += "data: [DONE]" + end
    return wire.encode("utf-8"), draw(st.booleans())


def run(handler: Any, wire: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        out.append(handler.data(wire[start:cut]))
        start = cut
        if handler.invalid is not None:
            break
    if handler.invalid is None:
        out.append(handler.end())
    return b"".join(out)


@settings(max_examples=400, deadline=None)
@given(stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_same_bytes_and_facts_as_parsing_every_event(case: tuple[bytes, bool], cuts: list[int]) -> None:
    wire, wants_usage = case
    fast_facts, ref_facts = UsageFacts(), UsageFacts()
    fast = run(OpenAIChatStreamHandler(fast_facts, wants_usage), wire, cuts)
    reference_handler = ReferenceHandler(ref_facts, wants_usage)
    reference = run(reference_handler, wire, cuts)
    assert fast == reference
    assert list(fast_facts.delivered) == list(ref_facts.delivered)
    assert "".join(fast_facts.delivered) == "".join(ref_facts.delivered)
    assert (fast_facts.prompt_tokens, fast_facts.completion_tokens, fast_facts.response_id, fast_facts.error_type) == (
        ref_facts.prompt_tokens, ref_facts.completion_tokens, ref_facts.response_id, ref_facts.error_type)


def test_the_usage_chunk_is_hidden_unless_asked_for() -> None:
    usage = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    content = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n'
    for wants, expect in ((False, content + b"data: [DONE]\n\n"), (True, content + usage + b"data: [DONE]\n\n")):
        facts = UsageFacts()
        handler = OpenAIChatStreamHandler(facts, wants)
        assert handler.data(content + usage + b"data: [DONE]\n\n") + handler.end() == expect
        assert (facts.prompt_tokens, facts.completion_tokens, list(facts.delivered)) == (3, 2, ["x"])


def test_unscanned_text_is_bounded() -> None:
    """Blocks kept for a later scan are scanned once they pass SCAN_AHEAD bytes: memory stays bounded."""
    from dd0c_route.metering.usage import SCAN_AHEAD, EscapedText

    scanned: list[bytes] = []
    kept = EscapedText(lambda block: scanned.append(block) or [b"x"])  # type: ignore[func-returns-value]
    block = b"data: {}\n\n" * 1000
    for _ in range(SCAN_AHEAD // len(block)):
        kept.extend_later(block)
    assert scanned == []
    kept.extend_later(block)
    assert len(scanned) == SCAN_AHEAD // len(block) + 1
    assert kept.scale == (len(scanned), len(scanned))
