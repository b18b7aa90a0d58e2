"""
A small asyncio load generator, run as its own process by ``load.py``.

``run`` mode: N persistent HTTP/1.1 connections, each sending the same POST
back to back for a duration; prints one JSON line (requests, errors,
latency percentiles, its own CPU seconds).  Used when ``wrk`` is absent.

``hold`` mode: N streaming requests held open; prints ``READY <n>`` once
every stream has delivered its first SSE event, keeps reading until a line
arrives on stdin (or ``--hold`` seconds pass), then closes every connection
and prints one JSON line.

Not a scenario on its own: see ``load.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any


def _request(path: str, body: bytes, headers: list[str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{h}\r\n" for h in headers)
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader, first_event: Any = None) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    seen = b""
    if fields.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            if first_event is not None and not first_event.done():
                seen += data
                if b"\n\n" in seen.replace(b"\r\n", b"\n"):
                    first_event.set_result(None)
    elif b"content-length" in fields:
        await reader.readexactly(int(fields[b"content-length"]))
    else:
        await reader.read()
    return status


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


async def run(args: argparse.Namespace, payload: bytes) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + args.duration

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                writer.write(payload)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.connections)))
    wall = time.monotonic() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "p50_ms": _pct(latencies, 50) * 1000,
        "p90_ms": _pct(latencies, 90) * 1000,
        "p99_ms": _pct(latencies, 99) * 1000,
    }


async def hold(args: argparse.Namespace, payload: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    writers = []
    firsts = []
    readers = []

    async def open_one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        first = loop.create_future()
        writer.write(payload)
        writers.append(writer)
        firsts.append(first)
        readers.append(asyncio.ensure_future(_read_response(reader, first)))

    for start in range(0, args.connections, 50):
        await asyncio.gather(*(open_one() for _ in range(min(50, args.connections - start))))
    await asyncio.wait_for(asyncio.gather(*firsts), timeout=60)
    sys.stdout.write(f"READY {len(firsts)}\n")
    sys.stdout.flush()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        await asyncio.wait_for(stdin.readline(), timeout=args.hold)
    except TimeoutError:
        pass
    finished_early = sum(1 for r in readers if r.done())
    for reader_task in readers:
        reader_task.cancel()
    for writer in writers:
        writer.transport.abort()
    return {"held": len(firsts), "finished_early": finished_early}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["run", "hold"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--hold", type=float, default=60.0)
    args = parser.parse_args()
    payload = _request(args.path, args.body.encode(), args.header)
    result = asyncio.run((run if args.mode == "run" else hold)(args, payload))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    sys.stdout.write("JSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
