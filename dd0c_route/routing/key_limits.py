# Tests: tests/test_key_limits.py, tests/test_key_limits_live.py
"""
A key's own limits, set from the admin API, as one more budget scope.

The admin API stores ``daily_usd``, ``monthly_usd``, ``requests_per_minute``
and ``tokens_per_minute`` on the key itself (:class:`KeyInfo`).  They are
enforced exactly like a ``[budgets]`` table for that one key, scope
``key:ID``: the same in-memory spend and buckets, the same refusal (a
provider-shaped 429), and with ``[state]`` the same shared counters (spend
counters are per key, so the key's own cap and a ``[budgets]`` scope naming
the key share one spend figure across instances).

They arrive with the key cache: a change made through the API reaches the
process that served it at once (the API reloads its cache); with ``[state]``
every other worker and instance within a Redis round trip (the API publishes
the change, :mod:`dd0c_route.state.revocations`), else at its next reload,
``ledger.key_cache_ttl / 2`` seconds apart (2.5 s by default,
``key_cache_ttl`` at worst when a reload fails).  :func:`limits_marker` is what :class:`~.budgets.Budgets` compares
to notice a change.
"""

from __future__ import annotations

from typing import Any, Optional

from ..config import BudgetConfig

__all__ = ["OWN_SCOPE_PREFIX", "limits_marker", "own_budget"]

#: A key's own limits are the scope ``key:`` + its id (never a config scope:
#: ``[budgets]`` names keys by bare id or name).
OWN_SCOPE_PREFIX = "key:"


def limits_marker(key: Any) -> tuple[Any, ...]:
    """What decides which scopes apply to ``key``: name, team and its own limits."""
    return (
        key.name, key.team, key.daily_usd, key.monthly_usd, key.requests_per_minute, key.tokens_per_minute,
    )


def own_budget(key: Any) -> Optional[BudgetConfig]:
    """The key's own limits as a budget of scope ``key:ID``, or None when it has none."""
    daily, monthly = key.daily_usd, key.monthly_usd
    rpm, tpm = key.requests_per_minute, key.tokens_per_minute
    if daily is None and monthly is None and rpm is None and tpm is None:
        return None
    return BudgetConfig(
        scope=OWN_SCOPE_PREFIX + key.key_id, daily_usd=daily, monthly_usd=monthly,
        requests_per_minute=rpm, tokens_per_minute=tpm,
    )
