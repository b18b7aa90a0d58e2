"""
Instructions per request and per stream: the proxy against the two floors,
counted by valgrind's callgrind (issue #18).

``load.py`` measures CPU seconds under load, which is what matters, but on a
shared 2-core machine its ratios move by +-0.2 from one repeat to the next:
how much the proxy batches per reactor iteration depends on what else the
cores are doing.  An instruction count does not: the same binary, inputs
and requests give the same count whatever the machine is doing.  So this
runs each target (Agent floor, treq floor, proxy) under callgrind, sends it
``--requests`` sequential keep-alive requests of each kind (non-stream; the
fast stream of 52 events, ~14 KB) after ``--warmup`` uncounted ones, and
reports instructions (Ir, every thread: the proxy's ledger writer
included) per request and the proxy's ratio to each floor.

One connection, one request at a time: a count of the work per request,
not of what batching under load amortizes (that is ``load.py``'s part).
Hash randomization is off (``PYTHONHASHSEED=0``) so repeats agree.

Run: ``PYTHONPATH=. python bench/instructions.py [--requests 200]`` (a few
minutes: everything runs ~50x slower under valgrind).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import Client
from _procs import Stack
from load import FAST, _body

__all__: list[str] = []

MODES = {"nonstream": (False, {"chunk_count": 20, "chunk_delay": 0.0}), "fast": (True, FAST)}


def _poke(port: int) -> None:
    """A request that wakes a target blocked in epoll, so callgrind reads its command."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /_poke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.recv(100)
    except OSError:
        pass


def _control(pid: int, port: int, *args: str) -> None:
    """``callgrind_control ARGS PID``, poking the target until it has answered."""
    proc = subprocess.Popen(["callgrind_control", *args, str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        _poke(port)
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        raise RuntimeError(f"callgrind_control {' '.join(args)} got no answer from {pid}")


def _dumped_ir(out_dir: Path, name: str, before: set[Path]) -> int:
    """The Ir total of the dump file that appeared since ``before``."""
    for _ in range(50):
        new = sorted(set(out_dir.glob(f"cg.{name}.*")) - before, key=lambda p: p.stat().st_mtime)
        if new:
            for line in new[-1].read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump for {name}")


def measure(stack: Stack, out_dir: Path, name: str, pid: int, port: int, headers: dict[str, str], requests: int,
            warmup: int) -> dict[str, float]:
    """Ir per request of each mode for one target."""
    client = Client(port)
    result = {}
    for mode, (stream, scenario) in MODES.items():
        stack.scenario(**scenario)
        body = _body(stream).encode()
        for _ in range(warmup):
            client.post("/v1/chat/completions", headers, body, stream)
        client.close()
        _control(pid, port, "--zero")
        _control(pid, port, "--instr=on")
        for _ in range(requests):
            timing = client.post("/v1/chat/completions", headers, body, stream)
            if timing.status != 200:
                raise RuntimeError(f"{name} answered {timing.status}")
        client.close()
        _control(pid, port, "--instr=off")
        before = set(out_dir.glob(f"cg.{name}.*"))
        _control(pid, port, "--dump")
        result[mode] = _dumped_ir(out_dir, name, before) / requests
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--targets", default="floor,treq,proxy")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (callgrind) is not installed")
    os.environ["PYTHONHASHSEED"] = "0"
    targets = args.targets.split(",")
    out_dir = Path(tempfile.mkdtemp(prefix="dd0c-callgrind-"))

    def wrap(name: str) -> list[str]:
        if name not in targets:
            return []
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                f"--callgrind-out-file={out_dir}/cg.{name}.%p"]

    results: dict[str, Any] = {}
    with Stack(floor="floor" in targets, treq_floor="treq" in targets, wrap=wrap) as stack:
        procs = {"floor": stack.floor, "treq": stack.treq_floor, "proxy": stack.proxy}
        for name, (port, _, headers) in stack.targets().items():
            if name not in targets:
                continue
            proc = procs[name]
            assert proc is not None
            results[name] = measure(stack, out_dir, name, proc.pid, port, headers, args.requests, args.warmup)
            print(name, {mode: round(ir) for mode, ir in results[name].items()}, flush=True)
    print(f"\ninstructions per request (callgrind, {args.requests} sequential requests per kind, 1 connection)")
    print("kind | " + " | ".join(targets) + " | proxy/treq | proxy/Agent")
    print("---|" + "---|" * len(targets) + "---|---")
    for mode in MODES:
        cells = [f"{results[t][mode] / 1e6:.3f} M" for t in targets]
        ratios = [f"{results['proxy'][mode] / results[f][mode]:.2f}x" if f in results and "proxy" in results else "-"
                  for f in ("treq", "floor")]
        print(f"{mode} | " + " | ".join(cells) + " | " + " | ".join(ratios))
    print("JSON " + json.dumps(results))
    shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
