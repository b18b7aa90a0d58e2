"""
``[server] workers = 2`` against 1, in one run (issue #14).

Starts the fake provider and two proxies on the same ledger directory style
(one with ``workers = 1``, one with ``workers = 2``), then alternates them
at ``--connections`` (64) keep-alive connections, non-streaming, for
``--rounds`` rounds: requests per second, latency p50/p99, the proxy's CPU
per request (parent and every worker: /proc utime+stime, summed), and how
busy the fake and the load generator were.  On a 2-core machine the fake,
the proxy and the generator share the cores: read the workers=2 / workers=1
ratio of the same run, and the generator's CPU share beside it.

Run: ``PYTHONPATH=. python bench/workers.py [--duration 3] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import TWISTD, Proc, Stack, cpu_seconds, free_port
from load import LoadGen, _body

__all__: list[str] = []


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the parent and its workers)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += _tree(int(child))
    return out


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def _proxy(stack: Stack, workers: int) -> Proc:
    assert stack.fake is not None
    port = free_port()
    config = stack.dir / f"w{workers}.toml"
    config.write_text(
        f'[server]\nlisten = "tcp:{port}:interface=127.0.0.1:backlog=4096"\nworkers = {workers}\n'
        f'[ledger]\npath = "{stack.dir / f"w{workers}.sqlite3"}"\n'
        f'[providers.openai]\nbase_url = "http://127.0.0.1:{stack.fake.port}/v1"\napi_key = "{stack.provider_key}"\n'
    )
    key = stack._create_key(config)
    proc = Proc(
        f"proxy workers={workers}",
        [*TWISTD, "-n", "--pidfile", "", "--logfile", str(stack.dir / f"w{workers}.log"), "dd0c-route", "--config", str(config)],
        port, "/healthz", stack.dir / f"w{workers}.out", stack.dir,
    )
    proc.wait_ready()
    proc.key = key  # type: ignore[attr-defined]
    # Let every worker come up (the first answers /healthz before the second).
    time.sleep(3.0 if workers > 1 else 0.5)
    return proc


def measure(gen: LoadGen, stack: Stack, proc: Proc, connections: int, duration: float) -> dict[str, Any]:
    assert stack.fake is not None
    pids = _tree(proc.pid)
    cpu0, fake0 = _cpu(pids), cpu_seconds(stack.fake.pid)
    result = gen.run(proc.port, {"authorization": f"Bearer {proc.key}"}, _body(False), connections, duration)  # type: ignore[attr-defined]
    cpu, fake_cpu = _cpu(pids) - cpu0, cpu_seconds(stack.fake.pid) - fake0
    wall, requests = result["wall_s"], max(1, result["requests"])
    result.update(
        processes=len(pids), rps=result["requests"] / wall, cpu_ms_per_req=cpu * 1000 / requests,
        proxy_util=cpu / wall, fake_util=fake_cpu / wall, loadgen_util=result["loadgen_cpu_s"] / wall,
    )
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="dd0c-route workers=2 vs workers=1")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-wrk", action="store_true")
    args = parser.parse_args(argv)
    with Stack(floor=False) as stack:
        gen = LoadGen(not args.no_wrk, stack.dir)
        proxies = {1: _proxy(stack, 1), 2: _proxy(stack, 2)}
        try:
            for proc in proxies.values():  # warm up
                measure(gen, stack, proc, args.connections, 1.0)
            runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for workers, proc in proxies.items():
                    runs[workers].append(measure(gen, stack, proc, args.connections, args.duration))
        finally:
            for proc in proxies.values():
                proc.stop()
    print(f"load generator: {gen.name}; {args.connections} connections, non-streaming, {args.rounds} x {args.duration:g}s")
    print("workers  rps      p50 ms  p99 ms  proxy CPU ms/req  proxy util  fake util  loadgen util  errors")
    best = {}
    for workers, results in runs.items():
        for r in results:
            print(f"{workers:<8} {r['rps']:<8.0f} {r['p50_ms']:<7.2f} {r['p99_ms']:<7.2f} {r['cpu_ms_per_req']:<17.3f} "
                  f"{r['proxy_util']:<11.2f} {r['fake_util']:<10.2f} {r['loadgen_util']:<13.2f} {r['errors']}")
        best[workers] = max(results, key=lambda r: r["rps"])
    print(f"throughput workers=2 / workers=1: {best[2]['rps'] / best[1]['rps']:.2f}x (best rounds); "
          f"CPU per request: {best[2]['cpu_ms_per_req'] / best[1]['cpu_ms_per_req']:.2f}x")
    print(json.dumps({str(k): v for k, v in best.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
