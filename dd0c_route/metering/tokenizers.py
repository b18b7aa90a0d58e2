# Tests: tests/test_tokens.py
"""
Which tokenizer counts a model's text, and whether that choice was a guess.

OpenAI's tokenizers are public (tiktoken, with offline vocabularies from
:mod:`.vocab`), so OpenAI models are counted exactly; Claude models are
counted with the local ``anthropic_tokenizer`` BPE, an honest estimate
(see :mod:`.calibration`).  An unknown model is counted with a stated
fallback encoding, flagged and logged once: never a silent guess.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional, Protocol

import anthropic_tokenizer
import attrs
import tiktoken
from twisted.logger import Logger

from dd0c_route.metering import vocab
from dd0c_route.metering.model_names import CLAUDE_FAMILY, family_matches, is_claude_model, normalize_model

__all__ = [
    "CLAUDE_TOKENIZER_NAME",
    "FALLBACK_ENCODING",
    "EncodingChoice",
    "Tokenizer",
    "TokenizerChoice",
    "encoding_for_model",
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
_WARNED_LIMIT = 256
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _encoding_name_for(name: str) -> Optional[str]:
    best: Optional[tuple[str, str]] = None
    for prefix, encoding_name in _ENCODING_FAMILIES:
        if family_matches(name, prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, encoding_name)
    return None if best is None else best[1]


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
    if family_matches(name, CLAUDE_FAMILY):
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
        return CLAUDE_TOKENIZER_NAME

    def count(self, text: str) -> int:
        if not text:
            return 0
        try:
            return int(anthropic_tokenizer.count_tokens(text))
        except UnicodeEncodeError:
            return int(anthropic_tokenizer.count_tokens(_without_surrogates(text)))


CLAUDE_TOKENIZER_NAME = "claude"
"""The ``name`` of the tokenizer Claude models are counted with."""

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
