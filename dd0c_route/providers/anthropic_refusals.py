# Tests: tests/test_anthropic_request.py
"""
The two ways a request translation refuses: a bad value, or a parameter
Anthropic cannot honour.  Both are 400 :class:`TranslationError` errors raised
before anything is sent, so nothing is billed for a reply that would differ
from what the client asked for.
"""

from __future__ import annotations

from typing import Optional

from dd0c_route.providers.anthropic_errors import TranslationError

__all__ = ["refuse", "unsupported"]


def refuse(message: str, param: Optional[str], code: Optional[str] = None) -> TranslationError:
    """A 400 naming the request field ``param`` that cannot be translated."""
    return TranslationError(400, message, param, code)


def unsupported(param: str, why: str) -> TranslationError:
    """A 400 ``unsupported_parameter`` for ``param``, saying ``why``."""
    return refuse(
        f"'{param}' is not supported for Anthropic models: {why}",
        param,
        "unsupported_parameter",
    )
