# Tests: tests/test_anthropic_request.py
"""
An OpenAI chat completion request, rewritten as an Anthropic Messages request.

The rewrite is honest or it is refused: a parameter Anthropic cannot honour
(``n > 1``, logprobs, ``logit_bias``, audio, JSON response formats) is a 400
``TranslationError`` before anything is sent, rather than a reply that quietly
differs from what the client asked for.  Sampling hints with no Anthropic
equivalent that cannot change the shape of the reply (``seed``, penalties,
``reasoning_effort``, ``service_tier``, ``store``, OpenAI ``metadata``,
``stream_options``) are dropped.

Two deliberate approximations, both documented for clients:

* ``temperature`` is 0..2 for OpenAI and 0..1 for Anthropic; values above 1
  are clamped to 1 (the most random Anthropic allows) rather than rescaled, so
  the common values 0..1 keep their exact meaning.
* ``system``/``developer`` messages are hoisted into the top-level ``system``
  wherever they appear, since Anthropic has no system turns.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from dd0c_route.boundedjson import InvalidJSON, loads_bounded
from dd0c_route.providers.anthropic_errors import TranslationError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FALLBACK_MAX_TOKENS",
    "default_max_tokens",
    "openai_to_anthropic_request",
]

# Model-name prefix -> the max_tokens we send when the client gave none.  The
# longest matching prefix wins.  Anthropic requires max_tokens; these are the
# models' documented output ceilings (or a conservative share of them).
DEFAULT_MAX_TOKENS: Mapping[str, int] = {
    "claude-3-": 4096,
    "claude-3-5": 8192,
    "claude-3-7": 8192,
    "claude-sonnet-4": 16384,
    "claude-opus-4": 16384,
    "claude-haiku-4": 16384,
}
FALLBACK_MAX_TOKENS = 4096

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DOCUMENT_TYPES = frozenset({"application/pdf"})

Block = dict[str, Any]


def default_max_tokens(model: str) -> int:
    """
    The ``max_tokens`` to send for ``model`` when the client set no limit.
    """
    best = ""
    for prefix in DEFAULT_MAX_TOKENS:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return DEFAULT_MAX_TOKENS[best] if best else FALLBACK_MAX_TOKENS


def _bad(message: str, param: Optional[str], code: Optional[str] = None) -> TranslationError:
    return TranslationError(400, message, param, code)


def _unsupported(param: str, why: str) -> TranslationError:
    return _bad(
        f"'{param}' is not supported for Anthropic models: {why}",
        param,
        "unsupported_parameter",
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- content parts ---------------------------------------------------------


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    """
    ``data:<media type>;base64,<data>`` -> (media type, data).
    """
    header, sep, data = url[len("data:"):].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64" or not data:
        raise _bad(
            "Only base64 data URLs ('data:<media type>;base64,<data>') are "
            "supported for Anthropic models.",
            param,
            "invalid_image_url",
        )
    return media_type.lower(), data


def _image_block(part: Mapping[str, Any], param: str) -> Block:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str):
        raise _bad("An image_url part needs image_url.url.", param)
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, param)
        if media_type not in _IMAGE_TYPES:
            raise _bad(
                f"Image type {media_type!r} is not supported for Anthropic "
                f"models; use one of {', '.join(sorted(_IMAGE_TYPES))}.",
                param,
                "invalid_image_format",
            )
        block: Block = {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    elif url.startswith(("https://", "http://")):
        block = {"type": "image", "source": {"type": "url", "url": url}}
    else:
        raise _bad(
            "An image URL must be an http(s) URL or a base64 data URL.",
            param,
            "invalid_image_url",
        )
    return _with_cache_control(block, part)


def _file_block(part: Mapping[str, Any], param: str) -> Block:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise _unsupported(
            param, "only inline PDF files ('file_data' as a base64 data URL) can be sent"
        )
    media_type, data = _parse_data_url(data_url, param)
    if media_type not in _DOCUMENT_TYPES:
        raise _unsupported(param, f"file type {media_type!r} (only application/pdf)")
    block: Block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    return _with_cache_control(block, part)


def _with_cache_control(block: Block, part: Mapping[str, Any]) -> Block:
    """
    Keep Anthropic's ``cache_control`` when a client put it on an OpenAI
    part: prompt caching is worth passing through.
    """
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _text_block(text: str, part: Optional[Mapping[str, Any]] = None) -> Block:
    block: Block = {"type": "text", "text": text}
    return _with_cache_control(block, part) if part is not None else block


def _content_blocks(
    content: Any, param: str, *, allow: frozenset[str]
) -> list[Block]:
    """
    OpenAI message content (a string or a list of parts) as Anthropic blocks.

    Empty text is dropped: Anthropic rejects empty text blocks.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise _bad("Message content must be a string or a list of parts.", param)
    blocks: list[Block] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in allow:
            raise _bad(
                f"Content part type {kind!r} is not allowed here for Anthropic "
                f"models; allowed: {', '.join(sorted(allow))}.",
                where,
            )
        assert isinstance(part, Mapping)
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if not isinstance(text, str):
                raise _bad(f"A {kind} part needs a string '{kind}'.", where)
            if text:
                blocks.append(_text_block(text, part))
        elif kind == "image_url":
            blocks.append(_image_block(part, where))
        elif kind == "file":
            blocks.append(_file_block(part, where))
    return blocks


_USER_PARTS = frozenset({"text", "image_url", "file"})
_TEXT_PARTS = frozenset({"text"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})


# -- messages --------------------------------------------------------------


def _tool_use_blocks(tool_calls: Any, param: str) -> list[Block]:
    if not isinstance(tool_calls, list):
        raise _bad("tool_calls must be a list.", param)
    blocks: list[Block] = []
    for j, call in enumerate(tool_calls):
        where = f"{param}[{j}]"
        if not isinstance(call, Mapping) or call.get("type", "function") != "function":
            raise _bad("Only function tool calls are supported for Anthropic models.", where)
        function = call.get("function")
        call_id = call.get("id")
        if not isinstance(function, Mapping) or not isinstance(call_id, str):
            raise _bad("A tool call needs an id and a function.", where)
        name = function.get("name")
        arguments = function.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise _bad("A tool call function needs a name and string arguments.", where)
        try:
            parsed = loads_bounded(arguments) if arguments.strip() else {}
        except InvalidJSON:
            raise _bad(
                "Tool call arguments must be valid JSON to send them to an "
                "Anthropic model.",
                f"{where}.function.arguments",
                "invalid_tool_call_arguments",
            ) from None
        if not isinstance(parsed, dict):
            raise _bad(
                "Tool call arguments must be a JSON object for Anthropic models.",
                f"{where}.function.arguments",
                "invalid_tool_call_arguments",
            )
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": parsed})
    return blocks


def _tool_result_block(message: Mapping[str, Any], param: str) -> Block:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise _bad("A tool message needs a tool_call_id.", f"{param}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = _content_blocks(content, f"{param}.content", allow=_TEXT_PARTS)
        if blocks:
            block["content"] = blocks
    return block


def _split_conversation(messages: Sequence[Any]) -> tuple[list[Block], list[tuple[str, list[Block]]]]:
    """
    Split the conversation into system blocks and (role, blocks) turns.
    """
    system: list[Block] = []
    turns: list[tuple[str, list[Block]]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise _bad("Each message must be an object.", param)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_content_blocks(content, f"{param}.content", allow=_TEXT_PARTS))
        elif role == "user":
            turns.append(
                ("user", _content_blocks(content, f"{param}.content", allow=_USER_PARTS))
            )
        elif role == "assistant":
            blocks = _content_blocks(content, f"{param}.content", allow=_ASSISTANT_PARTS)
            if message.get("tool_calls"):
                blocks.extend(_tool_use_blocks(message["tool_calls"], f"{param}.tool_calls"))
            if message.get("function_call"):
                raise _unsupported(f"{param}.function_call", "use tool_calls instead")
            turns.append(("assistant", blocks))
        elif role == "tool":
            turns.append(("user", [_tool_result_block(message, param)]))
        elif role == "function":
            raise _unsupported(f"{param}.role", "function messages are deprecated; use tool")
        else:
            raise _bad(f"Unknown message role {role!r}.", f"{param}.role")
    return system, turns


def _merge_turns(turns: list[tuple[str, list[Block]]]) -> list[dict[str, Any]]:
    """
    Anthropic wants alternating roles: merge consecutive same-role turns
    (so that consecutive tool results become one user turn) and put
    tool_result blocks first in each user turn, as Anthropic requires.
    """
    merged: list[tuple[str, list[Block]]] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, list(blocks)))
    out: list[dict[str, Any]] = []
    for role, blocks in merged:
        if role == "user":
            results = [b for b in blocks if b["type"] == "tool_result"]
            blocks = results + [b for b in blocks if b["type"] != "tool_result"]
        content: Any = blocks
        if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
            content = blocks[0]["text"]
        out.append({"role": role, "content": content})
    return out


def _system_value(blocks: list[Block]) -> Any:
    if len(blocks) == 1 and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks


# -- tools -----------------------------------------------------------------


def _tools(tools: Any) -> list[Block]:
    if not isinstance(tools, list):
        raise _bad("tools must be a list.", "tools")
    out: list[Block] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise _unsupported(where, "only function tools can be sent")
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise _bad("A function tool needs function.name.", f"{where}.function.name")
        assert isinstance(function, Mapping)
        converted: Block = {"name": name}
        if function.get("description"):
            converted["description"] = function["description"]
        parameters = function.get("parameters")
        converted["input_schema"] = (
            parameters if isinstance(parameters, Mapping) else {"type": "object", "properties": {}}
        )
        out.append(_with_cache_control(converted, tool))
    return out


def _tool_choice(choice: Any) -> Block:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise _bad(
        "tool_choice must be 'auto', 'required', 'none' or "
        "{'type': 'function', 'function': {'name': ...}} for Anthropic models.",
        "tool_choice",
    )


# -- the request -----------------------------------------------------------


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _unsupported("n", "Anthropic returns one choice per request")
    if body.get("logprobs"):
        raise _unsupported("logprobs", "Anthropic does not return log probabilities")
    if body.get("top_logprobs") is not None:
        raise _unsupported("top_logprobs", "Anthropic does not return log probabilities")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "Anthropic has no token biasing")
    if body.get("audio") is not None:
        raise _unsupported("audio", "Anthropic models do not produce audio")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _unsupported("modalities", "only ['text'] output is available")
    if body.get("functions") is not None or body.get("function_call") is not None:
        param = "functions" if body.get("functions") is not None else "function_call"
        raise _unsupported(param, "deprecated; use tools and tool_choice")
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind != "text":
            raise _unsupported(
                "response_format",
                f"type {kind!r} cannot be guaranteed; only 'text' is available",
            )


def _max_tokens(body: Mapping[str, Any], model: str) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise _bad(f"{name} must be a positive integer.", name)
            return int(value)
    return default_max_tokens(model)


def openai_to_anthropic_request(
    body: Mapping[str, Any], *, model: Optional[str] = None
) -> dict[str, Any]:
    """
    The Messages API body for an OpenAI chat completion ``body``.

    ``model`` is the Anthropic model to call (routing may have chosen it);
    by default the body's own ``model``.  Raises ``TranslationError`` (400)
    for anything that cannot be translated faithfully.
    """
    if model is None:
        model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("A model is required.", "model")
    _refuse_unsupported(body)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list.", "messages")
    system, turns = _split_conversation(messages)
    anthropic_messages = _merge_turns(turns)
    if not anthropic_messages:
        raise _bad(
            "Anthropic models need at least one non-empty user or assistant message.",
            "messages",
        )

    out: dict[str, Any] = {
        "model": model,
        "messages": anthropic_messages,
        "max_tokens": _max_tokens(body, model),
    }
    if system:
        out["system"] = _system_value(system)

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        if not all(isinstance(s, str) for s in stop):
            raise _bad("stop must be a string or a list of strings.", "stop")
        if stop:
            out["stop_sequences"] = list(stop)
    elif stop is not None:
        raise _bad("stop must be a string or a list of strings.", "stop")

    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise _bad("temperature must be a number between 0 and 2.", "temperature")
        out["temperature"] = min(temperature, 1)
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p) or not 0 <= top_p <= 1:
            raise _bad("top_p must be a number between 0 and 1.", "top_p")
        out["top_p"] = top_p

    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools:
        out["tools"] = _tools(tools)
        tool_choice = _tool_choice(choice) if choice is not None else None
        if body.get("parallel_tool_calls") is False and (
            tool_choice is None or tool_choice["type"] != "none"
        ):
            tool_choice = dict(tool_choice or {"type": "auto"})
            tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    elif choice is not None and choice not in ("auto", "none"):
        raise _bad("tool_choice is only allowed when tools are specified.", "tool_choice")

    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _bad("user must be a string.", "user")
        out["metadata"] = {"user_id": user}
    stream = body.get("stream")
    if stream is not None:
        out["stream"] = bool(stream)
    return out
