"""
What the ledger journal (ledger/journal.py) costs per finished request.

Scenarios, each against a baseline measured in the same run:

- ``journal/append``: the hot path's part, turning a record into a row
  (:meth:`Journal.append`), vs ``writer.submit`` without a journal (a deque
  append) and vs serializing the record as the spool does (``json.dumps`` of
  ``record_to_json``).
- ``journal/turn-of-1`` and ``journal/turn-of-16``: append plus the write at
  the next reactor iteration, per record, when each iteration finishes 1 or 16
  requests (the store commit runs every 100 iterations, as the writer's
  flush interval would).

Run: ``PYTHONPATH=. python bench/journal_cost.py --inherit-environ=PYTHONPATH -o journal_cost.json``
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
import time
from decimal import Decimal

import pyperf
from twisted.internet.task import Clock

from dd0c_route.ledger.journal import Journal
from dd0c_route.ledger.records import UsageRecord, record_to_json

__all__: list[str] = []

RECORD = UsageRecord(
    request_id="req_" + "a" * 24, response_id="chatcmpl-xyz", key_id="key_abc", team="t", provider="openai",
    model_requested="gpt-4o", model="gpt-4o-mini", prompt_tokens=100, completion_tokens=20, cached_tokens=0,
    cost_usd=Decimal("0.000123"), status=200, stream=True, ttfb_ms=1.2, latency_ms=3.4, created_at=1796157086.48,
    route_rule="default", complexity="simple", cost_requested_usd=Decimal("0.0012"),
    price_source="genai-prices 0.2.3", price_tier="standard",
)


def _journal() -> tuple[Journal, Clock]:
    clock = Clock()
    return Journal(os.path.join(tempfile.mkdtemp(prefix="dd0c-journal-bench-"), "j"), clock), clock


def bench_append(loops: int) -> float:
    journal, _clock = _journal()
    start = time.perf_counter()
    for _ in range(loops):
        journal.append(RECORD)
    elapsed = time.perf_counter() - start
    journal.committed(loops)
    return elapsed


def bench_deque(loops: int) -> float:
    queue: collections.deque[UsageRecord] = collections.deque()
    start = time.perf_counter()
    for _ in range(loops):
        queue.append(RECORD)
    return time.perf_counter() - start


def bench_json(loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        json.dumps(record_to_json(RECORD), separators=(",", ":"))
    return time.perf_counter() - start


def bench_turns(per_turn: int):  # type: ignore[no-untyped-def]
    def run(loops: int) -> float:
        journal, clock = _journal()
        turns = max(1, loops // per_turn)
        start = time.perf_counter()
        for turn in range(turns):
            for _ in range(per_turn):
                journal.append(RECORD)
            clock.advance(0)
            if turn % 100 == 99:
                journal.committed(100 * per_turn)
        elapsed = time.perf_counter() - start
        return elapsed * loops / (turns * per_turn)

    return run


def main() -> None:
    runner = pyperf.Runner()
    runner.metadata["description"] = "dd0c-route ledger journal cost per record"
    runner.bench_time_func("baseline/deque-append", bench_deque)
    runner.bench_time_func("baseline/record-json", bench_json)
    runner.bench_time_func("journal/append", bench_append)
    runner.bench_time_func("journal/turn-of-1", bench_turns(1))
    runner.bench_time_func("journal/turn-of-16", bench_turns(16))


if __name__ == "__main__":
    main()
