"""The self-pointing provider guard and the Via check (dd0c_route/loop.py)."""

from __future__ import annotations

import pytest

from dd0c_route.config import parse_config
from dd0c_route.loop import VIA, carries_our_via, self_pointing_provider
from dd0c_route.providers.adapters import default_adapters


def config(listen: str, base_url: str):
    return parse_config({"server": {"listen": listen}, "providers": {"openai": {"base_url": base_url}}}, {})


@pytest.mark.parametrize(
    "listen, base_url, looping",
    [
        ("tcp:8080:interface=127.0.0.1", "http://127.0.0.1:8080/v1", True),
        ("tcp:8080:interface=127.0.0.1", "http://localhost:8080/v1", True),
        ("tcp:8080", "http://127.0.0.1:8080/v1", True),
        ("tcp:port=8080:interface=0.0.0.0", "http://[::1]:8080", True),
        ("tcp:80:interface=10.1.2.3", "http://10.1.2.3/v1", True),
        ("tcp:8080:interface=127.0.0.1", "http://127.0.0.1:8081/v1", False),
        ("tcp:8080:interface=127.0.0.1", "https://api.openai.com/v1", False),
        ("tcp:0:interface=127.0.0.1", "http://127.0.0.1:0/v1", False),
        ("unix:/tmp/dd0c.sock", "http://127.0.0.1:8080/v1", False),
    ],
)
def test_self_pointing(listen, base_url, looping):
    assert (self_pointing_provider(config(listen, base_url)) == "openai") is looping


def test_via():
    assert carries_our_via([b"1.1 proxy-a, 1.1 dd0c-route"])
    assert not carries_our_via([b"1.1 proxy-a"]) and not carries_our_via(None)
    assert not carries_our_via([b"dd0c-route"])
    for adapter in default_adapters().values():
        provider = parse_config({}, {}).providers[0]
        from twisted.web.http_headers import Headers

        assert adapter.headers(provider, Headers(), native=False)[b"via"] == [VIA]
