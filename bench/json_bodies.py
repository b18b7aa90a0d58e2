"""
Request bodies: the stdlib ``json`` against ``orjson``, same run (issue #18).

What the proxy does with a client's chat body, at 2 KB to 400 KB (long
prompts of 100 KB+ are common): parse it with the nesting check
(the stdlib path: ``json.loads`` and ``boundedjson``'s depth walk, as
before #18; against ``loads_bounded``: ``orjson`` and its walk, which also
looks for integers orjson would read as floats) and, when the routed
model differs from the requested one, serialize it again.  Read the ratios;
absolute times move with the machine.

Run: ``PYTHONPATH=. python bench/json_bodies.py`` (``pip install orjson``)
"""

from __future__ import annotations

import json
import random
import timeit
from typing import Any, Callable

import orjson

from dd0c_route.boundedjson import MAX_DEPTH, _depth_over, loads_bounded

_WORDS = "the quick brown fox jumps over a lazy dog while é ü 中文 code { } ; => () \n".split(" ")


def chat_body(kib: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
    size = 0
    while size < kib * 1024:
        message = {"role": rng.choice(["user", "assistant"]), "content": " ".join(rng.choice(_WORDS) for _ in range(400))}
        messages.append(message)
        size += len(json.dumps(message))
    return json.dumps({"model": "gpt-4o-mini", "messages": messages, "stream": True}).encode()


def best_us(func: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=7)) / number * 1e6


def main() -> None:
    for kib in (2, 12, 100, 400):
        raw = chat_body(kib)
        body = dict(json.loads(raw), model="routed-model")
        number = max(20, 20000 // kib)
        parse = best_us(lambda raw=raw: _depth_over(json.loads(raw), MAX_DEPTH), number)
        parse_or = best_us(lambda raw=raw: loads_bounded(raw), number)
        dump = best_us(lambda body=body: json.dumps(body).encode("utf-8"), number)
        dump_or = best_us(lambda body=body: orjson.dumps(body), number)
        print(f"{len(raw) / 1024:6.0f} KB: parse+check json {parse:7.0f} us, loads_bounded (orjson) {parse_or:7.0f} us ({parse / parse_or:4.1f}x) | "
              f"serialize json {dump:7.0f} us, orjson {dump_or:7.0f} us ({dump / dump_or:4.1f}x)")


if __name__ == "__main__":
    main()
