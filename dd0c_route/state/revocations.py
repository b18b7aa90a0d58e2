# Tests: tests/test_state_live.py, tests/test_key_limits_live.py
"""
Key revocations and key changes, broadcast: every proxy stops a revoked key,
and applies a key's new team, budgets and limits, within a round trip.

``dd0c-route keys revoke`` writes the store first (the truth, and the key
cache's TTL reload is the fallback when Redis is down), then publishes the
key id on ``{key_prefix}revocations``; each proxy's subscriber evicts that
key from its cache, so the next request with it reads the store and is
refused.

The admin API (in a running proxy) publishes through the proxy's own link
(:class:`KeyAnnouncer`): a revocation on the same channel, a change (team,
budgets, limits) on ``{key_prefix}keys``, on which every proxy reloads its
key cache; without Redis, or while it is down, the key cache's reload
(``key_cache_ttl / 2``) still brings the change.

The CLI is a short-lived synchronous process, so it speaks RESP over a
plain socket (:func:`publish_revocation`) instead of starting a reactor:
AUTH, PUBLISH, one reply each, a two-second timeout.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

from .config import StateConfig

__all__ = ["KeyAnnouncer", "channel", "publish_revocation", "subscribe_key_changes", "subscribe_revocations"]


def channel(prefix: str) -> str:
    """The pub/sub channel revocations travel on."""
    return prefix + "revocations"


def subscribe_revocations(link: Any, prefix: str, evict: Callable[[str], Any]) -> None:
    """Evict every key id published on the revocations channel."""
    link.subscribe(channel(prefix), lambda key_id: evict(key_id.strip()))


def subscribe_key_changes(link: Any, prefix: str, refresh: Callable[[], Any]) -> None:
    """Reload the key cache whenever a key's attributes change anywhere."""
    link.subscribe(prefix + "keys", lambda _key_id: refresh())


class KeyAnnouncer:
    """What the admin API calls after a key changed: best effort (Redis may be down)."""

    def __init__(self, link: Any, prefix: str) -> None:
        self._link = link
        self._prefix = prefix

    def revoked(self, key_id: str) -> None:
        self._link.publish(channel(self._prefix), key_id).addErrback(lambda _: None)

    def changed(self, key_id: str) -> None:
        self._link.publish(self._prefix + "keys", key_id).addErrback(lambda _: None)


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _reply(stream: Any) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed by Redis")
    if line[:1] == b"-":
        # A Redis error names the problem (WRONGPASS, NOAUTH), never the password.
        raise OSError(line[1:].strip().decode("utf-8", "replace"))
    return line[1:].strip()


def publish_revocation(config: StateConfig, key_id: str, timeout: float = 2.0) -> int:
    """
    Publish one revocation, synchronously; returns how many proxies
    received it.  Raises OSError when Redis cannot be reached.
    """
    raw = socket.create_connection((config.host, config.port), timeout=timeout)
    sock: Any = raw
    if config.tls:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=config.host)
    try:
        stream = sock.makefile("rb")
        if config.password is not None:
            auth = ("AUTH", config.username, config.password.reveal()) if config.username else (
                "AUTH", config.password.reveal()
            )
            sock.sendall(_command(*auth))
            _reply(stream)
        sock.sendall(_command("PUBLISH", channel(config.key_prefix), key_id))
        return int(_reply(stream))
    finally:
        sock.close()
