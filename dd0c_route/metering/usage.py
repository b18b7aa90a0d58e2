# Tests: tests/test_meter.py, tests/test_relay.py
"""
What is learned about a request's usage while it is relayed.

Provider usage is the truth whenever it arrives; the delivered text is kept
only so that a stream cut short can be counted locally.  Both OpenAI
(``prompt_tokens``/``completion_tokens``) and Anthropic
(``input_tokens``/``output_tokens``) shapes are understood.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Optional

__all__ = ["DeliveredText", "EscapedText", "UsageFacts"]

#: Delivered text kept per request for a local count, in characters: more
#: than any model's output limit (~1M characters is ~250k tokens), so in
#: practice everything is kept; beyond it, only the length is, and the count
#: is extrapolated.  It bounds a stream's memory whatever its length.
DELIVERED_LIMIT = 1 << 20
#: Raw event bytes an :class:`EscapedText` keeps unscanned (a 14 KB stream
#: is never scanned when its provider reports usage).
SCAN_AHEAD = 1 << 18


class DeliveredText(list[str]):
    """
    The text handed to the client, in pieces, up to :data:`DELIVERED_LIMIT`
    characters; past the limit pieces are only measured (:attr:`dropped`).
    """

    __slots__ = ("chars", "dropped")

    def __init__(self) -> None:
        super().__init__()
        self.chars = 0
        self.dropped = 0

    def append(self, text: str) -> None:
        size = len(text)
        if self.dropped or self.chars + size > DELIVERED_LIMIT:
            self.dropped += size
            return
        self.chars += size
        super().append(text)

    @property
    def scale(self) -> tuple[int, int]:
        """(all characters, kept characters): the extrapolation ratio."""
        return self.chars + self.dropped, self.chars


class EscapedText:
    """
    Delivered text kept as the JSON-escaped bytes the provider sent (the
    inside of each ``"content": "..."`` string), decoded only when the meter
    needs the text: a stream cut short, or one whose provider reported no
    usage.  Iterating yields the pieces as :class:`DeliveredText` holds
    them, each decoded on its own, so a count is the same either way.
    Bounded like :class:`DeliveredText`, in bytes of the escaped form.
    """

    __slots__ = ("_blocks", "_blocks_size", "_chars", "_dropped", "_pieces", "_scan")

    def __init__(self, scan: Optional[Callable[[bytes], list[bytes]]] = None) -> None:
        self._pieces: list[bytes] = []
        self._chars = 0
        self._dropped = 0
        #: ``scan(block)``: the escaped pieces of a block kept by
        #: :meth:`extend_later`, found only when they are read.
        self._scan = scan
        self._blocks: list[bytes] = []
        self._blocks_size = 0

    def extend_later(self, block: bytes) -> None:
        """
        Keep a block of events whose pieces ``scan`` finds, scanned only when
        the text is read (most streams report usage, and their text never
        is); past :data:`SCAN_AHEAD` bytes the blocks kept are scanned at once,
        so the memory held stays bounded as with :meth:`extend_escaped`.
        """
        self._blocks.append(block)
        self._blocks_size += len(block)
        if self._blocks_size > SCAN_AHEAD:
            self._scan_blocks()

    def _scan_blocks(self) -> None:
        blocks, self._blocks, self._blocks_size = self._blocks, [], 0
        scan = self._scan
        assert scan is not None
        for block in blocks:
            self.extend_escaped(scan(block))

    @property
    def chars(self) -> int:
        if self._blocks:
            self._scan_blocks()
        return self._chars

    @property
    def dropped(self) -> int:
        if self._blocks:
            self._scan_blocks()
        return self._dropped

    def extend_escaped(self, pieces: list[bytes]) -> None:
        """Keep ``pieces`` (escaped JSON string contents), up to the limit."""
        if self._blocks:
            self._scan_blocks()
        for piece in pieces:
            size = len(piece)
            if not size:
                continue
            if self._dropped or self._chars + size > DELIVERED_LIMIT:
                self._dropped += size
                continue
            self._chars += size
            self._pieces.append(piece)

    def append(self, text: str) -> None:
        """Keep a piece of text that arrived decoded."""
        self.extend_escaped([json.dumps(text)[1:-1].encode("utf-8")])

    def __iter__(self) -> Iterator[str]:
        if self._blocks:
            self._scan_blocks()
        for piece in self._pieces:
            try:
                yield json.loads(b'"' + piece + b'"')
            except ValueError:
                yield piece.decode("utf-8", "replace")

    def __len__(self) -> int:
        if self._blocks:
            self._scan_blocks()
        return len(self._pieces)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, EscapedText, DeliveredText)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def scale(self) -> tuple[int, int]:
        """(all bytes, kept bytes): the extrapolation ratio."""
        return self.chars + self.dropped, self._chars


class UsageFacts:
    """Mutable, per request; read once by the meter at finalization."""

    __slots__ = (
        "cache_creation_1h_tokens",
        "cache_creation_tokens",
        "cached_tokens",
        "completion_tokens",
        "delivered",
        "error_type",
        "prompt_includes_cached",
        "prompt_tokens",
        "reasoning_tokens",
        "response_id",
        "service_tier",
        "usage_seen",
    )

    def __init__(self) -> None:
        self.response_id: Optional[str] = None
        self.prompt_tokens: Optional[int] = None
        self.completion_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None
        self.cache_creation_tokens: Optional[int] = None
        #: Anthropic: the part of cache_creation_tokens written for 1 hour
        #: (billed above the 5-minute writes).
        self.cache_creation_1h_tokens: Optional[int] = None
        #: The tier the provider says it served (OpenAI's response
        #: ``service_tier``, Anthropic's ``usage.service_tier``): priced by it.
        self.service_tier: Optional[str] = None
        #: Output tokens spent reasoning: part of ``completion_tokens`` (and
        #: billed as output), kept apart to show where output went.
        self.reasoning_tokens: Optional[int] = None
        self.delivered: DeliveredText | EscapedText = DeliveredText()
        self.error_type: Optional[str] = None
        self.usage_seen = False
        #: OpenAI's prompt_tokens include cached tokens; Anthropic's
        #: input_tokens do not.
        self.prompt_includes_cached = True

    def take_usage(self, usage: Any) -> None:
        """Record a provider usage object (OpenAI or Anthropic shape)."""
        if not isinstance(usage, dict):
            return
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            self.prompt_tokens = _int(usage.get("prompt_tokens"), self.prompt_tokens)
            self.completion_tokens = _int(usage.get("completion_tokens"), self.completion_tokens)
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                self.cached_tokens = _int(details.get("cached_tokens"), self.cached_tokens)
            self._take_reasoning(usage.get("completion_tokens_details"))
            self.usage_seen = True
        elif "input_tokens" in usage or "output_tokens" in usage:
            if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
                # Anthropic: input excludes cache reads and writes.
                self.prompt_includes_cached = False
                self.cached_tokens = _int(usage.get("cache_read_input_tokens"), self.cached_tokens)
                self.cache_creation_tokens = _int(
                    usage.get("cache_creation_input_tokens"), self.cache_creation_tokens
                )
                creation = usage.get("cache_creation")
                if isinstance(creation, dict):
                    self.cache_creation_1h_tokens = _int(
                        creation.get("ephemeral_1h_input_tokens"), self.cache_creation_1h_tokens
                    )
                self.take_service_tier(usage.get("service_tier"))
            else:
                details = usage.get("input_tokens_details")
                if isinstance(details, dict):
                    self.cached_tokens = _int(details.get("cached_tokens"), self.cached_tokens)
            self.prompt_tokens = _int(usage.get("input_tokens"), self.prompt_tokens)
            self.completion_tokens = _int(usage.get("output_tokens"), self.completion_tokens)
            self._take_reasoning(usage.get("output_tokens_details"))
            self.usage_seen = True

    def take_service_tier(self, tier: Any) -> None:
        """Keep the ``service_tier`` a response or its usage reports."""
        if isinstance(tier, str) and tier:
            self.service_tier = tier

    def _take_reasoning(self, details: Any) -> None:
        if isinstance(details, dict):
            self.reasoning_tokens = _int(details.get("reasoning_tokens"), self.reasoning_tokens)

    def take_delivered_choices(self, choices: Any) -> None:
        """
        Keep the text a ``chat.completion.chunk``'s choices hand the client:
        content, and tool-call names and argument fragments (billed as
        output tokens too).
        """
        delivered = self.delivered
        for choice in choices:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                delivered.append(content)
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                if function.get("name"):
                    delivered.append(function["name"])
                if function.get("arguments"):
                    delivered.append(function["arguments"])

    def take_body(self, body: dict[str, Any]) -> None:
        """Read ``id``, ``usage`` and ``error`` from a JSON response body."""
        if self.response_id is None and isinstance(body.get("id"), str):
            self.response_id = body["id"]
        if "usage" in body:
            self.take_usage(body["usage"])
        self.take_service_tier(body.get("service_tier"))
        if "error" in body:
            error = body["error"]
            if isinstance(error, dict):
                value = error.get("type") or error.get("code")
                self.error_type = str(value) if value is not None else None


def _int(value: Any, default: Optional[int]) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default
