# Tests: tests/test_routing.py
"""
Measuring a request for routing, in one pass over its messages.

No tokenizer runs here (tiktoken is for worker threads): the prompt size is
characters / 4, which is what matching on size needs and costs microseconds.
Both the OpenAI shapes (string content, ``text``/``image_url`` parts, tool
calls) and the Anthropic ones (``text``/``image``/``tool_result`` blocks, a
separate ``system``) are read.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..metering.meter import RequestInfo
from .interfaces import RequestFeatures, RoutingRequest

__all__ = ["keep_features", "measure_request"]

_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


def _text_of(content: Any, found: list[bool]) -> str:
    """The text inside a content value; ``found[0]`` set when it holds an image."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind in _IMAGE_TYPES:
                    found[0] = True
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif kind == "tool_result":
                    parts.append(_text_of(part.get("content"), found))
                elif kind == "tool_use":
                    parts.append(str(part.get("input", "")))
        return "\n".join(parts)
    return ""


def measure_request(
    body: Mapping[str, Any],
    messages: Sequence[Any],
    long_context_tokens: int,
    system: Optional[Any] = None,
) -> RoutingRequest:
    """
    The :class:`RoutingRequest` for a chat body (OpenAI or Anthropic shape;
    ``system`` is Anthropic's top-level system prompt).
    """
    images = [False]
    chars = 0
    user_turns = 0
    last_user = ""
    system_text = _text_of(system, images) if system is not None else ""
    chars += len(system_text)
    tool_messages = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        text = _text_of(message.get("content"), images)
        chars += len(text)
        if role == "user":
            user_turns += 1
            last_user = text
        elif role in ("system", "developer"):
            if not system_text:
                system_text = text
        elif role in ("tool", "function"):
            tool_messages = True
        calls = message.get("tool_calls")
        if calls:
            tool_messages = True
            for call in calls if isinstance(calls, list) else ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    chars += len(str(function.get("arguments") or ""))
    tokens = chars // 4
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in _JSON_FORMATS
    features = RequestFeatures(
        prompt_tokens=tokens,
        messages=len(messages),
        user_turns=user_turns,
        tools=bool(body.get("tools") or body.get("functions")) or tool_messages,
        images=images[0],
        json_mode=json_mode,
        long_context=tokens >= long_context_tokens,
    )
    return RoutingRequest(features, last_user, system_text, messages)


def keep_features(info: RequestInfo, features: RequestFeatures) -> None:
    """
    Copy what rules match on onto the request's record (never content), so
    the admin what-if can replay a candidate rule over history.
    """
    info.prompt_tokens_estimate = features.prompt_tokens
    info.tools = features.tools
    info.images = features.images
    info.json_mode = features.json_mode
    info.long_context = features.long_context
