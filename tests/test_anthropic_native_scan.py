"""
The native Anthropic stream's byte-scan path (providers/anthropic_handlers.py
NativeStreamHandler) gives the same bytes to the client and the same facts
to the meter as parsing every event: proved against the same handler with
its scan turned off (every event through the SSE decoder and ``event``),
over generated streams split anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dd0c_route.metering.usage import DeliveredText, UsageFacts
from dd0c_route.providers.anthropic_handlers import NativeStreamHandler
from dd0c_route.relay.handlers import GenericStreamHandler
from tests.test_chat_stream import run, text


class ReferenceHandler(NativeStreamHandler):
    """Every event decoded and parsed (the handler before the scan)."""

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        facts.delivered = DeliveredText()

    data = GenericStreamHandler.data
    end = GenericStreamHandler.end


@st.composite
def delta_event(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text_delta", "text_delta", "input_json_delta", "thinking_delta"]))
    key = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}[kind]
    delta: dict[str, Any] = {"type": kind, key: draw(text)}
    if draw(st.integers(0, 6)) == 0:
        delta = {key: delta[key], "type": kind}  # another member order: parsed
    return {"type": "content_block_delta", "index": draw(st.integers(0, 3)), "delta": delta}


@st.composite
def stream(draw: Any) -> bytes:
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    ascii_only = draw(st.booleans())
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "usage": {"input_tokens": 11, "output_tokens": 1, "cache_read_input_tokens": draw(st.integers(0, 3))}}})]
    for _ in range(draw(st.integers(0, 3))):
        block = draw(st.sampled_from([{"type": "text", "text": ""}, {"type": "text", "text": "pre"},
                                      {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]))
        events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
        events += [("content_block_delta", draw(delta_event())) for _ in range(draw(st.integers(0, 5)))]
        if draw(st.booleans()):
            events.append(("ping", {"type": "ping"}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    tail = draw(st.sampled_from(["done", "error", "none", "bad"]))
    if tail == "done":
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}))
        events.append(("message_stop", {"type": "message_stop"}))
    elif tail == "error":
        events.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    pieces = [f"event: {kind}\ndata: {json.dumps(body, separators=separators, ensure_ascii=ascii_only)}" for kind, body in events]
    if tail == "bad":
        pieces.insert(draw(st.integers(0, len(pieces))), "event: content_block_delta\ndata: <html>bad gateway</html>")
    wire = "".join(piece + "\n\n" for piece in pieces)
    if draw(st.integers(0, 3)) == 0:
        wire = wire.replace("\n", "\r\n")
    return wire.encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_same_bytes_and_facts_as_parsing_every_event(wire: bytes, cuts: list[int]) -> None:
    fast_facts, ref_facts = UsageFacts(), UsageFacts()
    fast_handler, reference_handler = NativeStreamHandler(fast_facts), ReferenceHandler(ref_facts)
    assert run(fast_handler, wire, cuts) == run(reference_handler, wire, cuts)
    assert list(fast_facts.delivered) == list(ref_facts.delivered)
    assert fast_handler.invalid == reference_handler.invalid
    assert (fast_facts.prompt_tokens, fast_facts.completion_tokens, fast_facts.cached_tokens, fast_facts.response_id,
            fast_facts.error_type) == (ref_facts.prompt_tokens, ref_facts.completion_tokens, ref_facts.cached_tokens,
                                       ref_facts.response_id, ref_facts.error_type)


def test_deltas_are_scanned_not_parsed() -> None:
    wire = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\\u00e9 \\"x\\""}}\n\n'
            b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\\"a\\":"}}\n\n')
    facts = UsageFacts()
    handler = NativeStreamHandler(facts)
    handler.event = None  # type: ignore[assignment,method-assign]  # a parse would raise
    assert handler.data(wire[:50]) + handler.data(wire[50:]) + handler.end() == wire
    assert list(facts.delivered) == ['h\u00e9 "x"', '{"a":']
