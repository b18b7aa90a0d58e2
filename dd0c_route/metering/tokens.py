# Tests: tests/test_tokens.py
"""
Local token counts: the fallback when a provider never reported usage.

The provider's reported usage is always the truth (see DESIGN.md, "Accounting
rules"); these counts only fill gaps, such as the output of a stream the
client cut short.  So they aim to be *the provider's* count where the
tokenizer is public (OpenAI, via tiktoken with offline vocabularies) and an
honest, documented estimate where it is not (Anthropic), never a silent guess:
an unknown model is counted with a stated fallback encoding, flagged and
logged.

This module frames the counts (chat messages, tool calls, content parts);
:mod:`.tokenizers` chooses the tokenizer, :mod:`.calibration` corrects
Claude estimates, :mod:`.preload` loads the tables at start.

Every function here is pure and synchronous.  Counting 300 tokens costs
microseconds (see ``bench/token_count.py``), so it can run on the reactor;
the one slow step, parsing the vocabularies, happens once per process and
can be done at startup with ``vocab.preload()``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import attrs
from zope.interface import implementer

from dd0c_route.metering.interfaces import ITokenCounter
from dd0c_route.metering.tokenizers import CLAUDE_TOKENIZER_NAME, Tokenizer, tokenizer_for_model

__all__ = [
    "TokenCounter",
    "count_prompt_tokens",
    "count_text_tokens",
]


def count_text_tokens(model: str, text: str) -> int:
    """
    Tokens in ``text`` as ``model`` would count them, without any chat framing.

    Special-token strings count as ordinary text.  Count a stream's delivered
    text once, concatenated: BPE merges across chunk boundaries, so a sum of
    per-chunk counts overstates it.
    """
    return tokenizer_for_model(model).tokenizer.count(text)


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _content_texts(content: Any) -> Iterator[str]:
    """
    The countable text of a message's content, in either provider's shape.

    Images, audio and files are skipped: their token cost depends on sizes we
    do not see here, and the provider's usage report covers them.
    """
    if isinstance(content, str):
        yield content
        return
    if not isinstance(content, list):
        return
    for part in content:
        if isinstance(part, str):
            yield part
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            yield part["text"]
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            yield part["refusal"]
        elif kind == "thinking" and isinstance(part.get("thinking"), str):
            yield part["thinking"]
        elif kind == "tool_use":
            if isinstance(part.get("name"), str):
                yield part["name"]
            if "input" in part:
                yield _json_text(part["input"])
        elif kind == "tool_result":
            yield from _content_texts(part.get("content"))


def _call_texts(call: Any) -> Iterator[str]:
    """Function name and arguments of an OpenAI tool call or legacy function_call."""
    if not isinstance(call, dict):
        return
    function = call.get("function", call)
    if not isinstance(function, dict):
        return
    if isinstance(function.get("name"), str):
        yield function["name"]
    if "arguments" in function:
        yield _json_text(function["arguments"])


_OPENAI_TOKENS_PER_MESSAGE = 3
_OPENAI_TOKENS_PER_NAME = 1
_OPENAI_REPLY_PRIMING = 3


def _count_openai_prompt(tokenizer: Tokenizer, messages: Iterable[Any]) -> int:
    """
    The OpenAI cookbook rule ("How to count tokens with tiktoken") for
    gpt-3.5-turbo-0613 and every later chat model: 3 tokens per message, the
    tokens of each string field, 1 more for ``name``, 3 to prime the reply.

    Extended the way the API serialises the rest: text parts of list content,
    and the function name + arguments of each tool call.  Tool definitions
    (``tools=``) are not messages and are not counted here.
    """
    total = _OPENAI_REPLY_PRIMING
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _OPENAI_TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += sum(tokenizer.count(t) for t in _content_texts(value))
            elif key == "tool_calls" and isinstance(value, list):
                total += sum(tokenizer.count(t) for call in value for t in _call_texts(call))
            elif key == "function_call":
                total += sum(tokenizer.count(t) for t in _call_texts(value))
            elif isinstance(value, str):
                total += tokenizer.count(value)
                if key == "name":
                    total += _OPENAI_TOKENS_PER_NAME
    return total


_CLAUDE_TOKENS_PER_MESSAGE = 4
_CLAUDE_REPLY_PRIMING = 4


def _count_claude_prompt(tokenizer: Tokenizer, messages: Iterable[Any]) -> int:
    """
    An approximation of Anthropic's input_tokens, documented because it is one.

    Anthropic does not publish its chat framing.  We count the text of every
    message (a system prompt is passed as a message with role "system"),
    including tool_use names + JSON input and tool_result text, and add the
    cost of the legacy turn markers, measured with the same tokenizer:
    ``"\\n\\nHuman:"`` (4 tokens) per message and ``"\\n\\nAssistant:"``
    (4) to prime the reply.  OpenAI-shaped tool_calls are counted too, since
    translated requests may still carry them.  Where a request has a usage
    report, ``ClaudeCalibration`` corrects the residual error for its output.
    """
    total = _CLAUDE_REPLY_PRIMING
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _CLAUDE_TOKENS_PER_MESSAGE
        total += sum(tokenizer.count(t) for t in _content_texts(message.get("content")))
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            total += sum(tokenizer.count(t) for call in calls for t in _call_texts(call))
    return total


def count_prompt_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """
    Prompt tokens of a chat request, framed the way ``model``'s provider counts.

    Entries and fields of shapes we do not recognise are skipped rather than
    raised on: this runs while finalising a meter, when the request already
    passed validation and an exception would lose the whole record.
    """
    choice = tokenizer_for_model(model)
    if choice.tokenizer.name == CLAUDE_TOKENIZER_NAME:
        return _count_claude_prompt(choice.tokenizer, messages)
    return _count_openai_prompt(choice.tokenizer, messages)


@implementer(ITokenCounter)
@attrs.frozen
class TokenCounter:
    """The real ``ITokenCounter``: ``count_text_tokens``/``count_prompt_tokens``."""

    def count_text(self, model: str, text: str) -> int:
        """See ``count_text_tokens``."""
        return count_text_tokens(model, text)

    def count_prompt(self, model: str, messages: list[dict[str, Any]]) -> int:
        """See ``count_prompt_tokens``."""
        return count_prompt_tokens(model, messages)
