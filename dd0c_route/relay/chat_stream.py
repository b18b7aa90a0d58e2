# Tests: tests/test_chat_stream.py, tests/test_relay.py, tests/test_disconnect.py
"""
The OpenAI ``chat.completion.chunk`` stream, relayed for the price of a
byte scan.

The proxy asks for usage (``stream_options.include_usage``) on every
stream, and hides the extra usage-only chunk from a client that did not ask
for it.  Everything else the meter needs is found without parsing each
event: every TCP read is cut at its last event boundary, and the complete
events are

- checked in bulk (each must be one ``data: {...}`` line or ``data:
  [DONE]``: a line that is not is never forwarded and ends the stream),
- scanned with one regular expression for the JSON-escaped text they hand
  the client (``content``, tool-call ``name`` and ``arguments``), kept as
  bytes and decoded only when the meter needs them
  (:class:`~dd0c_route.metering.usage.EscapedText`),
- searched for a usage object or an error, and only the events that hold
  one (usually the last) are parsed in full; the first event is parsed
  once for the response id.

The bytes forwarded are the provider's own.  A stream that uses CR line
ends, multi-line events, names or comments takes the general path
(:class:`~dd0c_route.relay.handlers.GenericStreamHandler`'s decoder) for
those events, with the same results.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..metering.usage import EscapedText, UsageFacts
from ..shapes import openai_error, sse_error_frame
from .event_blocks import EventBlockHandler
from .handlers import stream_error_type
from .sse import SSEEvent

__all__ = ["OpenAIChatStreamHandler"]

#: The escaped JSON strings of delivered text: delta content, tool-call
#: names and argument fragments.  Inside a JSON string every quote is
#: escaped, so these keys match only as keys.
_DELIVERED = re.compile(rb'"(?:content|name|arguments)"\s*:\s*"((?:[^"\\]|\\.)*)"')
#: A usage object (not ``"usage":null``) or an error member.
_NEEDS_PARSE = re.compile(rb'"usage"\s*:\s*\{|"error"\s*:')

_DONE = b"data: [DONE]"
#: A block of complete events that are each one ``data: {...}`` line or
#: ``data: [DONE]`` (the check the slow path makes event by event).
_PLAIN = re.compile(rb"(?:data: \{[^\n]*\}\n\n|data: \[DONE\]\n\n)*")


class OpenAIChatStreamHandler(EventBlockHandler):
    """See the module docstring."""

    expects_sse = True

    def __init__(self, facts: UsageFacts, client_wants_usage: bool) -> None:
        super().__init__(facts)
        self.client_wants_usage = client_wants_usage
        self._escaped = EscapedText(_DELIVERED.findall)
        facts.delivered = self._escaped
        #: The response id is known (or was looked for where it must be):
        #: plain blocks need no split.
        self._id_taken = False

    def failed(self, message: str) -> bytes:
        return sse_error_frame(openai_error(message, "server_error", None, "upstream_error"))

    # -- the fast path ----------------------------------------------------

    def block(self, complete: bytes) -> bytes:
        """Complete events (ending in a blank line): check, scan, forward."""
        if not self._id_taken:
            self._take_first_id(complete)
        if _PLAIN.fullmatch(complete) is None:
            return self._event_by_event(complete)
        needs = _NEEDS_PARSE.search(complete)
        if needs is None:
            # The hot path: two scans in C, the text kept for later.
            self._escaped.extend_later(complete)
            return complete
        return self._with_parsed(complete, needs)

    def _take_first_id(self, complete: bytes) -> None:
        """The response id, from the first ``data: {`` event (comments before it skipped)."""
        facts = self.facts
        if facts.response_id is None:
            start = 0
            while start < len(complete):
                stop = complete.find(b"\n\n", start)
                event = complete[start : stop if stop >= 0 else len(complete)]
                if event[:7] == b"data: {":
                    self._take_id(event)
                    break
                if not event.startswith(b":"):
                    break
                start = stop + 2 if stop >= 0 else len(complete)
        self._id_taken = facts.response_id is not None

    def _with_parsed(self, complete: bytes, match: Optional[re.Match[bytes]]) -> bytes:
        """
        A plain block in which some events hold usage or an error: those
        (found by ``match`` and the searches after it) are parsed, the runs
        of events between them scanned as blocks; forwarded as one slice
        unless an event is hidden (the usage-only chunk) or unusable.
        """
        escaped = self._escaped
        out: list[bytes] = []
        done = 0  # everything before this is handled
        kept_from = 0  # start of what is forwarded but not yet in ``out``
        while match is not None:
            before = complete.rfind(b"\n\n", 0, match.start())
            start = before + 2 if before >= 0 else 0
            end = complete.find(b"\n\n", match.end()) + 2  # a plain block ends every event
            if start > done:
                escaped.extend_later(complete[done:start])
            kept = self._parsed(complete[start + 6 : end - 2])
            if self.invalid is not None:
                out.append(complete[kept_from:start])
                return b"".join(out)
            if kept is None:
                out.append(complete[kept_from:start])
                kept_from = end
            done = end
            match = _NEEDS_PARSE.search(complete, end)
        if done < len(complete):
            escaped.extend_later(complete[done:])
        if kept_from == 0:
            return complete
        out.append(complete[kept_from:])
        return b"".join(out)

    def _event_by_event(self, complete: bytes) -> bytes:
        """A block with some event that is not one ``data: {...}`` line: one event at a time."""
        events = complete.split(b"\n\n")
        events.pop()  # after the last boundary: empty
        out = []
        for event in events:
            raw = event + b"\n\n"
            if event[:7] == b"data: {" and event[-1:] == b"}" and b"\n" not in event:
                if _NEEDS_PARSE.search(event) is None:
                    self._escaped.extend_later(event)
                    out.append(raw)
                    continue
                kept = self._parsed(event[6:])
            elif event == _DONE:
                kept = raw
            else:
                kept = self._general_event(raw)
            if self.invalid is not None:
                break
            if kept:
                out.append(raw if kept is True else kept)
        return b"".join(out)

    def _take_id(self, event: bytes) -> None:
        try:
            chunk = json.loads(event[6:])
        except (ValueError, RecursionError):
            return
        if isinstance(chunk, dict):
            self.facts.response_id = chunk.get("id")

    def _parsed(self, payload: bytes) -> Any:
        """An event with usage or an error: parsed in full. True = forward as is."""
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
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
            facts.take_service_tier(chunk.get("service_tier"))
        if choices:
            facts.take_delivered_choices(choices)
        elif "error" in chunk:
            facts.error_type = stream_error_type(chunk["error"])
        if usage and not choices and not self.client_wants_usage:
            return None
        return True

    # -- the general path ---------------------------------------------------

    def _general_event(self, raw: bytes) -> Optional[bytes]:
        out = []
        for event in self.decoder.feed(raw):
            kept = self.event(event)
            if kept:
                out.append(kept)
        return b"".join(out) or None

    def event(self, event: SSEEvent) -> Optional[bytes]:
        data = event.data
        if data == "[DONE]" or not data:
            return event.raw
        kept = self._parsed(data.encode("utf-8"))
        if kept is None:
            return None
        return event.raw
