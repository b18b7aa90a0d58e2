# Tests: tests/test_paths.py
"""
Which request paths may be relayed, and in what form.

A relayed path reaches the provider with the operator's key, so it must name
exactly what it seems to name.  Servers and proxies between us and the
provider may decode ``%2e`` or ``%2F`` and resolve dot segments; a path that
still means something else once they have (``/v1/../admin``,
``/v1/%2e%2e/admin``, ``/v1/a%2F..%2F..%2Fadmin``) would reach another part of
the provider's host.  So :func:`normalize_path` decodes the percent-encoded
*unreserved* characters (RFC 3986 section 2.3: decoding them never changes
meaning), and refuses every path that a normaliser could read differently:
a ``.`` or ``..`` segment, an encoded ``/`` or ``\\`` inside a segment, a raw
``\\``, a NUL or other control character (raw or encoded), a raw byte outside
ASCII, or a malformed escape.  Other escapes (``%20``, ``%3A``) are kept.

:class:`Passthrough` is the operator's allowlist of ``/v1/*`` endpoint
prefixes relayed unchanged; a prefix matches at a segment boundary only
(``/v1/files`` allows ``/v1/files`` and ``/v1/files/abc``, not
``/v1/filesystem``).
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["InvalidPath", "Passthrough", "normalize_path"]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(rb"%(..)?", re.DOTALL)
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: Raw bytes never allowed in a path: controls, DEL, backslash, non-ASCII.
_BAD_RAW = re.compile(rb"[\x00-\x20\x7f-\xff\\]")


class InvalidPath(ValueError):
    """A path that must not be relayed; the message says why, never the path."""


def _decode(match: re.Match[bytes]) -> bytes:
    pair = match.group(1)
    if pair is None or not (pair[0] in _HEX and pair[1] in _HEX):
        raise InvalidPath("malformed percent-escape")
    value = int(pair, 16)
    if value in _UNRESERVED:
        return bytes((value,))
    if value < 0x20 or value == 0x7F:
        raise InvalidPath("encoded control character")
    if value in (0x2F, 0x5C):
        raise InvalidPath("encoded '/' or '\\' inside a segment")
    return b"%" + pair.upper()


def normalize_path(path: bytes) -> bytes:
    """
    ``path`` (without the query) with its unreserved escapes decoded, or
    :class:`InvalidPath` when a normaliser could read it as another path.
    """
    if _BAD_RAW.search(path):
        raise InvalidPath("control character, space, backslash or non-ASCII byte")
    if b"%" in path:
        path = _ESCAPE.sub(_decode, path)
    if b"." in path:
        for segment in path.split(b"/"):
            if segment in (b".", b".."):
                raise InvalidPath("'.' or '..' segment")
    return path


class Passthrough:
    """
    The allowlist of ``/v1/*`` prefixes relayed unchanged (config
    ``[server] passthrough``).
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        self.prefixes = tuple(p.rstrip("/").encode("ascii") for p in prefixes)

    def allows(self, path: bytes) -> bool:
        """Whether ``path`` (already normalized) is one of the prefixes or under one."""
        for prefix in self.prefixes:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 0x2F):
                return True
        return False
