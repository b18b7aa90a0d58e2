# Tests: tests/test_alerts.py
"""The seam between the alert watcher and the network: one webhook POST."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Interface

__all__ = ["IWebhookPoster", "WebhookRefused"]


class WebhookRefused(Exception):
    """
    The webhook answered with a non-2xx status.  ``retry`` says whether a
    later attempt may succeed (5xx, 408, 429); the message holds only the
    status, never the URL (a webhook URL is a credential).
    """

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry = status >= 500 or status in (408, 429)


class IWebhookPoster(Interface):
    """POSTs a JSON body to a webhook."""

    def post(url: str, body: bytes) -> Deferred[None]:
        """
        One attempt: fires with None on a 2xx answer, fails with
        :class:`WebhookRefused` on another status, or with the connection's
        failure.  Never sends a credential of ours.
        """
