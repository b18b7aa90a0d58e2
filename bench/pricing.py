"""
What pricing costs per request, and what the price dataset adds to RSS.

Per request: ``Prices.quote_facts`` for a model whose rates are cached (the
hot path after a model's first use): one dict lookup, a tier pick and the
Decimal arithmetic.  Baselines in the same run: a bare dict lookup, and --
when ``--old REV`` names a git revision with the former shipped table
(``prices.toml``) -- that revision's ``PriceTable.cost_usd``.  Also the cost
of a model's first use (resolving it in the dataset), which is paid once.

RSS at start: fresh interpreters that import what the proxy imports, then
load the prices (``Prices.load()`` and one quote) -- or, for the baseline,
nothing.  ``--old`` adds the former table as a second baseline.

    python bench/pricing.py                  # quick figures
    python bench/pricing.py --old 0205482    # with the pre-dataset table
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RSS = """
import gc, sys
sys.path[:0] = {paths!r}
import twisted.internet.reactor, treq, attrs, decimal
import dd0c_route.tap, dd0c_route.metering.meter, dd0c_route.metering.usage
{load}
gc.collect()
print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')))
"""
_LOAD_NEW = "from dd0c_route.metering.prices import Prices; Prices.load().quote('gpt-5.4', prompt_tokens=1, completion_tokens=1)"
_LOAD_OLD = "from old_prices.prices import PriceTable; PriceTable.load_default().cost_usd('gpt-4o', 1, 1)"


def _old_module(rev: str, into: str) -> str:
    """The former prices.py and prices.toml from ``rev``, importable as ``old_prices.prices``."""
    package = os.path.join(into, "old_prices")
    os.makedirs(package)
    Path(package, "__init__.py").write_text("")
    for name in ("prices.py", "prices.toml"):
        data = subprocess.run(
            ["git", "show", f"{rev}:dd0c_route/metering/{name}"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        Path(package, name).write_bytes(data)
    return into


def _rss_kib(load: str, *paths: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _RSS.format(paths=[*paths, str(ROOT)], load=load)],
        capture_output=True, text=True, check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _best(stmt: object, number: int = 20000, repeat: int = 7) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", metavar="REV", help="a git revision with the former prices.toml table")
    parser.add_argument("--rss-runs", type=int, default=3)
    args = parser.parse_args()

    from dd0c_route.metering.prices import Prices
    from dd0c_route.metering.usage import UsageFacts

    prices = Prices.load()
    facts = UsageFacts()
    facts.take_usage({"prompt_tokens": 1234, "completion_tokens": 567, "prompt_tokens_details": {"cached_tokens": 200}})
    when = 1.8e9
    prices.quote_facts("gpt-4o", "openai", facts, when)
    table = {("openai", "gpt-4o", None): 1}
    lookup = _best(lambda: table.get(("openai", "gpt-4o", None)))
    new = _best(lambda: prices.quote_facts("gpt-4o", "openai", facts, when))
    first = _best(lambda: Prices(prices.dataset).rates("gpt-5.4", None, None, when), number=200)
    print(f"dict lookup (floor):          {lookup * 1e6:8.3f} us")
    print(f"quote_facts, cached rates:    {new * 1e6:8.3f} us  ({new / lookup:.0f}x the floor)")
    print(f"first use of a model:         {first * 1e6:8.3f} us  (once per model)")
    with tempfile.TemporaryDirectory() as tmp:
        old_path = None
        if args.old:
            old_path = _old_module(args.old, tmp)
            sys.path.insert(0, old_path)
            from old_prices.prices import PriceTable  # type: ignore[import-not-found]

            old_table = PriceTable.load_default()
            old = _best(lambda: old_table.cost_usd("gpt-4o", 1234, 567, cached_tokens=200))
            print(f"before: PriceTable.cost_usd:  {old * 1e6:8.3f} us  (after/before = {new / old:.2f})")
        runs = range(args.rss_runs)
        base = min(_rss_kib("") for _ in runs)
        loaded = min(_rss_kib(_LOAD_NEW) for _ in runs)
        print(f"RSS, proxy imports only:      {base / 1024:8.1f} MiB")
        print(f"RSS, + genai-prices loaded:   {loaded / 1024:8.1f} MiB  (+{(loaded - base) / 1024:.1f} MiB)")
        if old_path is not None:
            old_rss = min(_rss_kib(_LOAD_OLD, old_path) for _ in runs)
            print(f"RSS, + former table loaded:   {old_rss / 1024:8.1f} MiB  (+{(old_rss - base) / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
