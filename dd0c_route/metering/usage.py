# Tests: tests/test_handlers.py
"""
What is learned about a request's usage while it is relayed.

Provider usage is the truth whenever it arrives; the delivered text is kept
only so that a stream cut short can be counted locally.  Both OpenAI
(``prompt_tokens``/``completion_tokens``) and Anthropic
(``input_tokens``/``output_tokens``) shapes are understood.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["DeliveredText", "UsageFacts"]

#: Delivered text kept per request for a local count, in characters: more
#: than any model's output limit (~1M characters is ~250k tokens), so in
#: practice everything is kept; beyond it, only the length is, and the count
#: is extrapolated.  It bounds a stream's memory whatever its length.
DELIVERED_LIMIT = 1 << 20


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


class UsageFacts:
    """Mutable, per request; read once by the meter at finalization."""

    __slots__ = (
        "cache_creation_tokens",
        "cached_tokens",
        "completion_tokens",
        "delivered",
        "error_type",
        "prompt_includes_cached",
        "prompt_tokens",
        "reasoning_tokens",
        "response_id",
        "usage_seen",
    )

    def __init__(self) -> None:
        self.response_id: Optional[str] = None
        self.prompt_tokens: Optional[int] = None
        self.completion_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None
        self.cache_creation_tokens: Optional[int] = None
        #: Output tokens spent reasoning: part of ``completion_tokens`` (and
        #: billed as output), kept apart to show where output went.
        self.reasoning_tokens: Optional[int] = None
        self.delivered = DeliveredText()
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
            else:
                details = usage.get("input_tokens_details")
                if isinstance(details, dict):
                    self.cached_tokens = _int(details.get("cached_tokens"), self.cached_tokens)
            self.prompt_tokens = _int(usage.get("input_tokens"), self.prompt_tokens)
            self.completion_tokens = _int(usage.get("output_tokens"), self.completion_tokens)
            self._take_reasoning(usage.get("output_tokens_details"))
            self.usage_seen = True

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
        if "error" in body:
            error = body["error"]
            if isinstance(error, dict):
                value = error.get("type") or error.get("code")
                self.error_type = str(value) if value is not None else None


def _int(value: Any, default: Optional[int]) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default
