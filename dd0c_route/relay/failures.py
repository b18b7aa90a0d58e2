# Tests: tests/test_relay.py, tests/test_upstream_errors.py
"""
How an upstream attempt failed, by kind: the relay's report, not an answer.

The relay says *what* went wrong (the provider was never reached, it did not
answer in time, the request broke in some other way, or our own code
failed); ``web/errors.py`` decides what status and body the client gets, and
``routing/fallback.py`` whether another provider should be tried.  The kind
strings are also the records' ``error_type``.
"""

from __future__ import annotations

from typing import Optional

import attrs
from twisted.python.failure import Failure

__all__ = ["ERROR", "INTERNAL", "INVALID", "TIMEOUT", "UNREACHABLE", "InvalidAnswer", "UpstreamFailure"]

#: The provider could not be reached (connect, DNS, reset before a response).
UNREACHABLE = "upstream_unreachable"
#: No response (or no body byte) within the configured timeout.
TIMEOUT = "upstream_timeout"
#: The upstream request failed in a way none of the above covers.
ERROR = "upstream_error"
#: Our own code failed while relaying.
INTERNAL = "internal_error"
#: A 200 that is no usable answer: a body that is not the JSON expected, an
#: HTML page, a non-JSON event in a stream.
INVALID = "upstream_invalid_response"


class InvalidAnswer(Exception):
    """Raised by a body handler: the upstream answer is not what the client asked for."""


@attrs.frozen
class UpstreamFailure:
    """One attempt's failure before any response byte reached the client."""

    kind: str
    message: str
    #: The Twisted failure behind it, for classification (connect vs reset).
    cause: Optional[Failure] = attrs.field(default=None, eq=False, repr=False)
