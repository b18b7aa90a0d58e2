"""
What local token counting costs, and whether it may run on the reactor.

Scenario: a mass disconnect.  Each cut stream is finalised by counting its
delivered text once (~300 tokens); 1,000 of them at once must not stall the
reactor.  Also the per-KiB cost of each tokenizer on mixed text.

Absolute times depend on the machine (pyperf records it), so the script also
prints each result as a ratio to baselines measured in the same run:
``len(text)`` and ``text.encode("utf-8")`` of the same input.

    python bench/token_count.py -o token_count.json
    python bench/token_count.py --fast          # quick look
"""

from __future__ import annotations

import functools
import itertools
import random
from typing import Any, Callable, Optional

import pyperf

from dd0c_route.metering import vocab
from dd0c_route.metering.tokens import count_text_tokens

__all__ = ["main"]

_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an have not "
    "stream token proxy latency request response client server reactor deferred metering "
    "def return class import self None True yield async await lambda {} [] () => == != "
    "internationalization configuration 2026 3.14159 0x7f http://example.com/v1/chat "
    "日本語 テキスト 中文 文本 한국어 텍스트 Привет мир مرحبا שלום 🌍 🔥 👩‍👩‍👧 ✅"
).split()


def _text(rng: random.Random, size_bytes: int) -> str:
    parts: list[str] = []
    total = 0
    while total < size_bytes:
        word = rng.choice(_WORDS)
        sep = "\n" if rng.random() < 0.05 else " "
        parts.append(word + sep)
        total += len((word + sep).encode("utf-8"))
    encoded = "".join(parts).encode("utf-8")[:size_bytes]
    return encoded.decode("utf-8", "ignore")


@functools.cache
def _kib() -> str:
    return _text(random.Random(4), 1024)


@functools.cache
def _streams() -> list[str]:
    """1,000 distinct texts of exactly 300 o200k tokens each."""
    encoding = vocab.get_encoding("o200k_base")
    texts = []
    for seed in range(1000):
        ids = encoding.encode_ordinary(_text(random.Random(seed), 2048))
        texts.append(encoding.decode(ids[:300], errors="ignore"))
    return texts


def _count_all(model: str, texts: list[str]) -> int:
    return sum(count_text_tokens(model, t) for t in texts)


def _encode_all(texts: list[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


def _timed(func: Callable[..., Any], *arguments: Callable[[], Any]) -> Callable[[int], float]:
    """
    A pyperf time function whose inputs (and vocabularies) are built lazily,
    so each worker process only pays the setup of the benchmark it runs.
    """

    def time_func(loops: int) -> float:
        args = [make() for make in arguments]
        func(*args)
        start = pyperf.perf_counter()
        for _ in itertools.repeat(None, loops):
            func(*args)
        return pyperf.perf_counter() - start

    return time_func


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


def _ratio_report(results: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    print()
    print("Ratios (mean time / baseline mean time, same run):")
    for name, baseline in pairs:
        bench, base = results.get(name), results.get(baseline)
        if bench is None or base is None:
            continue
        print(f"  {name:<28} {bench.mean() / base.mean():>10.1f}x {baseline}")


def main() -> None:
    runner = pyperf.Runner()
    runner.metadata["description"] = "dd0c-route local token counting cost"
    benches: list[tuple[str, Callable[[int], float]]] = [
        ("baseline_len_1kib", _timed(len, _kib)),
        ("baseline_encode_1kib", _timed(str.encode, _kib, _const("utf-8"))),
        ("o200k_1kib", _timed(count_text_tokens, _const("gpt-4o"), _kib)),
        ("cl100k_1kib", _timed(count_text_tokens, _const("gpt-4"), _kib)),
        ("claude_1kib", _timed(count_text_tokens, _const("claude-sonnet-4-5"), _kib)),
        ("baseline_encode_1000_streams", _timed(_encode_all, _streams)),
        ("o200k_1000_streams", _timed(_count_all, _const("gpt-4o"), _streams)),
        ("cl100k_1000_streams", _timed(_count_all, _const("gpt-4"), _streams)),
        ("claude_1000_streams", _timed(_count_all, _const("claude-sonnet-4-5"), _streams)),
    ]
    results: dict[str, Optional[pyperf.Benchmark]] = {}
    for name, time_func in benches:
        results[name] = runner.bench_time_func(name, time_func)

    if runner.args.worker:
        return
    _ratio_report(
        results,
        [
            ("o200k_1kib", "baseline_len_1kib"),
            ("o200k_1kib", "baseline_encode_1kib"),
            ("cl100k_1kib", "baseline_encode_1kib"),
            ("claude_1kib", "baseline_encode_1kib"),
            ("cl100k_1kib", "o200k_1kib"),
            ("claude_1kib", "o200k_1kib"),
            ("o200k_1000_streams", "baseline_encode_1000_streams"),
            ("cl100k_1000_streams", "baseline_encode_1000_streams"),
            ("claude_1000_streams", "baseline_encode_1000_streams"),
        ],
    )
    for name in ("o200k_1000_streams", "claude_1000_streams"):
        bench = results.get(name)
        if bench is not None:
            print(f"  {name}: {bench.mean() * 1e3:.2f} ms of reactor time for 1,000 cut streams")


if __name__ == "__main__":
    main()
