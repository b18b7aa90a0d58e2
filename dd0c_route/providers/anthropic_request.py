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

This module holds the request and its conversation; content parts are in
:mod:`.anthropic_content`, tools in :mod:`.anthropic_tools`, and the 400s
they raise are built by :mod:`.anthropic_refusals`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from dd0c_route.providers.anthropic_content import ASSISTANT_PARTS, TEXT_PARTS, USER_PARTS, Block, content_blocks
from dd0c_route.providers.anthropic_refusals import refuse, unsupported
from dd0c_route.providers.anthropic_tools import (
    tool_choice_block,
    tool_result_block,
    tool_use_blocks,
    tools_blocks,
)

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


def default_max_tokens(model: str) -> int:
    """
    The ``max_tokens`` to send for ``model`` when the client set no limit.
    """
    best = ""
    for prefix in DEFAULT_MAX_TOKENS:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return DEFAULT_MAX_TOKENS[best] if best else FALLBACK_MAX_TOKENS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- messages --------------------------------------------------------------


def _split_conversation(messages: Sequence[Any]) -> tuple[list[Block], list[tuple[str, list[Block]]]]:
    """
    Split the conversation into system blocks and (role, blocks) turns.
    """
    system: list[Block] = []
    turns: list[tuple[str, list[Block]]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise refuse("Each message must be an object.", param)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(content_blocks(content, f"{param}.content", allow=TEXT_PARTS))
        elif role == "user":
            turns.append(
                ("user", content_blocks(content, f"{param}.content", allow=USER_PARTS))
            )
        elif role == "assistant":
            blocks = content_blocks(content, f"{param}.content", allow=ASSISTANT_PARTS)
            if message.get("tool_calls"):
                blocks.extend(tool_use_blocks(message["tool_calls"], f"{param}.tool_calls"))
            if message.get("function_call"):
                raise unsupported(f"{param}.function_call", "use tool_calls instead")
            turns.append(("assistant", blocks))
        elif role == "tool":
            turns.append(("user", [tool_result_block(message, param)]))
        elif role == "function":
            raise unsupported(f"{param}.role", "function messages are deprecated; use tool")
        else:
            raise refuse(f"Unknown message role {role!r}.", f"{param}.role")
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


# -- the request -----------------------------------------------------------


def _refuseunsupported(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise unsupported("n", "Anthropic returns one choice per request")
    if body.get("logprobs"):
        raise unsupported("logprobs", "Anthropic does not return log probabilities")
    if body.get("top_logprobs") is not None:
        raise unsupported("top_logprobs", "Anthropic does not return log probabilities")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "Anthropic has no token biasing")
    if body.get("audio") is not None:
        raise unsupported("audio", "Anthropic models do not produce audio")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise unsupported("modalities", "only ['text'] output is available")
    if body.get("functions") is not None or body.get("function_call") is not None:
        param = "functions" if body.get("functions") is not None else "function_call"
        raise unsupported(param, "deprecated; use tools and tool_choice")
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind != "text":
            raise unsupported(
                "response_format",
                f"type {kind!r} cannot be guaranteed; only 'text' is available",
            )


def _max_tokens(body: Mapping[str, Any], model: str) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise refuse(f"{name} must be a positive integer.", name)
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
        raise refuse("A model is required.", "model")
    _refuseunsupported(body)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise refuse("messages must be a non-empty list.", "messages")
    system, turns = _split_conversation(messages)
    anthropic_messages = _merge_turns(turns)
    if not anthropic_messages:
        raise refuse(
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
            raise refuse("stop must be a string or a list of strings.", "stop")
        if stop:
            out["stop_sequences"] = list(stop)
    elif stop is not None:
        raise refuse("stop must be a string or a list of strings.", "stop")

    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise refuse("temperature must be a number between 0 and 2.", "temperature")
        out["temperature"] = min(temperature, 1)
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p) or not 0 <= top_p <= 1:
            raise refuse("top_p must be a number between 0 and 1.", "top_p")
        out["top_p"] = top_p

    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools:
        out["tools"] = tools_blocks(tools)
        tool_choice = tool_choice_block(choice) if choice is not None else None
        if body.get("parallel_tool_calls") is False and (
            tool_choice is None or tool_choice["type"] != "none"
        ):
            tool_choice = dict(tool_choice or {"type": "auto"})
            tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    elif choice is not None and choice not in ("auto", "none"):
        raise refuse("tool_choice is only allowed when tools are specified.", "tool_choice")

    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise refuse("user must be a string.", "user")
        out["metadata"] = {"user_id": user}
    stream = body.get("stream")
    if stream is not None:
        out["stream"] = bool(stream)
    return out
