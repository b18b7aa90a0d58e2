"""
The latency gate: what the proxy adds to each request, against the provider
reached directly and against the floor (a bare Twisted relay), in one run.

Starts the fake provider (``twistd dd0c-route-fake``), the floor relay
(``floor_relay.py``) and the proxy (``twistd dd0c-route``) as separate
processes on 127.0.0.1, then sends the same chat completion to each, one
request at a time, rotating the order every round (direct, floor, proxy;
floor, proxy, direct; ...) so drift and noise hit all three alike.  Figures:

- ``nonstream``: POST → whole JSON answer received.
- ``ttfb``: streaming POST → first SSE event received.
- ``total``: streaming POST → end of the stream.
- ``chunk``: streaming, each SSE event's arrival since the POST; its
  overhead (proxy minus direct for the same event index of the same round)
  is the per-chunk added latency (it includes the request-path overhead).
- ``chunk_rel``: each later SSE event's arrival since the first event: its
  overhead is what the relay adds to a chunk on the response path alone.

The overhead of each round is a paired difference (proxy minus direct,
same round), and its p50/p90/p99/max are reported.  The gate fails (exit 1)
when the p99 overhead of ``nonstream`` or ``ttfb`` exceeds ``--gate-ms``.

Results: a pyperf suite (machine metadata included) under ``bench/results/``
named with a timestamp; when an earlier one exists, ``pyperf compare_to``
runs against it.  ``--inject-delay-ms N`` starts the proxy through
``slowed_proxy.py`` (a blocking N ms sleep per request) to show the gate fail.

Run: ``PYTHONPATH=. python bench/proxy_latency.py [--gate-ms 5] [--rounds 1000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pyperf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import Client, Timing
from _procs import BENCH, Stack

__all__: list[str] = []

TARGETS = ("direct", "floor", "proxy")
KINDS = ("nonstream", "ttfb", "total", "chunk", "chunk_rel")
GATED = ("nonstream", "ttfb")
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark, please."}]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _body(stream: bool) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}).encode()


class Measure:
    """Per-target values and per-round paired differences, in seconds."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {k: {t: [] for t in TARGETS} for k in KINDS}
        self.diffs: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
        self.mismatched_streams = 0

    def diff(self, kind: str, a: str, b: str, value: float) -> None:
        self.diffs[kind].setdefault(f"{a}-{b}", []).append(value)

    def add_round(self, kind: str, per_target: dict[str, list[float]]) -> None:
        for target, values in per_target.items():
            self.values[kind][target].extend(values)
        names = list(per_target)
        for a, b in (("proxy", "direct"), ("floor", "direct"), ("proxy", "floor")):
            if a in names and b in names:
                for x, y in zip(per_target[a], per_target[b], strict=False):
                    self.diff(kind, a, b, x - y)


def run_rounds(stack: Stack, measure: Optional[Measure], rounds: int, stream: bool) -> None:
    targets = stack.targets()
    names = [t for t in TARGETS if t in targets]
    clients = {name: Client(targets[name][0]) for name in names}
    body = _body(stream)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        timings: dict[str, Timing] = {}
        for name in order:
            _port, prefix, headers = targets[name]
            timing = clients[name].post(prefix + "/chat/completions", headers, body, stream)
            if timing.status != 200:
                raise RuntimeError(f"{name} answered {timing.status}: {timing.body[:300]!r}")
            timings[name] = timing
        if measure is None:
            continue
        if not stream:
            measure.add_round("nonstream", {n: [t.end - t.sent] for n, t in timings.items()})
            continue
        if any(not t.events for t in timings.values()):
            raise RuntimeError("a stream ended without any SSE event")
        counts = {len(t.events) for t in timings.values()}
        if len(counts) > 1:
            measure.mismatched_streams += 1
        shortest = min(counts)
        measure.add_round("ttfb", {n: [t.events[0] - t.sent] for n, t in timings.items()})
        measure.add_round("total", {n: [t.end - t.sent] for n, t in timings.items()})
        measure.add_round("chunk", {n: [e - t.sent for e in t.events[:shortest]] for n, t in timings.items()})
        measure.add_round("chunk_rel", {n: [e - t.events[0] for e in t.events[1:shortest]] for n, t in timings.items()})
    for client in clients.values():
        client.close()


def _ms(value: float) -> str:
    return f"{value * 1000:8.3f}"


def report(measure: Measure, gate_ms: float) -> tuple[list[str], bool]:
    """The table (lines) and whether the gate passed."""
    lines = []
    targets = [t for t in TARGETS if measure.values["nonstream"][t]]
    header = f"{'figure':<10} {'target':<14} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    lines += ["Latency per target", header, "-" * len(header)]
    for kind in KINDS:
        for target in targets:
            values = measure.values[kind][target]
            if values:
                lines.append(
                    f"{kind:<10} {target:<14} {len(values):>6} {_ms(percentile(values, 50))} {_ms(percentile(values, 90))} "
                    f"{_ms(percentile(values, 99))} {_ms(max(values))}"
                )
    lines += ["", "Ratios (same run): proxy/floor and proxy/direct at p50 and p99", "-" * len(header)]
    for kind in KINDS:
        parts = []
        for base in ("floor", "direct"):
            if measure.values[kind].get(base) and measure.values[kind]["proxy"]:
                p, b = measure.values[kind]["proxy"], measure.values[kind][base]
                parts.append(
                    f"proxy/{base} p50 {percentile(p, 50) / percentile(b, 50):5.2f}x p99 {percentile(p, 99) / percentile(b, 99):5.2f}x"
                )
        lines.append(f"{kind:<10} " + "   ".join(parts))
    lines += ["", "Overhead, paired per round (a minus b)", header, "-" * len(header)]
    passed = True
    verdicts = []
    for kind in KINDS:
        for pair, values in measure.diffs[kind].items():
            p99 = percentile(values, 99)
            lines.append(
                f"{kind:<10} {pair:<14} {len(values):>6} {_ms(percentile(values, 50))} {_ms(percentile(values, 90))} "
                f"{_ms(p99)} {_ms(max(values))}"
            )
            if kind in GATED and pair == "proxy-direct":
                ok = p99 * 1000 <= gate_ms
                passed = passed and ok
                verdicts.append(f"{kind} p99 overhead {p99 * 1000:.3f} ms {'<=' if ok else '>'} gate {gate_ms} ms: {'PASS' if ok else 'FAIL'}")
    if measure.mismatched_streams:
        lines.append(f"note: {measure.mismatched_streams} rounds had streams with different event counts")
    lines += ["", *verdicts, f"GATE {'PASSED' if passed else 'FAILED'}"]
    return lines, passed


def suite(measure: Measure, meta: dict[str, Any], run_size: int = 50) -> pyperf.BenchmarkSuite:
    """Every per-target distribution as a pyperf benchmark; overhead percentiles in metadata."""
    machine = pyperf.Run([1.0], metadata={"name": "machine"}, collect_metadata=True).get_metadata()
    machine.pop("name", None)
    benchmarks = []
    for kind in KINDS:
        for target in TARGETS:
            values = [v for v in measure.values[kind][target] if v > 0]
            if not values:
                continue
            metadata = dict(machine, **meta, name=f"{kind}/{target}", unit="second", loops=1)
            pair = measure.diffs[kind].get(f"{target}-direct")
            if pair:
                for q in (50, 90, 99):
                    metadata[f"overhead_vs_direct_p{q}_ms"] = round(percentile(pair, q) * 1000, 4)
                metadata["overhead_vs_direct_max_ms"] = round(max(pair) * 1000, 4)
            runs = [
                pyperf.Run(values[i : i + run_size], metadata=metadata, collect_metadata=False)
                for i in range(0, len(values), run_size)
            ]
            benchmarks.append(pyperf.Benchmark(runs))
    return pyperf.BenchmarkSuite(benchmarks)


def save(result: pyperf.BenchmarkSuite, results_dir: Path, tag: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    previous = sorted(results_dir.glob(f"{tag}-*.json"))
    path = results_dir / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result.dump(str(path), replace=True)
    print(f"\nwrote {path}")
    if previous:
        print(f"compared with the previous run {previous[-1].name} (absolute times: mind the machine's noise)")
        subprocess.run([sys.executable, "-m", "pyperf", "compare_to", str(previous[-1]), str(path), "--table"], check=False)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="dd0c-route latency gate (direct vs floor vs proxy)")
    parser.add_argument("--gate-ms", type=float, default=5.0, help="fail when the p99 overhead exceeds this (default 5)")
    parser.add_argument("--rounds", type=int, default=1000, help="non-streaming rounds (each: one request per target)")
    parser.add_argument("--stream-rounds", type=int, default=300, help="streaming rounds")
    parser.add_argument("--warmup", type=int, default=50, help="rounds discarded first, per mode")
    parser.add_argument("--chunks", type=int, default=10, help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=1.0, help="the fake's delay between content chunks")
    parser.add_argument("--inject-delay-ms", type=float, default=0.0, help="slow the proxy by N ms per request (gate test)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor relay")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="where the pyperf JSON goes")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)

    measure = Measure()
    meta: dict[str, Any] = {
        "description": "dd0c-route latency: direct vs floor vs proxy",
        "rounds": args.rounds,
        "stream_rounds": args.stream_rounds,
        "chunks": args.chunks,
        "chunk_delay_ms": args.chunk_delay_ms,
        "inject_delay_ms": args.inject_delay_ms,
        "gate_ms": args.gate_ms,
    }
    with Stack(inject_delay_ms=args.inject_delay_ms, floor=not args.no_floor, treq_floor=False) as stack:
        stack.scenario(chunk_count=args.chunks, chunk_delay=args.chunk_delay_ms / 1000.0)
        t0 = time.monotonic()
        run_rounds(stack, None, args.warmup, stream=False)
        run_rounds(stack, measure, args.rounds, stream=False)
        run_rounds(stack, None, args.warmup, stream=True)
        run_rounds(stack, measure, args.stream_rounds, stream=True)
        meta["duration_s"] = round(time.monotonic() - t0, 1)
    lines, passed = report(measure, args.gate_ms)
    print("\n".join(lines))
    if not args.no_save:
        tag = "proxy_latency" if not args.inject_delay_ms else f"proxy_latency_slowed{args.inject_delay_ms:g}ms"
        save(suite(measure, meta), args.results, tag)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
