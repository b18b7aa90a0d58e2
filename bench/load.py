"""
Throughput, CPU and memory under load: two floor relays and the proxy, in one run.

Starts the fake provider, the floor relays (``floor``: a bare Agent,
``floor_relay.py``; ``treq``: a bare treq client, ``floor_treq.py``) and the
proxy as separate processes on 127.0.0.1 (see ``_procs.py``), then:

1. Holds ``--streams`` (500) slow streams open through each of the floors and the
   target (the fake sends one chunk every 0.5 s) and reads VmRSS before,
   while they are open, and after they are closed; RSS per open stream is
   (while - before) / streams.  The proxy's ``/healthz`` must show
   ``active_requests`` back to 0 after the clients go.
2. For non-streaming and streaming requests (``--stream-chunks`` chunks, no
   delay), at 1/8/32/64 concurrent keep-alive connections: requests per
   second, latency p50/p99, the target's CPU per request (``/proc/PID/stat``
   utime+stime delta / requests), how busy the fake, the target and the load
   generator were (CPU seconds per wall second), and errors.
3. The fast stream (``--fast-levels``, 32 connections): 52 SSE events,
   about 14 KB per stream, no delay -- a throughput test of the stream path
   (streams/s, CPU per stream).
   In 2 and 3 the three targets run one after another in each round, their
   order rotating round by round, so all see the same machine; ``--repeat``
   runs every round again.  CPU per request and per stream is reported as a
   ratio to both floors.
4. ``--profile``: py-spy samples the proxy under load (32 connections,
   non-streaming, streaming, fast stream) and prints the top costs in
   dd0c_route.

The load generator is ``wrk`` when installed (one thread, Lua script for
the POST), else ``_loadgen.py`` (asyncio) in its own process.  Its own CPU
is reported so a saturated generator cannot pass for a slow server.
On a 2-core machine the fake, the target and the generator share the cores:
read throughput as the proxy/floor ratio of the same run.

Results: a pyperf suite (latencies per level, with throughput, CPU and RSS
in the metadata, machine recorded) under ``bench/results/load-<time>.json``,
and a JSON summary beside it.

Run: ``PYTHONPATH=. python bench/load.py [--duration 3] [--profile]``
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pyperf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import BENCH, Proc, Stack, cpu_seconds, rss_kib

__all__: list[str] = []

LEVELS = (1, 8, 32, 64)
TARGETS = ("floor", "treq", "proxy")
FLOORS = ("treq", "floor")
#: The fast stream: 50 content chunks + role + finish = 52 events, ~14 KB.
FAST = {"chunk_count": 50, "reply_words": 120, "chunk_delay": 0.0}
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark, please."}]


def _body(stream: bool) -> str:
    return json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream})


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {{"requests": %d, "wall_s": %f, "errors": %d, "p50_ms": %f, "p90_ms": %f, "p99_ms": %f}}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""


class LoadGen:
    """Runs one load level against one target; wrk when present."""

    def __init__(self, use_wrk: bool, workdir: Path) -> None:
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.workdir = workdir
        self.name = "wrk" if self.wrk else "_loadgen.py (asyncio)"

    def run(self, port: int, headers: dict[str, str], body: str, connections: int, duration: float) -> dict[str, Any]:
        if self.wrk:
            auth = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
            script = self.workdir / "post.lua"
            script.write_text(_WRK_LUA.format(body=body, auth=auth))
            argv = [self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(script),
                    f"http://127.0.0.1:{port}/v1/chat/completions"]
        else:
            argv = [sys.executable, str(BENCH / "_loadgen.py"), "run", "--port", str(port), "--body", body,
                    "--connections", str(connections), "--duration", str(duration)]
            argv += [arg for k, v in headers.items() for arg in ("--header", f"{k}: {v}")]
        before = _children_cpu()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        cpu = _children_cpu() - before
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("JSON ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"load generator failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
        result = dict(json.loads(line[5:]))
        result["loadgen_cpu_s"] = cpu
        return result


def measure_level(gen: LoadGen, stack: Stack, target: str, proc: Proc, stream: bool, connections: int, duration: float,
                  mode: Optional[str] = None) -> dict[str, Any]:
    port, _, headers = stack.targets()[target]
    assert stack.fake is not None
    cpu0, fake0 = cpu_seconds(proc.pid), cpu_seconds(stack.fake.pid)
    result = gen.run(port, headers, _body(stream), connections, duration)
    cpu, fake_cpu = cpu_seconds(proc.pid) - cpu0, cpu_seconds(stack.fake.pid) - fake0
    wall = result["wall_s"]
    requests = max(1, result["requests"])
    result.update(
        target=target, mode=mode or ("stream" if stream else "nonstream"), connections=connections,
        rps=result["requests"] / wall,
        cpu_ms_per_req=cpu * 1000 / requests,
        target_util=cpu / wall, fake_util=fake_cpu / wall, loadgen_util=result["loadgen_cpu_s"] / wall,
        rss_kib=rss_kib(proc.pid),
    )
    return result


def _healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return dict(json.loads(response.read()))


def hold_streams(stack: Stack, target: str, proc: Proc, count: int, settle: float) -> dict[str, Any]:
    """Open ``count`` slow streams through ``target``; RSS and CPU before/while/after."""
    port, _, headers = stack.targets()[target]
    argv = [sys.executable, str(BENCH / "_loadgen.py"), "hold", "--port", str(port), "--body", _body(True),
            "--connections", str(count), "--hold", "120"]
    argv += [arg for k, v in headers.items() for arg in ("--header", f"{k}: {v}")]
    before = rss_kib(proc.pid)
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    ready = holder.stdout.readline()
    if not ready.startswith("READY"):
        holder.kill()
        raise RuntimeError(f"holding {count} streams through {target} failed: {ready!r}")
    time.sleep(settle)
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(2.0)
    held_util = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    while_open = rss_kib(proc.pid)
    active = _healthz(port) if target == "proxy" else None
    holder.stdin.write("close\n")
    holder.stdin.flush()
    out, _ = holder.communicate(timeout=60)
    drained: Optional[float] = None
    if target == "proxy":
        start = time.monotonic()
        while time.monotonic() - start < 30:
            health = _healthz(port)
            if health.get("active_requests") == 0 and health.get("upstream_connections") == 0:
                drained = time.monotonic() - start
                break
            time.sleep(0.1)
    time.sleep(1.0)
    return {
        "target": target, "streams": count, "rss_before_kib": before, "rss_open_kib": while_open,
        "rss_after_kib": rss_kib(proc.pid), "rss_per_stream_kib": (while_open - before) / count,
        "cpu_util_while_open": held_util, "healthz_while_open": active, "drained_after_s": drained,
        "holder": json.loads(next(ln for ln in out.splitlines() if ln.startswith("JSON "))[5:]),
    }


def profile(stack: Stack, gen: LoadGen, duration: float, out_dir: Path) -> Optional[list[str]]:
    """py-spy the proxy under load; the top costs in dd0c_route (self and own-code-inclusive)."""
    pyspy = shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None)
    if pyspy is None:
        return ["py-spy is not installed (pip install py-spy): no profile"]
    assert stack.proxy is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"proxy-profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    spy = subprocess.Popen(
        [pyspy, "record", "--pid", str(stack.proxy.pid), "--duration", str(int(3 * duration + 2)), "--rate", "250",
         "--format", "raw", "--function", "--nonblocking", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    port, _, headers = stack.targets()["proxy"]
    for stream, scenario in ((False, {"chunk_count": 20, "chunk_delay": 0.0}), (True, {"chunk_count": 20, "chunk_delay": 0.0}), (True, FAST)):
        stack.scenario(**scenario)
        gen.run(port, headers, _body(stream), 32, duration)
    _, err = spy.communicate(timeout=120)
    if not raw.exists():
        return [f"py-spy failed: {err.decode(errors='replace')[-300:]}"]
    return summarize_profile(raw.read_text())


def summarize_profile(text: str, top: int = 15) -> list[str]:
    """From collapsed stacks: self and inclusive share of dd0c_route functions, and the overall hottest leaves."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        total += count
        if frames:
            leaves[_short(frames[-1])] += count
        ours = [_short(f) for f in frames if "dd0c_route/" in f]
        for name in set(ours):
            inclusive[name] += count
        if ours:
            own[ours[-1]] += count
    lines = [f"{total} samples of the proxy under load (non-idle threads)", "",
             "dd0c_route functions, inclusive (% of samples with the function on the stack):"]
    lines += [f"  {100.0 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    lines += ["", "dd0c_route functions, own cost (% of samples whose innermost dd0c_route frame is this one, library calls included):"]
    lines += [f"  {100.0 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "hottest leaf functions anywhere (self time):"]
    lines += [f"  {100.0 * c / total:5.1f}%  {name}" for name, c in leaves.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """``func (path/to/dd0c_route/x.py:12)`` → ``dd0c_route/x.py:func``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("dd0c_route/", "site-packages/", "lib/python3"):
        if marker in path:
            path = (marker if marker == "dd0c_route/" else "") + path.split(marker, 1)[1]
            break
    return f"{path}:{name}"


def table(levels: list[dict[str, Any]]) -> list[str]:
    header = (f"{'mode':<10}{'conns':>6} {'target':<7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>11}"
              f"{'target%':>8}{'fake%':>7}{'gen%':>6}{'errors':>7}")
    lines = [header, "-" * len(header)]
    for r in levels:
        lines.append(
            f"{r['mode']:<10}{r['connections']:>6} {r['target']:<7}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['cpu_ms_per_req']:>11.3f}{100 * r['target_util']:>8.0f}{100 * r['fake_util']:>7.0f}{100 * r['loadgen_util']:>6.0f}{r['errors']:>7}"
        )
    index: dict[tuple[str, int, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in levels:
        index[(r["mode"], r["connections"], r["target"])].append(r)
    for base in FLOORS:
        lines += ["", f"proxy/{base} ratios (same run, same round; one line per repeat):"]
        for mode in ("nonstream", "stream", "fast"):
            for conns in sorted({c for (m, c, _t) in index if m == mode}):
                for f, p in zip(index.get((mode, conns, base), ()), index.get((mode, conns, "proxy"), ()), strict=False):
                    lines.append(
                        f"  {mode:<10}{conns:>4} conns: throughput {p['rps'] / f['rps']:5.2f}x  p50 {p['p50_ms'] / f['p50_ms']:5.2f}x  "
                        f"p99 {p['p99_ms'] / f['p99_ms']:5.2f}x  CPU/req {p['cpu_ms_per_req'] / max(f['cpu_ms_per_req'], 1e-9):5.2f}x"
                    )
    return lines


def headline(levels: list[dict[str, Any]], connections: int = 32) -> list[str]:
    """The issue-#18 table: req/s and CPU/req, fast streams/s and CPU/stream, proxy vs both floors, per repeat."""
    index: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in levels:
        if r["connections"] == connections:
            index[(r["mode"], r["target"])].append(r)
    rows = [("non-stream req/s", "nonstream", "rps", "{:,.0f}"), ("CPU ms per request", "nonstream", "cpu_ms_per_req", "{:.3f}"),
            ("fast stream streams/s", "fast", "rps", "{:,.0f}"), ("CPU ms per stream", "fast", "cpu_ms_per_req", "{:.3f}")]
    lines = [f"{connections} connections | dd0c-route | treq floor | Agent floor | proxy/treq | proxy/Agent"]
    lines.append("|".join(["---"] * 6))
    for label, mode, key, fmt in rows:
        for i, (f, t, p) in enumerate(zip(index.get((mode, "floor"), ()), index.get((mode, "treq"), ()),
                                          index.get((mode, "proxy"), ()), strict=False)):
            lines.append(f"{label}{f' (#{i + 1})' if i else ''} | {fmt.format(p[key])} | {fmt.format(t[key])} | {fmt.format(f[key])} | "
                         f"{p[key] / max(t[key], 1e-9):.2f}x | {p[key] / max(f[key], 1e-9):.2f}x")
    return lines


def suite(levels: list[dict[str, Any]], holds: list[dict[str, Any]], meta: dict[str, Any]) -> pyperf.BenchmarkSuite:
    machine = pyperf.Run([1.0], metadata={"name": "machine"}, collect_metadata=True).get_metadata()
    machine.pop("name", None)
    runs: dict[str, list[pyperf.Run]] = collections.defaultdict(list)
    for r in levels:
        metadata = dict(machine, **meta, name=f"{r['mode']}/{r['target']}/c{r['connections']}", unit="second", loops=1)
        metadata.update({k: round(float(r[k]), 4) for k in ("rps", "cpu_ms_per_req", "target_util", "fake_util", "loadgen_util", "p99_ms")})
        metadata["errors"] = int(r["errors"])
        metadata["rss_kib"] = int(r["rss_kib"])
        # wrk reports percentiles, not samples: record p50 (the benchmark value) and carry the rest as metadata.
        # One benchmark per level, one run per --repeat.
        runs[metadata["name"]].append(pyperf.Run([r["p50_ms"] / 1000 or 1e-9], metadata=metadata, collect_metadata=False))
    benchmarks = [pyperf.Benchmark(level_runs) for level_runs in runs.values()]
    for h in holds:
        metadata = dict(machine, **meta, name=f"hold/{h['target']}/rss_per_stream", unit="byte", loops=1)
        metadata.update(rss_before_kib=h["rss_before_kib"], rss_open_kib=h["rss_open_kib"], streams=h["streams"])
        value = max(1.0, h["rss_per_stream_kib"] * 1024)
        benchmarks.append(pyperf.Benchmark([pyperf.Run([value], metadata=metadata, collect_metadata=False)]))
    return pyperf.BenchmarkSuite(benchmarks)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="dd0c-route throughput, CPU and memory (floors vs proxy)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load level (default 3)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent connections, comma-separated")
    parser.add_argument("--stream-chunks", type=int, default=20)
    parser.add_argument("--fast-levels", default="32", help="connections for the fast stream (52 events, ~14 KB), comma-separated; empty: skip")
    parser.add_argument("--repeat", type=int, default=1, help="run every interleaved round this many times")
    parser.add_argument("--streams", type=int, default=500, help="slow streams held open (0: skip)")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio generator even if wrk is installed")
    parser.add_argument("--profile", action="store_true", help="py-spy the proxy under load and print its top costs")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    args.fast = [int(x) for x in args.fast_levels.split(",") if x]

    work = Path(tempfile.mkdtemp(prefix="dd0c-load-"))
    try:
        return _run(args, levels, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, levels: list[int], work: Path) -> int:
    gen = LoadGen(not args.no_wrk, work)
    print(f"load generator: {gen.name}")
    results: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    profile_lines: Optional[list[str]] = None
    with Stack() as stack:
        assert stack.floor is not None and stack.treq_floor is not None and stack.proxy is not None
        procs = {"floor": stack.floor, "treq": stack.treq_floor, "proxy": stack.proxy}
        startup_rss = {name: rss_kib(p.pid) for name, p in procs.items()}
        # Warm-up on one connection (lazy imports, token tables, first ledger
        # batch), so the held streams measure what each stream costs.
        for stream in (False, True):
            stack.scenario(chunk_count=args.stream_chunks, chunk_delay=0.0)
            for name, proc in procs.items():
                measure_level(gen, stack, name, proc, stream, 1, 1.0)
        warm_rss = {name: rss_kib(p.pid) for name, p in procs.items()}
        if args.streams:
            stack.scenario(chunk_count=2000, chunk_delay=0.5)
            for name, proc in procs.items():
                holds.append(hold_streams(stack, name, proc, args.streams, settle=1.0))
        stack.scenario(chunk_count=args.stream_chunks, chunk_delay=0.0)
        for stream in (False, True):
            for name, proc in procs.items():
                measure_level(gen, stack, name, proc, stream, 8, 1.0)  # warm-up at load, discarded
        plan = [(mode, stream, conns) for mode, stream in (("nonstream", False), ("stream", True)) for conns in levels]
        plan += [("fast", True, conns) for conns in args.fast]
        turn = 0
        for _ in range(max(1, args.repeat)):
            for mode, stream, conns in plan:
                stack.scenario(**(FAST if mode == "fast" else {"chunk_count": args.stream_chunks, "chunk_delay": 0.0}))
                order = TARGETS[turn % 3:] + TARGETS[:turn % 3]
                turn += 1
                for name in order:
                    results.append(measure_level(gen, stack, name, procs[name], stream, conns, args.duration, mode))
        if args.profile:
            profile_lines = profile(stack, gen, args.duration * 2, work if args.no_save else args.results)
        fake_stats = stack.fake_stats()
        end_rss = {name: rss_kib(p.pid) for name, p in procs.items()}

    lines = [f"load generator: {gen.name}; {args.duration:g} s per level; stream = {args.stream_chunks} chunks, no delay; "
             f"fast = {FAST['chunk_count'] + 2} events, {FAST['reply_words']} words, no delay; floor = bare Agent, treq = bare treq", ""]
    lines += table(results)
    if 32 in levels and 32 in args.fast:
        lines += ["", *headline(results)]
    rss = lambda d: ", ".join(f"{n} {d[n]} KiB" for n in TARGETS)  # noqa: E731
    lines += ["", f"RSS at start: {rss(startup_rss)}; after a 1-connection warm-up: {rss(warm_rss)}; at the end: {rss(end_rss)}"]
    for h in holds:
        lines.append(
            f"{h['streams']} open slow streams via {h['target']}: RSS {h['rss_before_kib']} -> {h['rss_open_kib']} KiB "
            f"({h['rss_per_stream_kib']:.1f} KiB/stream), after close {h['rss_after_kib']} KiB, CPU while open "
            f"{100 * h['cpu_util_while_open']:.0f}%"
            + (f", healthz while open {h['healthz_while_open']}, back to 0 active/upstream after {h['drained_after_s']:.1f} s"
               if h["target"] == "proxy" and h["drained_after_s"] is not None else "")
            + (", NOT drained within 30 s" if h["target"] == "proxy" and h["drained_after_s"] is None else "")
        )
    lines.append(f"fake provider at the end: {fake_stats}")
    if profile_lines:
        lines += ["", *profile_lines]
    print("\n".join(lines))
    if not args.no_save:
        args.results.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        meta = {"description": "dd0c-route load: floors vs proxy", "duration_s": args.duration, "load_generator": gen.name}
        path = args.results / f"load-{stamp}.json"
        suite(results, holds, meta).dump(str(path), replace=True)
        (args.results / f"load-{stamp}-summary.json").write_text(
            json.dumps({"levels": results, "holds": holds, "startup_rss_kib": startup_rss, "warm_rss_kib": warm_rss, "end_rss_kib": end_rss, "profile": profile_lines}, indent=1)
        )
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
