# Tests: tests/test_routing_limits.py
"""
A circuit breaker per provider, in memory, on the injected clock.

A provider that fails ``failures`` times within ``window`` seconds (429,
5xx, connect failure, timeout) is *open* for ``cooldown`` seconds: the
router skips it and falls through to the next model of the chain instead of
hammering it.  After the cool-down it is *half-open*: requests go to it
again, and the first failure opens it at once for another cool-down, while
the first success closes it.

With ``[state]``, :mod:`dd0c_route.state.breakers` sets :attr:`on_change`
to publish each transition and calls :meth:`apply_shared` with the other
instances' ones.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from twisted.internet.interfaces import IReactorTime

from ..config import CircuitBreakerConfig

__all__ = ["CircuitBreaker"]


class _State:
    __slots__ = ("failures", "open_until", "tripped")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.open_until = 0.0
        self.tripped = False


class CircuitBreaker:
    """Per-provider failure counts and cool-downs."""

    def __init__(self, clock: IReactorTime, config: CircuitBreakerConfig) -> None:
        self._clock = clock
        self._config = config
        self._states: dict[str, _State] = {}
        #: Called with (provider, seconds open; 0: closed) on every transition.
        self.on_change: Optional[Callable[[str, float], None]] = None

    def available(self, provider: str) -> bool:
        """May ``provider`` be called now (closed or half-open)?"""
        state = self._states.get(provider)
        return state is None or self._clock.seconds() >= state.open_until

    def retry_in(self, provider: str) -> float:
        """Seconds until ``provider`` may be called again (0 when it may)."""
        state = self._states.get(provider)
        if state is None:
            return 0.0
        return max(0.0, state.open_until - self._clock.seconds())

    def failure(self, provider: str) -> None:
        """One failed call to ``provider``."""
        now = self._clock.seconds()
        state = self._states.get(provider)
        if state is None:
            state = self._states[provider] = _State()
        config = self._config
        if state.tripped and now >= state.open_until:
            # Half-open and failing again: straight back to open.
            state.open_until = now + config.cooldown
            self._changed(provider, config.cooldown)
            return
        failures = state.failures
        failures.append(now)
        while failures and failures[0] <= now - config.window:
            failures.popleft()
        if len(failures) >= config.failures:
            failures.clear()
            state.tripped = True
            state.open_until = now + config.cooldown
            self._changed(provider, config.cooldown)

    def success(self, provider: str) -> None:
        """One successful call: the provider is closed again."""
        state = self._states.get(provider)
        if state is not None and (state.failures or state.tripped):
            del self._states[provider]
            if state.tripped:
                self._changed(provider, 0.0)

    def _changed(self, provider: str, open_for: float) -> None:
        if self.on_change is not None:
            self.on_change(provider, open_for)

    def apply_shared(self, provider: str, open_for: float) -> None:
        """Another instance opened (``open_for`` > 0) or closed ``provider``."""
        if open_for <= 0:
            state = self._states.get(provider)
            if state is not None and state.tripped:
                del self._states[provider]
            return
        state = self._states.get(provider)
        if state is None:
            state = self._states[provider] = _State()
        state.tripped = True
        state.open_until = max(state.open_until, self._clock.seconds() + min(open_for, self._config.cooldown * 10))

    def open_providers(self) -> list[str]:
        """The providers skipped right now (for health and tests)."""
        now = self._clock.seconds()
        return sorted(name for name, s in self._states.items() if now < s.open_until)
