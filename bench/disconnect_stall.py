"""
The reactor's longest stall while 1,000 streams disconnect at once.

A mass disconnect makes the proxy finalize 1,000 meters in one burst, each
needing a local token count of the text it delivered.  Counting runs in a
worker thread so the reactor keeps serving; this benchmark proves it from
outside: a probe keeps asking the proxy's ``/healthz`` every 2 ms over one
keep-alive connection, and the probe's latency during the burst is compared
with its latency just before the cut, in the same run.  The ledger is then
read back to check that every cut stream got its record, counted locally.

    PYTHONPATH=. python bench/disconnect_stall.py [--streams 1000]

Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import Client
from _procs import ROOT, Stack, _env


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


class Probe(threading.Thread):
    """Times /healthz every ``interval`` seconds, recording (when, latency)."""

    def __init__(self, port: int, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        client = Client(self.port)
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                client.post("/healthz", {}, b"", False)
                ended = time.monotonic()
                self.samples.append((started, ended - started))
                time.sleep(self.interval)
        finally:
            client.close()


async def open_stream(port: int, key: str, ready: asyncio.Event, count: list[int], target: int, events: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "a long story please"}]}).encode()
    writer.write(
        (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    )
    seen = 0
    while seen < events:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"data: {") and b'"content"' in line:
            seen += 1
    count[0] += 1
    if count[0] >= target:
        ready.set()
    return writer


async def hold_and_cut(port: int, key: str, streams: int, events: int) -> float:
    ready = asyncio.Event()
    count = [0]
    tasks = [asyncio.create_task(open_stream(port, key, ready, count, streams, events)) for _ in range(streams)]
    try:
        await asyncio.wait_for(ready.wait(), timeout=120)
    except TimeoutError:
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        raise SystemExit(
            f"only {count[0]} of {streams} streams were flowing after 120 s "
            f"({len(failed)} failed: {failed[0].exception()!r})" if failed else
            f"only {count[0]} of {streams} streams were flowing after 120 s"
        ) from None
    writers = await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)  # the probe's baseline window
    cut = time.monotonic()
    for writer in writers:
        writer.transport.abort()
    return cut


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3, help="content events each client reads before the cut")
    parser.add_argument("--after", type=float, default=3.0, help="seconds observed after the cut")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the proxy during the burst into FILE (speedscope JSON)")
    args = parser.parse_args()

    with Stack(floor=False, treq_floor=False, keep_dir=True) as stack:
        # Long, steady streams: each chunk carries a few words.
        stack.scenario(chunk_count=2_000, chunk_delay=0.5, words_per_chunk=5)
        assert stack.proxy is not None
        probe = Probe(stack.proxy.port)
        probe.start()
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(stack.proxy.pid), "--rate", "1000", "--format", "speedscope",
                 "--output", args.profile, "--duration", str(int(args.after + 60))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        cut = asyncio.run(hold_and_cut(stack.proxy.port, stack.proxy_key, args.streams, args.events))
        time.sleep(args.after)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=30)
        probe.stopping.set()
        probe.join()
        stats = stack.fake_stats()
        stack.proxy.stop()
        usage = subprocess.run(
            [sys.executable, "-m", "dd0c_route.cli", "--config", str(stack.dir / "dd0c-route.toml"), "usage", "--json"],
            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120, check=True,
        )
    records = [json.loads(line) for line in usage.stdout.splitlines() if line.strip()]
    cut_records = [r for r in records if r.get("disconnected")]
    local = [r for r in cut_records if "completion" in (r.get("tokens_counted_locally") or "")]
    before = [lat for at, lat in probe.samples if cut - 1.0 <= at < cut]
    after = [lat for at, lat in probe.samples if cut <= at < cut + args.after]
    # The longest gap between probe answers is the longest the reactor
    # could have been unavailable.
    gaps = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(probe.samples) if cut <= b[0] < cut + args.after]
    ms = 1000.0
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"streams cut at once: {args.streams}; records with disconnected=true: {len(cut_records)}; "
          f"counted locally: {len(local)}; provider connections open after: {stats.get('open_connections')}")
    print(f"/healthz latency before the cut: p50 {percentile(before, .5)*ms:.2f} ms, max {max(before)*ms:.2f} ms ({len(before)} probes)")
    print(f"/healthz latency during the burst: p50 {percentile(after, .5)*ms:.2f} ms, p99 {percentile(after, .99)*ms:.2f} ms, "
          f"max {max(after)*ms:.2f} ms ({len(after)} probes)")
    print(f"longest stall seen by the probe: {max(after)*ms:.1f} ms = {max(after)/max(before):.1f}x the pre-cut max; "
          f"longest gap between probes {max(gaps, default=0)*ms:.1f} ms")
    # The stats request itself is one open connection to the fake.
    ok = len(cut_records) == args.streams and len(local) == args.streams and stats.get("open_connections", 0) <= 1
    print("records: OK" if ok else "records: MISSING")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
