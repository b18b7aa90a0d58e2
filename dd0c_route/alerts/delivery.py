# Tests: tests/test_alerts.py
"""
One alert's webhook delivery: bounded attempts with exponential backoff on
the injected clock.

Retried: connection failures, timeouts, 5xx, 408 and 429.  A 4xx refusal
is final (the same body will be refused again).  The outcome is the number
of attempts and whether one succeeded; the failure, if any, is described
for the log by its kind only (``HTTP 500``, ``ConnectionRefusedError``):
an exception's text can hold the webhook's host or path, and a webhook URL
is a credential.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from .interfaces import IWebhookPoster, WebhookRefused

__all__ = ["Delivery", "deliver", "describe_failure"]


@attrs.frozen
class Delivery:
    """How a delivery ended: ``sent``, after ``attempts``; ``why`` when not sent."""

    sent: bool
    attempts: int
    why: Optional[str] = None


def describe_failure(error: BaseException) -> str:
    """The failure's kind, never its text (it may hold the URL)."""
    if isinstance(error, WebhookRefused):
        return str(error)
    return type(error).__name__


@inlineCallbacks
def deliver(
    poster: IWebhookPoster, clock: IReactorTime, url: str, body: bytes, *,
    attempts: int = 5, first_delay: float = 1.0,
) -> Any:
    """
    POST ``body`` until one attempt succeeds, a refusal is final, or
    ``attempts`` are spent (waiting ``first_delay``, then twice as long each
    time).  Fires with a :class:`Delivery`; never fails, except with
    ``CancelledError`` when cancelled (at stop: the poster reports its own
    timeout as ``TimeoutError``, so a cancel can only come from the caller).
    """
    delay = first_delay
    why = "no attempt"
    for attempt in range(1, attempts + 1):
        try:
            yield poster.post(url, body)
        except WebhookRefused as refused:
            why = describe_failure(refused)
            if not refused.retry:
                return Delivery(False, attempt, why)
        except CancelledError:
            raise
        except Exception as error:
            why = describe_failure(error)
        else:
            return Delivery(True, attempt)
        if attempt < attempts:
            yield deferLater(clock, delay, lambda: None)
            delay *= 2
    return Delivery(False, attempts, why)
