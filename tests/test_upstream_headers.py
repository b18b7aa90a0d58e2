"""Upstream request headers are built once per distinct set (relay/upstream.py, issue #18)."""

from __future__ import annotations

from twisted.internet.task import Clock

from dd0c_route.relay.upstream import UpstreamClient


def test_the_same_headers_are_built_once_and_different_ones_apart() -> None:
    client = UpstreamClient(Clock())
    one = {b"content-type": [b"application/json"], b"authorization": [b"Bearer a"]}
    first = client._headers_for(one)
    assert client._headers_for(dict(one)) is first
    other = client._headers_for({b"content-type": [b"application/json"], b"authorization": [b"Bearer b"]})
    assert other is not first
    assert other.getRawHeaders(b"authorization") == [b"Bearer b"]
    assert first.getRawHeaders(b"authorization") == [b"Bearer a"]
    beta = client._headers_for({**one, b"openai-beta": [b"assistants=v2"]})
    assert beta.getRawHeaders(b"openai-beta") == [b"assistants=v2"] and first.getRawHeaders(b"openai-beta") is None
