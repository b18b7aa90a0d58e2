# Tests: tests/test_chat_stream.py, tests/test_responses_stream.py
"""
An SSE stream read a block of complete events at a time (issue #18).

Every TCP read is cut at its last event boundary (a blank line); the
complete events before it go to :meth:`EventBlockHandler.block` at once, so
a handler can check and scan them with a few C-level byte searches instead
of decoding and parsing each event.  A stream with CR line ends takes the
general path (:class:`~.handlers.GenericStreamHandler`'s decoder and
``event``) for good.
"""

from __future__ import annotations

from ..metering.usage import UsageFacts
from .handlers import GenericStreamHandler

__all__ = ["EventBlockHandler"]


class EventBlockHandler(GenericStreamHandler):
    """See the module docstring; subclasses implement :meth:`block`."""

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        self._tail = b""
        #: CR line ends seen: the general decoder takes over for good.
        self._general = False

    def block(self, complete: bytes) -> bytes:
        """
        Complete events (ending in a blank line) in; what to forward out.
        Each event :meth:`scan` takes is forwarded as is; any other goes
        through the decoder and ``event`` (a full parse).
        """
        events = complete.split(b"\n\n")
        events.pop()  # after the last boundary: empty
        out = []
        scan = self.scan
        for event in events:
            raw = event + b"\n\n"
            if scan(event):
                out.append(raw)
                continue
            for parsed in self.decoder.feed(raw):
                kept = self.event(parsed)
                if self.invalid is not None:
                    return b"".join(out)
                if kept:
                    out.append(kept)
        return b"".join(out)

    def scan(self, event: bytes) -> bool:
        """Read one event (no blank line) by byte scan if it can be: True when done."""
        return False

    def data(self, data: bytes) -> bytes:
        if self.invalid is not None:
            return b""
        if self._general or b"\r" in data:
            if not self._general:
                self._general = True
                data, self._tail = self._tail + data, b""
            return super().data(data)
        buffer = self._tail + data if self._tail else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._tail = buffer
            return b""
        self._tail = buffer[end + 2 :]
        return self.block(buffer[: end + 2])

    def end(self) -> bytes:
        if self._general:
            return super().end()
        tail, self._tail = self._tail, b""
        if tail.strip():
            return self.block(tail if tail.endswith(b"\n\n") else tail + b"\n\n")[: len(tail)]
        return b""
