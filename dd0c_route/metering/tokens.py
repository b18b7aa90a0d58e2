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

Every function here is pure and synchronous.  Counting 300 tokens costs
microseconds (see ``bench/token_count.py``), so it can run on the reactor;
the one slow step, parsing the vocabularies, happens once per process and
can be done at startup with ``vocab.preload()``.
"""

from __future__ import annotations

import json
import math
import threading
from fractions import Fraction
from typing import Any, Iterable, Iterator, Optional, Protocol

import anthropic_tokenizer
import attrs
import tiktoken
from twisted.logger import Logger
from zope.interface import Interface, implementer

from dd0c_route.metering import vocab

__all__ = [
    "FALLBACK_ENCODING",
    "ClaudeCalibration",
    "EncodingChoice",
    "ITokenCounter",
    "TokenCounter",
    "Tokenizer",
    "TokenizerChoice",
    "count_prompt_tokens",
    "count_text_tokens",
    "encoding_for_model",
    "is_claude_model",
    "normalize_model",
    "preload_for_kinds",
    "tokenizer_for_model",
]

_log = Logger()

FALLBACK_ENCODING = "o200k_base"
"""What unknown models are counted with: the newest OpenAI encoding."""

_ENCODING_FAMILIES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
_CLAUDE_FAMILY = "claude"
_SEPARATORS = frozenset("-.:@_")

_WARNED_LIMIT = 256
_warned: set[str] = set()
_warned_lock = threading.Lock()


def normalize_model(model: str) -> str:
    """
    The bare model id that tables are keyed by.

    Strips what routers and clouds add around an id so that one table serves
    them all: case and whitespace, a provider prefix (``openai/gpt-4o``), a
    Bedrock region/vendor prefix (``us.anthropic.claude-...``), a fine-tune
    wrapper (``ft:gpt-4o-mini-2024-07-18:org::id``) and Vertex's ``@`` before
    a date.  Dated and versioned suffixes are kept: tables decide whether a
    suffix may resolve to a base entry.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    name = name.rsplit("/", 1)[-1]
    marker = "anthropic."
    if marker in name:
        name = name.split(marker, 1)[1]
    return name.replace("@", "-")


def _family_matches(name: str, prefix: str) -> bool:
    if not name.startswith(prefix):
        return False
    return len(name) == len(prefix) or name[len(prefix)] in _SEPARATORS


def _encoding_name_for(name: str) -> Optional[str]:
    best: Optional[tuple[str, str]] = None
    for prefix, encoding_name in _ENCODING_FAMILIES:
        if _family_matches(name, prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, encoding_name)
    return None if best is None else best[1]


def is_claude_model(model: str) -> bool:
    """Whether ``model`` is an Anthropic Claude model (any naming scheme)."""
    return _family_matches(normalize_model(model), _CLAUDE_FAMILY)


def _warn_fallback(model: str) -> None:
    with _warned_lock:
        if model in _warned or len(_warned) > _WARNED_LIMIT:
            return
        _warned.add(model)
        full = len(_warned) > _WARNED_LIMIT
    _log.warn(
        "No tokenizer is known for model {model!r}; local token counts for it are estimated with {encoding}",
        model=model,
        encoding=FALLBACK_ENCODING,
    )
    if full:
        _log.warn(
            "More than {limit} unknown models seen; further ones are counted with {encoding} without a warning each",
            limit=_WARNED_LIMIT,
            encoding=FALLBACK_ENCODING,
        )


@attrs.frozen
class EncodingChoice:
    """
    The tiktoken encoding for a model, and whether it was a guess.

    Unpacks like the tuple ``(encoding, fallback)``.
    """

    encoding: tiktoken.Encoding
    fallback: bool

    def __iter__(self) -> Iterator[Any]:
        return iter((self.encoding, self.fallback))


def encoding_for_model(model: str) -> EncodingChoice:
    """
    The tiktoken encoding OpenAI uses for ``model``.

    Unknown models get ``FALLBACK_ENCODING`` with ``fallback=True`` and one
    warning per model name.  Claude models are refused: tiktoken is not their
    tokenizer, and ``tokenizer_for_model`` covers both providers.
    """
    name = normalize_model(model)
    if _family_matches(name, _CLAUDE_FAMILY):
        raise ValueError(
            f"Claude models are not counted with a tiktoken encoding; use tokenizer_for_model: model={model!r}"
        )
    encoding_name = _encoding_name_for(name)
    if encoding_name is None:
        _warn_fallback(model)
        return EncodingChoice(vocab.get_encoding(FALLBACK_ENCODING), True)
    return EncodingChoice(vocab.get_encoding(encoding_name), False)


class Tokenizer(Protocol):
    """Anything that counts the tokens of a text: the one operation metering needs."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int: ...


def _without_surrogates(text: str) -> str:
    # Lone surrogates (legal in JSON "\ud800") cannot be UTF-8 encoded; tiktoken
    # replaces them with U+FFFD and so do we, for every tokenizer alike.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@attrs.frozen
class _TiktokenTokenizer:
    encoding: tiktoken.Encoding

    @property
    def name(self) -> str:
        return self.encoding.name

    def count(self, text: str) -> int:
        # encode_ordinary is encode(text, disallowed_special=()): "<|endoftext|>"
        # in user text is just text, never an error.
        return len(self.encoding.encode_ordinary(text)) if text else 0


@attrs.frozen
class _ClaudeTokenizer:
    """
    The local Claude BPE from ``anthropic_tokenizer`` (never its API client).

    Anthropic has not published the tokenizer of Claude 3 and later; this one
    is close but not exact, hence ``ClaudeCalibration``.
    """

    @property
    def name(self) -> str:
        return "claude"

    def count(self, text: str) -> int:
        if not text:
            return 0
        try:
            return int(anthropic_tokenizer.count_tokens(text))
        except UnicodeEncodeError:
            return int(anthropic_tokenizer.count_tokens(_without_surrogates(text)))


_CLAUDE = _ClaudeTokenizer()


@attrs.frozen
class TokenizerChoice:
    """The tokenizer for a model, and whether it was a guess."""

    tokenizer: Tokenizer
    fallback: bool


def tokenizer_for_model(model: str) -> TokenizerChoice:
    """The tokenizer to count ``model``'s text with, for either provider."""
    if is_claude_model(model):
        return TokenizerChoice(_CLAUDE, False)
    encoding, fallback = encoding_for_model(model)
    return TokenizerChoice(_TiktokenTokenizer(encoding), fallback)


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
    if choice.tokenizer.name == _CLAUDE.name:
        return _count_claude_prompt(choice.tokenizer, messages)
    return _count_openai_prompt(choice.tokenizer, messages)


class ITokenCounter(Interface):
    """The counting seam: providers and the meter count through this."""

    def count_text(model: str, text: str) -> int:  # type: ignore[empty-body]
        """Tokens of ``text`` for ``model`` without chat framing."""

    def count_prompt(model: str, messages: list[dict[str, Any]]) -> int:  # type: ignore[empty-body]
        """Prompt tokens of chat ``messages`` for ``model``."""


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


_MIN_RATIO = Fraction(1, 2)
_MAX_RATIO = Fraction(2)


def _check_ratio(instance: Any, attribute: Any, value: Fraction) -> None:
    if not _MIN_RATIO <= value <= _MAX_RATIO:
        raise ValueError(f"A calibration ratio must lie between {_MIN_RATIO} and {_MAX_RATIO}: ratio={value}")


@attrs.frozen
class ClaudeCalibration:
    """
    How far our local Claude count is off, learnt from one request's prompt.

    The local tokenizer predates Claude 3, and Anthropic adds framing we can
    only estimate, so local counts drift from billed ones by model and by
    language.  When a request's usage report gives input tokens but the
    output was cut before its final usage, the prompt tells us the drift
    for *this* model and *this* text: ``reported / local``.  We scale the
    local count of the delivered output by it.

    The ratio is clamped to [1/2, 2]: beyond that the two counts are not of
    the same thing (a cache hit, tools we did not count, a wrong model), and
    trusting them would let one odd report double or zero a bill.  It is a
    ``Fraction`` so that scaling is exact and reproducible; it never touches
    money directly.
    """

    ratio: Fraction = attrs.field(default=Fraction(1), validator=_check_ratio)

    @classmethod
    def from_prompt(cls, local_prompt_tokens: int, reported_input_tokens: Optional[int]) -> ClaudeCalibration:
        """
        The calibration for one request, or the identity when there is nothing
        to learn from (no report, or an empty count on either side).

        ``reported_input_tokens`` must cover the same text as the local count:
        for Anthropic that is ``input_tokens + cache_read_input_tokens +
        cache_creation_input_tokens``, since ``input_tokens`` alone excludes
        cached parts of the prompt.
        """
        if reported_input_tokens is None or local_prompt_tokens <= 0 or reported_input_tokens <= 0:
            return cls()
        ratio = Fraction(reported_input_tokens, local_prompt_tokens)
        return cls(min(max(ratio, _MIN_RATIO), _MAX_RATIO))

    def scale(self, local_tokens: int) -> int:
        """``local_tokens`` times the ratio, rounded half up (so 1 stays >= 1)."""
        if local_tokens < 0:
            raise ValueError(f"A token count cannot be negative: local_tokens={local_tokens}")
        return math.floor(local_tokens * self.ratio + Fraction(1, 2))


def preload_for_kinds(kinds: Iterable[str]) -> None:
    """
    Load, verify and warm the tokenizers the configured providers need.

    Building a tokenizer holds the GIL for 100-300 ms (tiktoken builds its
    BPE tables in one native call), so loading one lazily, in a worker
    thread, on the first stream cut short would stall the reactor for that
    long.  The tap calls this once at start, before the reactor serves; the
    price is the tables' memory from the start (see docs/metering.md).
    """
    from .vocab import get_encoding

    kinds = set(kinds)
    if "openai" in kinds:
        get_encoding("o200k_base")
        get_encoding("cl100k_base")
    if "anthropic" in kinds:
        count_text_tokens("claude-sonnet-4-5", "warm up")
    _return_freed_memory()


def _return_freed_memory() -> None:
    """
    Building the tables frees tens of MB of temporaries that glibc keeps
    mapped; hand them back to the system once (about 10 MiB of RSS).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
