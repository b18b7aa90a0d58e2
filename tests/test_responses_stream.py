"""
The Responses stream's byte-scan path (relay/responses_stream.py) gives the
same bytes to the client and the same facts to the meter as parsing every
event: proved against the same handler with its scan turned off (every
event through the SSE decoder and ``ResponsesStreamHandler.event``), over
generated streams split anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dd0c_route.metering.usage import DeliveredText, UsageFacts
from dd0c_route.relay.handlers import GenericStreamHandler
from dd0c_route.relay.responses_stream import ResponsesStreamHandler
from tests.test_chat_stream import run, text


class ReferenceHandler(ResponsesStreamHandler):
    """Every event decoded and parsed (the handler before the scan)."""

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        facts.delivered = DeliveredText()

    data = GenericStreamHandler.data
    end = GenericStreamHandler.end


@st.composite
def event(draw: Any, number: int) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from([
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.refusal.delta", "response.function_call_arguments.delta", "response.output_item.added",
        "response.in_progress", "response.output_text.done"]))
    body: dict[str, Any] = {"type": kind, "item_id": "msg_1", "output_index": 0, "content_index": 0}
    if kind.endswith(".delta"):
        body["delta"] = draw(text)
        if draw(st.booleans()):
            body["logprobs"] = []
    elif kind == "response.output_item.added":
        body["item"] = {"type": "function_call", "name": draw(st.sampled_from(["f", "get_weather"])), "arguments": ""}
    if draw(st.integers(0, 5)):
        body["sequence_number"] = number
    return kind, body


@st.composite
def stream(draw: Any) -> bytes:
    compact = draw(st.booleans())
    separators = (",", ":") if compact else (", ", ": ")
    ascii_only = draw(st.booleans())
    events = [("response.created", {"type": "response.created", "sequence_number": 0,
                                    "response": {"id": "resp_1", "object": "response", "status": "in_progress"}})]
    events += [draw(event(i + 1)) for i in range(draw(st.integers(0, 8)))]
    tail = draw(st.sampled_from(["completed", "failed", "error", "none", "bad"]))
    if tail in ("completed", "failed"):
        events.append((f"response.{tail}", {"type": f"response.{tail}", "sequence_number": 99, "response": {
            "id": "resp_1", "object": "response", "error": {"code": "server_error"} if tail == "failed" else None,
            "usage": {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12}}}))
    elif tail == "error":
        events.append(("error", {"type": "error", "code": "overloaded", "message": "x", "sequence_number": 98}))
    named = draw(st.booleans())
    heads = [f"event: {kind}\n" if named or (kind == "response.output_text.delta" and draw(st.booleans())) else "" for kind, _ in events]
    pieces = [f"{head}data: {json.dumps(body, separators=separators, ensure_ascii=ascii_only)}" for head, (_, body) in zip(heads, events, strict=True)]
    if tail == "bad":
        pieces.insert(draw(st.integers(0, len(pieces))), "event: response.output_text.delta\ndata: <html>bad gateway</html>")
    out = "".join(piece + "\n\n" for piece in pieces)
    if draw(st.integers(0, 3)) == 0:
        out = out.replace("\n", "\r\n")  # JSON has no raw newline: only the framing changes
    return out.encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_same_bytes_and_facts_as_parsing_every_event(wire: bytes, cuts: list[int]) -> None:
    fast_facts, ref_facts = UsageFacts(), UsageFacts()
    fast_handler, reference_handler = ResponsesStreamHandler(fast_facts), ReferenceHandler(ref_facts)
    assert run(fast_handler, wire, cuts) == run(reference_handler, wire, cuts)
    assert list(fast_facts.delivered) == list(ref_facts.delivered)
    assert fast_handler.sequence == reference_handler.sequence
    assert fast_handler.invalid == reference_handler.invalid
    assert (fast_facts.prompt_tokens, fast_facts.completion_tokens, fast_facts.response_id, fast_facts.error_type) == (
        ref_facts.prompt_tokens, ref_facts.completion_tokens, ref_facts.response_id, ref_facts.error_type)


def test_text_deltas_are_scanned_not_parsed() -> None:
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"h\\u00e9 \\"x\\"","sequence_number":4}\n\n'
    facts = UsageFacts()
    handler = ResponsesStreamHandler(facts)
    handler.event = None  # type: ignore[assignment,method-assign]  # a parse would raise
    assert handler.data(delta[:30]) + handler.data(delta[30:]) + handler.end() == delta
    assert (list(facts.delivered), handler.sequence) == (['h\u00e9 "x"'], 4)
