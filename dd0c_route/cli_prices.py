# Tests: tests/test_prices.py, tests/test_twistd_prices.py
"""
``dd0c-route check`` and ``dd0c-route prices``: what the config's prices are.

Both load the same ``Prices`` the proxy builds at start (config overrides
over the installed genai-prices data), so what they print is what a usage
record will be billed at.  Warnings go to stderr and do not change the exit
code: an unpriced model is served, its cost stays null.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, Callable, Sequence

__all__ = ["check", "prices"]


def _load(config: Any) -> Any:
    from .metering.prices import Prices

    return Prices.load(config.price_overrides, config.providers)


def check(config: Any, now: Callable[[], float]) -> int:
    """Print OK; warn about every model nothing prices and about stale price data."""
    from .metering.prices import price_warnings

    today = datetime.fromtimestamp(now(), UTC).date()
    for warning in price_warnings(_load(config), config.providers, today):
        print(f"dd0c-route: warning: {warning}", file=sys.stderr)
    print("OK")
    return 0


def prices(config: Any, models: Sequence[str]) -> int:
    """The rates in force for ``models`` (``provider/model`` or a bare model name)."""
    table = _load(config)
    names = {provider.name for provider in config.providers}
    wanted: list[tuple[str, Any]] = []
    for model in models:
        provider, _, bare = model.partition("/")
        wanted.append((bare, provider) if bare and provider in names else (model, None))
    if not models:
        wanted = [(m, p.name) for p in config.providers for m in p.exact_models]
        if not wanted:
            print("No models configured by exact name; name some: dd0c-route prices MODEL...")
            return 0
    for i, (model, provider) in enumerate(wanted):
        if i:
            print()
        for line in table.describe(model, provider):
            print(line)
    return 0
