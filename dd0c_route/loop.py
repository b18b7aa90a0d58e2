# Tests: tests/test_loop.py
"""
Guards against the proxy calling itself.

A shared ``.env`` that sets ``OPENAI_BASE_URL`` for the clients also sets it
for the gateway, which then relays every request to itself until sockets
run out.  Two guards: at start, a provider whose ``base_url`` is the
proxy's own listen address is refused; at run time, every upstream request
carries ``Via: 1.1 dd0c-route`` and a request that arrives with it is
answered 508 Loop Detected (a loop through another hop, or across two
dd0c-route instances pointed at each other).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional
from urllib.parse import urlsplit

__all__ = ["VIA", "VIA_TOKEN", "carries_our_via", "refuse_self_pointing", "self_pointing_provider"]

VIA_TOKEN = b"dd0c-route"
#: The ``Via`` value the adapters add to every upstream request (RFC 9110 7.6.3).
VIA = b"1.1 " + VIA_TOKEN


def carries_our_via(values: Optional[list[bytes]]) -> bool:
    """Whether any ``Via`` entry was received by a dd0c-route."""
    if not values:
        return False
    for value in values:
        for entry in value.split(b","):
            parts = entry.split()
            if len(parts) >= 2 and parts[1] == VIA_TOKEN:
                return True
    return False


_ANY = {"", "0.0.0.0", "::"}  # noqa: S104 - names of the wildcard address, compared, never bound


def _is_local(host: str) -> bool:
    if host in ("localhost", *_ANY):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_address(listen: str) -> Optional[tuple[str, int]]:
    """(interface, port) of a tcp/ssl strports description, or None."""
    parts = listen.replace("\\:", "\0").split(":")
    if parts[0] not in ("tcp", "tcp6", "ssl") and not parts[0].isdigit():
        return None
    positional = [p for p in parts[1:] if "=" not in p]
    options = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    port_text = parts[0] if parts[0].isdigit() else options.get("port", positional[0] if positional else "")
    try:
        port = int(port_text)
    except ValueError:
        return None
    return options.get("interface", "").replace("\0", ":").strip("[]"), port


def self_pointing_provider(config: Any, listen: Optional[str] = None) -> Optional[str]:
    """The name of a provider whose base_url is this proxy's listen address, if any."""
    address = _listen_address(listen or config.server.listen)
    if address is None or address[1] == 0:
        return None
    interface, port = address
    for provider in config.providers:
        try:
            url = urlsplit(provider.base_url)
            target = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:  # not a URL we could connect to either: the relay reports it
            continue
        host = (url.hostname or "").lower()
        if target != port:
            continue
        if host == interface.lower() or (_is_local(host) and (interface in _ANY or _is_local(interface))):
            return str(provider.name)
    return None


def refuse_self_pointing(config: Any) -> None:
    """Raise ``ConfigError`` naming the provider whose base_url is this proxy itself."""
    from .config import ConfigError

    looping = self_pointing_provider(config)
    if looping is not None:
        raise ConfigError(
            f"providers.{looping}.base_url",
            f"points at this proxy's own listen address ({config.server.listen}): it would relay to itself "
            "(are OPENAI_BASE_URL/ANTHROPIC_BASE_URL, meant for the clients, set in the proxy's environment?)",
        )
