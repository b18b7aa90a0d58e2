# Tests: tests/test_admin_live.py, tests/test_drain.py
"""
Readiness: whether a load balancer should send this process traffic.

``/livez`` only says the reactor answers.  ``/readyz`` is the conjunction of
named checks, each a cheap callable read on the reactor at request time:
the key cache has finished its first load (before that every key would be
a store read), the budgets have been seeded from the ledger (before that a
spent budget would admit requests), the ledger backlog is within its bound
(records are piling up in memory: the ledger is slow or down), and the
process is not draining (SIGTERM: let the balancer move traffic away while
the requests in flight finish).  The answer names every check and whether
it passes, so an operator sees which one holds a pod out.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["LEDGER_BACKLOG_BOUND", "Readiness"]

#: Records waiting for the ledger past which the process reports not ready
#: (the writer logs a warning at the same size).
LEDGER_BACKLOG_BOUND = 100_000


class Readiness:
    """Named readiness checks, plus the draining flag the drain sets."""

    def __init__(self) -> None:
        self.draining = False
        self._checks: dict[str, Callable[[], bool]] = {"not_draining": lambda: not self.draining}

    def add(self, name: str, check: Callable[[], bool]) -> None:
        """Add (or replace) a check; it must be cheap and never block."""
        self._checks[name] = check

    def report(self) -> tuple[bool, dict[str, bool]]:
        """(all pass, {name: passes}); a check that raises fails."""
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        return all(results.values()), results
