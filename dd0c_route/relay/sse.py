# Tests: tests/test_sse.py
"""
An incremental decoder for server-sent events.

Upstream bytes arrive split anywhere (mid-line, mid-CRLF, mid-UTF-8
character); the decoder yields each complete event exactly once with its
raw bytes, so the relay can forward the original bytes untouched and only
parse the events it must inspect.  Per the SSE spec, lines end with CRLF, LF
or CR, and a blank line ends an event.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

import attrs

__all__ = ["SSEDecoder", "SSEEvent", "encode_event"]

#: A blank line: two line ends in a row, each CRLF, LF or CR (longest first).
_EVENT_END = re.compile(rb"\r\n\r\n|\r\n\n|\n\r\n|\r\n\r|\n\n|\n\r|\r\r")


@attrs.frozen
class SSEEvent:
    """One event: its ``event`` name (or None), joined ``data`` and raw bytes."""

    event: Optional[str]
    data: str
    raw: bytes


def _parse(block: bytes) -> Optional[SSEEvent]:
    # Fast path: the shape OpenAI sends, one "data: " line per event.
    if block[:6] == b"data: " and b"\n" not in block and b"\r" not in block:
        return SSEEvent(None, block[6:].decode("utf-8", "replace"), block)
    name: Optional[str] = None
    data: list[str] = []
    text = block.decode("utf-8", "replace")
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line or line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if name is None and not data:
        return None
    return SSEEvent(event=name, data="\n".join(data), raw=block)


class SSEDecoder:
    """
    Feed bytes, get complete events.  Holds at most one partial event.
    """

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_event_bytes

    def feed(self, data: bytes) -> Iterator[SSEEvent]:
        """
        The events completed by ``data``, in order.  A trailing CR is kept
        back until the next byte says whether it begins a CRLF.
        """
        buffer = self._buffer + data if self._buffer else data
        start = 0
        length = len(buffer)
        while True:
            match = _EVENT_END.search(buffer, start)
            if match is None:
                break
            end = match.end()
            # A match ending in CR at the very end of the buffer may still
            # be the start of CRLF: wait for more bytes.
            if end == length and buffer[end - 1 : end] == b"\r":
                break
            event = _parse(buffer[start : match.start()])
            if event is not None:
                yield SSEEvent(event.event, event.data, buffer[start:end])
            start = end
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max:
            raise ValueError("SSE event larger than the limit")

    def flush(self) -> Iterator[SSEEvent]:
        """At end of stream: an unterminated last event, if any."""
        if self._buffer.strip():
            event = _parse(self._buffer)
            self._buffer = b""
            if event is not None:
                yield event
        self._buffer = b""

    @property
    def pending(self) -> int:
        return len(self._buffer)


def encode_event(data: str, event: Optional[str] = None) -> bytes:
    """One SSE event, ``data`` on one line (JSON never holds raw newlines)."""
    if event is None:
        return b"data: " + data.encode("utf-8") + b"\n\n"
    return b"event: " + event.encode("utf-8") + b"\ndata: " + data.encode("utf-8") + b"\n\n"
