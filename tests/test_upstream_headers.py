"""Upstream request headers are built once per distinct set (relay/upstream.py, issue #18)."""

from __future__ import annotations

from twisted.internet.task import Clock

from dd0c_route.relay.upstream import UpstreamClient

URI = b"http://127.0.0.1:8000/v1/chat/completions"


def test_the_same_headers_are_built_once_and_different_ones_apart() -> None:
    client = UpstreamClient(Clock())
    one = {b"content-type": [b"application/json"], b"authorization": [b"Bearer a"]}
    first = client._headers_for(URI, one)
    assert client._headers_for(URI, dict(one)) is first
    other = client._headers_for(URI, {b"content-type": [b"application/json"], b"authorization": [b"Bearer b"]})
    assert other is not first
    assert other.getRawHeaders(b"authorization") == [b"Bearer b"]
    assert first.getRawHeaders(b"authorization") == [b"Bearer a"]
    beta = client._headers_for(URI, {**one, b"openai-beta": [b"assistants=v2"]})
    assert beta.getRawHeaders(b"openai-beta") == [b"assistants=v2"] and first.getRawHeaders(b"openai-beta") is None


def test_built_with_what_treq_and_the_agent_add() -> None:
    """Accept-Encoding (treq's decoder) and Host (the Agent) are part of the built set, per URI."""
    client = UpstreamClient(Clock())
    one = {b"content-type": [b"application/json"]}
    built = client._headers_for(URI, one)
    assert built.getRawHeaders(b"accept-encoding") == [b"gzip"]
    assert built.getRawHeaders(b"host") == [b"127.0.0.1:8000"]
    assert client._headers_for(b"https://api.openai.com/v1/chat/completions", one).getRawHeaders(b"host") == [b"api.openai.com"]
    assert client._headers_for(b"http://[::1]:9/v1/x", one).getRawHeaders(b"host") == [b"[::1]:9"]
