# Tests: tests/test_bad_input.py, tests/test_routing_limits.py
"""
The one place where failures become HTTP answers.

Everything below the web layer speaks its own language: routing raises
:class:`~dd0c_route.routing.errors.Refusal` subclasses and
:class:`~dd0c_route.routing.router.UnknownModel`, provider adapters raise
:class:`~dd0c_route.providers.errors.CannotServe`, and the relay reports an
:class:`~dd0c_route.relay.failures.UpstreamFailure` by kind.
:func:`error_for` maps each to a :class:`ProxyError` (status, message,
code, headers), and :func:`openai_error_body`/:func:`anthropic_error_body`
give it the shape the client's SDK parses.  Messages are fixed texts or
built from values we checked: never from a header or a key.
"""

from __future__ import annotations

import json
from typing import Optional

import attrs

from ..ledger.interfaces import LedgerUnavailable
from ..providers.errors import CannotServe
from ..redaction import redact_sensitive
from ..relay.failures import TIMEOUT, UNREACHABLE, UpstreamFailure
from ..routing.errors import BudgetExceeded, CircuitOpen, RateLimited, Refusal, StateUnavailable
from ..routing.router import UnknownModel
from ..shapes import anthropic_error, anthropic_error_type, openai_error, openai_error_type

__all__ = ["ProxyError", "anthropic_error_body", "error_for", "openai_error_body", "unknown_model"]


@attrs.frozen
class ProxyError(Exception):
    """
    An error the proxy answers itself, before or instead of the provider.
    """

    status: int
    message: str
    code: Optional[str] = None
    param: Optional[str] = None
    type: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.code or ''}: {self.message}"


def openai_error_body(error: ProxyError) -> bytes:
    """The OpenAI ``ErrorResponse`` JSON for an error."""
    payload = openai_error(error.message, error.type or openai_error_type(error.status), error.param, error.code)
    return json.dumps(payload).encode("utf-8")


def anthropic_error_body(error: ProxyError) -> bytes:
    """The Anthropic error JSON for an error."""
    return json.dumps(anthropic_error(error.message, anthropic_error_type(error.status))).encode("utf-8")


def unknown_model(model: str) -> ProxyError:
    """404 ``model_not_found``: the (client-controlled) name only redacted and cut short."""
    return ProxyError(
        404,
        f"The model `{redact_sensitive(model[:200])}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


_REFUSALS: dict[type[Refusal], tuple[int, str, Optional[str]]] = {
    RateLimited: (429, "rate_limited", None),
    BudgetExceeded: (429, "budget_exceeded", None),
    CircuitOpen: (503, "circuit_open", "server_error"),
    StateUnavailable: (503, "limits_unavailable", "server_error"),
}

_FAILURES = {TIMEOUT: 504, UNREACHABLE: 502}


def error_for(problem: BaseException | UpstreamFailure, model: str = "") -> Optional[ProxyError]:
    """
    The answer for a failure from below the web layer, or None when it is
    not one of ours (an unexpected exception: the caller answers 500).
    """
    if isinstance(problem, ProxyError):
        return problem
    if isinstance(problem, UpstreamFailure):
        status = _FAILURES.get(problem.kind, 500 if problem.kind == "internal_error" else 502)
        return ProxyError(status, problem.message, code=problem.kind)
    if isinstance(problem, Refusal):
        status, code, kind = _REFUSALS[type(problem)]
        return ProxyError(
            status, problem.message, code=code, type=kind, headers=(("retry-after", str(problem.retry_after)),)
        )
    if isinstance(problem, CannotServe):
        return ProxyError(problem.status, problem.message, param=problem.param, code=problem.code)
    if isinstance(problem, UnknownModel):
        return unknown_model(model)
    if isinstance(problem, LedgerUnavailable):
        return ProxyError(
            503,
            "The proxy cannot check this API key right now: its key database is unreachable. Retry shortly.",
            code="key_store_unavailable",
        )
    return None
