"""
Instructions per request under callgrind: the proxy against the two floors,
and optionally against another checkout's proxy, in one run.

CPU seconds per request on a shared 2-core machine move by tens of percent
between runs, and even same-run ratios by +-0.2 (docs/performance.md).  An
instruction count does not depend on what else the machine runs: each
target process is started under ``valgrind --tool=callgrind`` with
instrumentation off, warmed up, then counted (``callgrind_control -i on``)
while the load generator sends ``--seconds`` of requests over
``--connections`` keep-alive connections; Ir (instructions executed, every
thread of the process) divided by the requests answered is the figure.
Repeats of one run agree within ~2%.  What it leaves out: kernel time
(system calls, context switches) and cache misses -- read it beside
``load.py``'s CPU ratios, not instead of them.

Each target is counted on its own, one after the other, at the same
load; under valgrind a process runs ~50x slower, so a few hundred requests
per target take ``--seconds`` (default 12).  Needs ``valgrind`` on PATH.

Run: ``PYTHONPATH=. python bench/instructions.py [--modes nonstream,fast] [--before ../main]``
(``--before DIR``: a checkout whose ``bench/_procs.py`` starts its proxy,
counted in the same run as ``before``).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs
import load

__all__: list[str] = []

#: The process names (``_procs.Proc``) that are started under callgrind.
COUNTED = ("proxy", "treq floor relay", "floor relay")


def _procs_of(root: Path) -> ModuleType:
    """Another checkout's ``bench/_procs.py``, importable beside ours."""
    spec = importlib.util.spec_from_file_location("_procs_before", root / "bench" / "_procs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _under_callgrind(module: ModuleType, out_dir: Path) -> None:
    """Make ``module``'s ``Proc`` start the counted processes under callgrind, uninstrumented."""
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/cg.%p"]
    original = module.Proc.__init__

    def init(self: Any, name: str, argv: list[str], *rest: Any) -> None:
        original(self, name, valgrind + argv if name in COUNTED else argv, *rest)

    module.Proc.__init__ = init
    module.Proc.wait_ready.__defaults__ = (300.0,)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def _instructions(out_dir: Path, pid: int) -> int:
    """The ``totals:`` of the process's latest dump."""
    dumps = sorted(glob.glob(f"{out_dir}/cg.{pid}.*"), key=os.path.getmtime)
    with open(dumps[-1]) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def count(gen: load.LoadGen, stack: Any, target: str, pid: int, stream: bool, connections: int, seconds: float,
          out_dir: Path) -> dict[str, Any]:
    """Instructions per request of one target at one load."""
    port, _, headers = stack.targets()[target]
    gen.run(port, headers, load._body(stream), connections, 4)  # warm-up, uncounted
    _control(pid, "-z")
    _control(pid, "-i", "on")
    result = gen.run(port, headers, load._body(stream), connections, seconds)
    _control(pid, "-i", "off")
    _control(pid, "-d")
    time.sleep(0.5)
    requests = max(1, result["requests"])
    return {"requests": requests, "instructions_per_request": _instructions(out_dir, pid) / requests}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="callgrind instructions per request: proxy vs floors")
    parser.add_argument("--modes", default="nonstream,fast", help="nonstream, stream (20 chunks), fast (52 events); comma-separated")
    parser.add_argument("--seconds", type=float, default=12.0, help="counted seconds per target and mode")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--before", type=Path, help="another checkout: its proxy is counted too, as 'before'")
    parser.add_argument("--results", type=Path, default=load.BENCH / "results")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    out_dir = Path(tempfile.mkdtemp(prefix="dd0c-callgrind-"))
    gen = load.LoadGen(False, out_dir)
    _under_callgrind(_procs, out_dir)
    before_procs = None
    if args.before is not None:
        before_procs = _procs_of(args.before.resolve())
        _under_callgrind(before_procs, out_dir)
    results: dict[str, dict[str, Any]] = {}
    try:
        with _procs.Stack() as stack:
            before = before_procs.Stack(floor=False, treq_floor=False).start() if before_procs else None
            try:
                targets: dict[str, tuple[Any, int, str]] = {
                    "floor": (stack, stack.floor.pid, "floor"), "treq": (stack, stack.treq_floor.pid, "treq"),
                    "proxy": (stack, stack.proxy.pid, "proxy"),
                }
                if before is not None:
                    targets["before"] = (before, before.proxy.pid, "proxy")
                for mode in args.modes.split(","):
                    scenario = load.FAST if mode == "fast" else {"chunk_count": 20, "chunk_delay": 0.0}
                    for s in {id(st): st for st, _, _ in targets.values()}.values():
                        s.scenario(**scenario)
                    for name, (st, pid, key) in targets.items():
                        results[f"{mode}/{name}"] = count(gen, st, key, pid, mode != "nonstream", args.connections,
                                                          args.seconds, out_dir)
                        r = results[f"{mode}/{name}"]
                        print(f"{mode:10} {name:7} {r['requests']:6} requests  {r['instructions_per_request'] / 1e3:9.1f} k instructions/request",
                              flush=True)
            finally:
                if before is not None:
                    before.stop()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    lines = ["", "ratios (instructions per request, same run):"]
    for mode in args.modes.split(","):
        for a, b in (("proxy", "treq"), ("proxy", "floor"), ("before", "treq"), ("before", "floor"), ("proxy", "before")):
            if f"{mode}/{a}" in results and f"{mode}/{b}" in results:
                ratio = results[f"{mode}/{a}"]["instructions_per_request"] / results[f"{mode}/{b}"]["instructions_per_request"]
                lines.append(f"  {mode:10} {a}/{b}: {ratio:.3f}x")
    print("\n".join(lines))
    if not args.no_save:
        args.results.mkdir(parents=True, exist_ok=True)
        path = args.results / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps({"connections": args.connections, "seconds": args.seconds, "results": results}, indent=2))
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
