# Tests: tests/test_routing_limits.py, tests/test_fallback.py
"""
Why routing refuses a request, in routing's own words.

The routing layer knows nothing of HTTP: it raises these, and
``web/errors.py`` alone turns them into a status and a provider-shaped body.
Each carries the seconds after which a retry can succeed (``retry_after``),
because every refusal here is temporary.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["BudgetExceeded", "CircuitOpen", "RateLimited", "Refusal", "StateUnavailable"]


@attrs.frozen(auto_exc=True)
class Refusal(Exception):
    """Base: a request routing will not serve now; retry after ``retry_after`` s."""

    message: str
    retry_after: int = 1

    def __str__(self) -> str:
        return self.message


class RateLimited(Refusal):
    """A requests- or tokens-per-minute limit is reached."""


class BudgetExceeded(Refusal):
    """A daily or monthly spend cap is reached."""


class CircuitOpen(Refusal):
    """Every provider that could serve the request is paused for a cool-down."""


class StateUnavailable(Refusal):
    """Shared limits cannot be checked (``[state] on_redis_down = "closed"``)."""


def retry_seconds(seconds: float) -> int:
    """Whole seconds, at least 1: what a ``retry-after`` can say."""
    return max(1, math.ceil(seconds))
