"""
Stream handlers: the byte scan against the parse-every-event path, same run (issue #18).

For the Anthropic native stream and the Responses stream: the time to relay
one 50-delta stream (4 events per read) through the handler, with its scan
and with its scan off (every event decoded and parsed: the handler before
#18).  Read the ratio; absolute times move with the machine.

Run: ``PYTHONPATH=. python bench/stream_scan.py``
"""

from __future__ import annotations

import json
import timeit
from typing import Any

from dd0c_route.metering.usage import UsageFacts
from dd0c_route.providers.anthropic_handlers import NativeStreamHandler
from dd0c_route.relay.handlers import GenericStreamHandler
from dd0c_route.relay.responses_stream import ResponsesStreamHandler


class ParsedNative(NativeStreamHandler):
    data = GenericStreamHandler.data
    end = GenericStreamHandler.end


class ParsedResponses(ResponsesStreamHandler):
    data = GenericStreamHandler.data
    end = GenericStreamHandler.end


def _event(kind: str, body: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


def anthropic_stream(deltas: int = 50) -> list[bytes]:
    events = [_event("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
              _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    events += [_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word two three "}})] * deltas
    events += [_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": deltas}}),
               _event("message_stop", {"type": "message_stop"})]
    return events


def responses_stream(deltas: int = 50) -> list[bytes]:
    events = [_event("response.created", {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}})]
    events += [_event("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                                                     "content_index": 0, "delta": "word two three ", "logprobs": [], "sequence_number": i + 1})
               for i in range(deltas)]
    events.append(_event("response.completed", {"type": "response.completed", "sequence_number": deltas + 1,
                                                "response": {"id": "resp_1", "usage": {"input_tokens": 5, "output_tokens": deltas}}}))
    return events


def per_stream_us(handler: type, reads: list[bytes]) -> float:
    def relay() -> None:
        h = handler(UsageFacts())
        for data in reads:
            h.data(data)
        h.end()

    return min(timeit.repeat(relay, number=500, repeat=7)) / 500 * 1e6


def main() -> None:
    cases = (("anthropic native", anthropic_stream(), NativeStreamHandler, ParsedNative),
             ("responses", responses_stream(), ResponsesStreamHandler, ParsedResponses))
    for name, events, scanned, parsed in cases:
        reads = [b"".join(events[i:i + 4]) for i in range(0, len(events), 4)]
        slow, fast = per_stream_us(parsed, reads), per_stream_us(scanned, reads)
        print(f"{name}: {len(events)} events, {sum(map(len, events))} bytes per stream: parse every event {slow:.0f} us, "
              f"byte scan {fast:.0f} us ({slow / fast:.1f}x less)")


if __name__ == "__main__":
    main()
