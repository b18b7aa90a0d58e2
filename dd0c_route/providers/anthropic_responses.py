# Tests: tests/test_anthropic_responses.py, tests/test_live_responses.py
"""
Claude models behind ``POST /v1/responses``: the request and the whole reply.

A Responses request is read as the chat completion it asks for
(:func:`~.responses_input.chat_view`, strict: server-side state, reasoning,
``store``, built-in tools and JSON formats are refused with a 400 naming the
parameter) and translated to a Messages call by the chat translator, so the
two endpoints cannot drift apart.  ``instructions`` becomes ``system`` and
``max_output_tokens`` ``max_tokens`` on the way.

The reply is a ``response`` object (:class:`ResponseShape` builds it, for
the whole reply and for every event of a stream): one ``message`` output
item per text block and one ``function_call`` item per ``tool_use`` block.
Ids are stable and derived from Anthropic's: the response is
``resp_<message id>``, a call's ``call_id`` is its ``toolu_...`` id (so a
follow-up ``function_call_output`` maps back to ``tool_use_id``) and its item
id ``fc_<toolu id>``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import attrs

from .anthropic_errors import TranslationError
from .anthropic_request import openai_to_anthropic_request
from .anthropic_response import AnthropicUsage
from .responses_input import chat_view

__all__ = ["ResponseShape", "message_to_response", "response_usage", "responses_to_anthropic_request", "status_of"]

_PARAMS = {"max_tokens": "max_output_tokens", "response_format": "text.format", "messages": "input"}


def responses_to_anthropic_request(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The Messages API body for a Responses request (raises TranslationError)."""
    chat = chat_view(body, strict=True)
    chat["model"] = model
    chat["stream"] = stream
    try:
        return openai_to_anthropic_request(chat)
    except TranslationError as error:
        # Name the member the client sent, not its chat-completion twin.
        head = (error.param or "").partition("[")[0].partition(".")[0]
        renamed = _PARAMS.get(head)
        if renamed is None:
            raise
        raise TranslationError(error.status, error.message.replace(head, renamed, 1), param=renamed, code=error.code) from None


def response_usage(usage: AnthropicUsage) -> dict[str, Any]:
    """OpenAI's ``ResponseUsage`` for Anthropic's figures (input includes the cached parts)."""
    prompt = usage.prompt_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + usage.output_tokens,
    }


def _function_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    out = {"type": "function", "name": tool.get("name"), "parameters": tool.get("parameters"), "strict": tool.get("strict")}
    if tool.get("description") is not None:
        out["description"] = tool["description"]
    return out


def status_of(stop_reason: Optional[str]) -> tuple[str, Optional[dict[str, str]]]:
    """A ``response`` status (and ``incomplete_details``) for Anthropic's ``stop_reason``."""
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "incomplete", {"reason": "max_output_tokens"}
    if stop_reason == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


@attrs.frozen
class ResponseShape:
    """
    What every ``response`` object of one request echoes from it (model,
    instructions, tools, sampling), and the ids derived from Anthropic's.
    """

    model: str
    created: int
    request: Mapping[str, Any]

    def response_id(self, message_id: Any) -> str:
        return f"resp_{message_id}" if isinstance(message_id, str) and message_id else "resp_anthropic"

    @staticmethod
    def message_item_id(response_id: str, index: int) -> str:
        return f"msg_{response_id[len('resp_'):]}_{index}"

    @staticmethod
    def call_item_id(call_id: str) -> str:
        return f"fc_{call_id}"

    def response(
        self,
        response_id: str,
        status: str,
        output: list[dict[str, Any]],
        usage: Optional[dict[str, Any]] = None,
        incomplete: Optional[dict[str, str]] = None,
        error: Optional[dict[str, Any]] = None,
    ) -> dict[str, Any]:
        body = self.request
        text = body.get("text")
        tool_choice = body.get("tool_choice")
        out = {
            "id": response_id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "completed_at": self.created if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions") if isinstance(body.get("instructions"), str) else None,
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
            "previous_response_id": None,
            "reasoning": None,
            "store": False,
            "temperature": body.get("temperature", 1.0),
            "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
            "tool_choice": tool_choice if tool_choice is not None else "auto",
            "tools": [_function_tool(tool) for tool in body.get("tools") or ()],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
        }
        if usage is not None:
            # The schema's usage is an object, never null: absent until known.
            out["usage"] = usage
        return out

    @staticmethod
    def text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def message_item(self, item_id: str, text: str, status: str, with_part: bool = True) -> dict[str, Any]:
        return {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [self.text_part(text)] if with_part else [],
        }

    def call_item(self, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        return {
            "id": self.call_item_id(call_id),
            "type": "function_call",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        }


def message_to_response(message: Mapping[str, Any], shape: ResponseShape) -> dict[str, Any]:
    """A whole Anthropic ``message`` as a ``response`` object."""
    response_id = shape.response_id(message.get("id"))
    output: list[dict[str, Any]] = []
    for index, block in enumerate(message.get("content") or ()):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            output.append(shape.message_item(shape.message_item_id(response_id, index), str(block.get("text") or ""), "completed"))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") if block.get("input") is not None else {})
            output.append(shape.call_item(str(block.get("id")), str(block.get("name")), arguments, "completed"))
    status, incomplete = status_of(message.get("stop_reason"))
    usage = AnthropicUsage.from_anthropic(message.get("usage") if isinstance(message.get("usage"), dict) else None)
    return shape.response(response_id, status, output, response_usage(usage), incomplete)

