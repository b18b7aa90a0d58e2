# Tests: tests/test_alerts.py, tests/test_alerts_live.py
"""
Webhook doubles for budget alerts: an in-memory
:class:`~dd0c_route.alerts.interfaces.IWebhookPoster` and a real HTTP
stand-in on loopback that counts what it is POSTed.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence, Union

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from ..alerts.interfaces import IWebhookPoster

__all__ = ["HANG", "RecordingPoster", "WebhookReceiver", "start_webhook_receiver"]

#: An outcome of :class:`RecordingPoster`: the POST never answers.
HANG = "hang"


@implementer(IWebhookPoster)
class RecordingPoster:
    """
    Records every POST (URL and decoded JSON body) and answers with the
    queued ``outcomes`` in turn: None is a 2xx, an exception that failure,
    :data:`HANG` a Deferred that never fires; once they are spent, 2xx.
    """

    def __init__(self, outcomes: Sequence[Union[BaseException, str, None]] = ()) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.outcomes = list(outcomes)
        self.hanging: list[Deferred[None]] = []

    def post(self, url: str, body: bytes) -> Deferred[None]:
        self.posts.append((url, json.loads(body)))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome == HANG:
            d: Deferred[None] = Deferred()
            self.hanging.append(d)
            return d
        if isinstance(outcome, BaseException):
            return fail(outcome)
        return succeed(None)


class _Hook(Resource):
    isLeaf = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__()
        self.receiver = receiver

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        headers = {name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        self.receiver.posts.append((request.path.decode("latin-1"), headers, json.loads(body)))
        status = self.receiver.statuses.pop(0) if self.receiver.statuses else 200
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"ok" if status < 300 else b"no"


@attrs.define
class WebhookReceiver:
    """A webhook stand-in: every POST as (path, headers, JSON body); answers ``statuses`` in turn, then 200."""

    posts: list[tuple[str, dict[str, list[str]], Any]] = attrs.field(factory=list)
    statuses: list[int] = attrs.field(factory=list)
    port: Any = None

    def url(self, path: str = "/hooks/budget") -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}{path}"

    def stop(self) -> Deferred[Any]:
        return self.port.stopListening()  # type: ignore[no-any-return]


def start_webhook_receiver(reactor: Any, statuses: Optional[Sequence[int]] = None) -> Deferred[WebhookReceiver]:
    """Listen on a free loopback port; fires with the :class:`WebhookReceiver`."""
    receiver = WebhookReceiver(statuses=list(statuses or ()))
    d = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(_Hook(receiver)))

    def listening(port: Any) -> WebhookReceiver:
        receiver.port = port
        return receiver

    return d.addCallback(listening)
