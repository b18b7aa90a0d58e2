# Tests: tests/test_live_responses.py, tests/test_anthropic_responses.py
"""
A Responses API request (``POST /v1/responses``) read as a chat completion.

Two readers need the same view: routing, which matches rules on a chat
body's ``messages``, ``tools`` and ``response_format`` (and counts a prompt
locally when the provider reports no usage), and the Anthropic adapter,
which translates chat completions to the Messages API already.  The
lenient view (``strict=False``) skips what it does not know; the strict one
raises :class:`~.anthropic_errors.TranslationError` naming the parameter a
translated model cannot honour (server-side state, reasoning, built-in
tools), so the client gets a clear 400 instead of a silently different
answer.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .anthropic_errors import TranslationError

__all__ = ["chat_view", "refuse_stateful"]

_JSON_FORMATS = frozenset({"json_object", "json_schema"})

#: Request members that need state or features only OpenAI's Responses
#: service has; refused for translated models (value -> why).
_STATEFUL = (
    ("previous_response_id", "translated models keep no server-side state: send the whole conversation in `input`"),
    ("conversation", "translated models keep no server-side conversations: send the whole conversation in `input`"),
    ("reasoning", "reasoning options are not available for this model through /v1/responses"),
    ("background", "background responses are not available for this model"),
    ("prompt", "stored prompts are not available for this model"),
    ("include", "`include` is not available for this model"),
)


def _bad(message: str, param: str, code: str = "unsupported_parameter") -> TranslationError:
    return TranslationError(400, message, param=param, code=code)


def refuse_stateful(body: Mapping[str, Any]) -> None:
    """Raise a 400 naming the first member a translated model cannot honour."""
    for name, why in _STATEFUL:
        value = body.get(name)
        if value is not None and value is not False and value != [] and value != {}:
            raise _bad(f"Unsupported parameter: '{name}': {why}.", name)
    if body.get("store") is True:
        raise _bad(
            "Unsupported parameter: 'store': translated models keep no stored responses; send store: false or omit it.",
            "store",
        )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _content(content: Any, param: str, strict: bool) -> Any:
    """A message's Responses content as chat content (a string or parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        if strict:
            raise _bad(f"Invalid '{param}': expected a string or an array of content parts.", param, "invalid_value")
        return ""
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str):
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif strict:
                raise _bad(
                    f"Unsupported '{param}[{index}]': only input_image parts with an image_url (https or data URL) are supported for this model.",
                    f"{param}[{index}]",
                )
            else:
                parts.append({"type": "image_url"})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif strict:
            raise _bad(f"Unsupported '{param}[{index}]': content parts of type {kind!r} are not supported for this model.", f"{param}[{index}]")
    return parts


def _messages(body: Mapping[str, Any], strict: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and strict and not isinstance(instructions, str):
        raise _bad("Invalid 'instructions': expected a string.", "instructions", "invalid_type")
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
        return messages
    if not isinstance(raw, list):
        if strict:
            raise _bad("Invalid 'input': expected a string or an array of input items.", "input", "invalid_value")
        return messages
    for index, item in enumerate(raw):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            if strict:
                raise _bad(f"Invalid '{param}': expected an object.", param, "invalid_value")
            continue
        kind = item.get("type", "message")
        if kind == "message" and isinstance(item.get("role"), str):
            messages.append({"role": item["role"], "content": _content(item.get("content"), param + ".content", strict)})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                # Parallel calls (and the text before them) are one assistant turn.
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": _text(item.get("output"))})
        elif strict:
            raise _bad(f"Unsupported '{param}': input items of type {kind!r} are not supported for this model.", param)
    return messages


def _tools(body: Mapping[str, Any], strict: bool) -> Optional[list[dict[str, Any]]]:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function" and isinstance(tool, dict):
            function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object"}}
            if tool.get("description") is not None:
                function["description"] = tool["description"]
            out.append({"type": "function", "function": function})
        elif strict:
            raise _bad(
                f"Unsupported parameter: 'tools[{index}]': built-in tools (type {kind!r}) are not available for this model; only function tools are.",
                f"tools[{index}]",
            )
        else:
            out.append({"type": str(kind)})
    return out


def _tool_choice(choice: Any, strict: bool) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if strict:
        raise _bad("Unsupported parameter: 'tool_choice': only 'auto', 'none', 'required' or a function are available for this model.", "tool_choice")
    return None


def chat_view(body: Mapping[str, Any], strict: bool = False) -> dict[str, Any]:
    """
    The chat completion ``body`` asks for: ``messages`` (``instructions``
    first, as the system message), ``tools``, ``tool_choice``,
    ``response_format`` (from ``text.format``), ``max_tokens`` (from
    ``max_output_tokens``) and the sampling members.
    """
    if strict:
        refuse_stateful(body)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body, strict)}
    tools = _tools(body, strict)
    if tools is not None:
        chat["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), strict)
    if choice is not None:
        chat["tool_choice"] = choice
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in _JSON_FORMATS:
        if strict:
            raise _bad(
                f"Unsupported parameter: 'text.format': type {fmt['type']!r} cannot be guaranteed for this model; only 'text' is available.",
                "text.format",
            )
        chat["response_format"] = {"type": fmt["type"]}
    for source, target in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("stream", "stream"),
    ):
        if body.get(source) is not None:
            chat[target] = body[source]
    if strict and chat["messages"] and all(m["role"] in ("system", "developer") for m in chat["messages"]):
        raise _bad("Invalid 'input': the conversation needs at least one user message.", "input", "invalid_value")
    return chat
