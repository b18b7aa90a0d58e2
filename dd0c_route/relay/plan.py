# Tests: tests/test_provider_contract.py, tests/test_fallback.py
"""
One upstream request, as a provider adapter plans it and the relay sends it.
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs
from twisted.web.iweb import IResponse

from ..metering.usage import UsageFacts
from .handlers import BodyHandler

__all__ = ["ErrorTranslator", "UpstreamCall"]

#: ``(status, body, headers) -> (status, body, headers)``: what the client sees of a provider error.
ErrorTranslator = Callable[[int, bytes, dict[bytes, list[bytes]]], tuple[int, bytes, dict[bytes, list[bytes]]]]


@attrs.frozen
class UpstreamCall:
    """
    Where to send a request and how to read its answer: ``choose_handler``
    picks the body handler for a successful response (it fills
    ``facts``), ``translate_error`` maps an error response to what the
    client sees.
    """

    url: str
    headers: dict[bytes, list[bytes]]
    body: Optional[bytes]
    facts: UsageFacts
    choose_handler: Callable[[IResponse], BodyHandler]
    translate_error: ErrorTranslator
    method: str = "POST"
