"""
What redaction costs: per KiB of log text, and per log event.

Scenarios, each measured against a baseline in the same run so the ratios
are comparable across machines:

- ``redact/clean``: 1 KiB of typical proxy log text with no secret (the
  common case: the substring pre-checks reject it) vs ``str.replace`` and a
  plain copy of the same text.
- ``redact/one-key``: the same text with one provider key in it (every
  regex family whose marker is present runs).
- ``observer``: one ``Logger.info``-style event through a text file observer
  writing to a null stream, plain vs behind :class:`RedactingObserver`.

Run: ``PYTHONPATH=. python bench/redaction_cost.py --inherit-environ=PYTHONPATH``
``-o redaction_cost.json`` (pyperf
records the machine in the metadata); ratios are printed at the end.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pyperf
from twisted.logger import LogLevel, textFileLogObserver

from dd0c_route.redacting_observer import RedactingObserver
from dd0c_route.redaction import redact_sensitive

__all__: list[str] = []

_LINE = (
    "2025-11-26T05:16:00+0000 [dd0c_route.relay.relay#info] stream finished "
    "model=gpt-4o-mini provider=openai status=200 prompt_tokens=123 "
    "completion_tokens=456 duration_ms=1234 client=127.0.0.1:53122 "
    "path=/v1/chat/completions request_id=req_8f2c1e\n"
)
CLEAN = (_LINE * (1024 // len(_LINE) + 1))[:1024]
WITH_KEY = CLEAN[:512] + " sk-proj-" + secrets.token_urlsafe(48) + " " + CLEAN[512 + 74 :]


class _NullFile:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _event() -> dict[str, Any]:
    return {
        "log_format": "stream finished model={model} status={status} tokens={tokens}",
        "model": "gpt-4o-mini",
        "status": 200,
        "tokens": 579,
        "log_level": LogLevel.info,
        "log_namespace": "dd0c_route.relay.relay",
        "log_source": None,
        "log_time": time.time(),
    }


def _loop(func: Any, arg: Any) -> Any:
    def timed(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            func(arg)
        return time.perf_counter() - start

    return timed


def main() -> None:
    runner = pyperf.Runner()
    runner.metadata["description"] = "dd0c-route redaction cost"
    plain = textFileLogObserver(_NullFile())
    redacting = RedactingObserver([textFileLogObserver(_NullFile())])
    event = _event()

    results = {
        "copy": runner.bench_time_func("baseline/copy-1KiB", _loop(lambda s: s.encode().decode(), CLEAN)),
        "replace": runner.bench_time_func("baseline/str.replace-1KiB", _loop(lambda s: s.replace("=", ":"), CLEAN)),
        "clean": runner.bench_time_func("redact/clean-1KiB", _loop(redact_sensitive, CLEAN)),
        "key": runner.bench_time_func("redact/one-key-1KiB", _loop(redact_sensitive, WITH_KEY)),
        "plain": runner.bench_time_func("observer/plain", _loop(plain, event)),
        "redacting": runner.bench_time_func("observer/redacting", _loop(redacting, event)),
    }
    if any(result is None for result in results.values()):
        return  # a pyperf worker process
    mean = {name: result.mean() for name, result in results.items()}
    print()
    print(
        f"redact clean 1 KiB:   {mean['clean'] * 1e6:8.2f} us  "
        f"= {mean['clean'] / mean['replace']:.1f}x str.replace, "
        f"{mean['clean'] / mean['copy']:.1f}x copy"
    )
    print(
        f"redact one-key 1 KiB: {mean['key'] * 1e6:8.2f} us  "
        f"= {mean['key'] / mean['replace']:.1f}x str.replace, "
        f"{mean['key'] / mean['copy']:.1f}x copy"
    )
    print(
        f"observer per event:   {mean['redacting'] * 1e6:8.2f} us vs "
        f"{mean['plain'] * 1e6:.2f} us plain = {mean['redacting'] / mean['plain']:.2f}x, "
        f"+{(mean['redacting'] - mean['plain']) * 1e6:.2f} us"
    )


if __name__ == "__main__":
    main()
