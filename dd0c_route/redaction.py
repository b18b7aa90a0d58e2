# Tests: tests/test_redaction.py
"""
Take credentials out of text and data before they reach a log sink.

The proxy handles three kinds of credential: provider keys (``sk-…``,
``sk-proj-…``, ``sk-ant-api03-…``, ``sk-ant-admin01-…``), our own proxy keys
(``dd0c-`` + 43 characters, see :mod:`dd0c_route.ledger.keys`) and whatever
arrives in ``Authorization``-like headers or ``key=`` query parameters.  Any of
them can end up in a log line: in a format argument, an exception message, a
``Request`` repr (which holds the URI), a repr of a headers dict.  This module
is the single place that knows how they look.

Design choices:

- Each shape of secret has a substring marker (``sk-``, ``bearer``...) and a
  regex.  ``in`` scans text at memory speed while a regex alternation costs
  ~100 ns per character in CPython's engine, so a regex only runs on text
  that holds its marker, and clean text costs one ``lower()`` and a few
  ``in`` tests.
- Every regex either starts at a fixed literal or ends in an unbounded
  greedy run with nothing after it, so a failed attempt costs at most the
  run it started on and each scan is linear (no catastrophic backtracking on
  adversarial input such as ``"sk-" * 300000``).
- Key shapes need a word boundary before them and a minimum length after the
  prefix, so ``task-list`` or ``disk-space`` never match ``sk-``.
- A replacement keeps only the fixed, public prefix (``sk-ant-[REDACTED]``):
  never the last characters, which are the part people use to identify keys.
  The markers are ASCII so the same redactor works on bytes (latin-1).
- ``redact_sensitive`` returns its argument itself when nothing matched, so
  callers (and the log observer) pay no copy for clean text.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from attrs import frozen
from twisted.python.reflect import safe_repr

from .secret import Secret

__all__ = [
    "PROVIDER_KEY_PATTERN",
    "PROXY_KEY_PATTERN",
    "REDACTED",
    "SENSITIVE_FIELD_NAMES",
    "is_sensitive_field",
    "redact_sensitive",
    "redact_structure",
]

#: What a secret is replaced with.
REDACTED: Final = "[REDACTED]"

#: Field names (compared case-insensitively, ``-`` folded to ``_``) whose
#: values are credentials, whatever they look like.
SENSITIVE_FIELD_NAMES: Final = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "secret_key",
        "private_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "proxy_key",
        "provider_key",
        "upstream_key",
        "cookie",
        "set_cookie",
    }
)

_SENSITIVE_SUFFIXES: Final = ("_api_key", "_apikey", "_secret", "_password", "_token")

_KEY = r"[A-Za-z0-9_\-]"
_WORD = r"[A-Za-z0-9_]"

#: One provider key (``sk-``, ``sk-proj-``, ``sk-ant-api03-``...) in text: a
#: word boundary before ``sk-`` and at least 20 key characters after it.  The
#: look-behind comes after the literal so the regex engine can use its fast
#: literal-prefix search.
PROVIDER_KEY_PATTERN: Final = re.compile(rf"sk-(?<!{_WORD}sk-){_KEY}{{20,}}")

#: One whole proxy key, as :mod:`dd0c_route.ledger.keys` issues them:
#: ``dd0c-`` and 43 URL-safe base64 characters.
PROXY_KEY_PATTERN: Final = re.compile(rf"dd0c-{_KEY}{{43}}")

# A proxy key in text: 32 characters already redact a truncated one.
_PROXY_KEY_IN_TEXT: Final = re.compile(rf"dd0c-(?<!{_WORD}dd0c-){_KEY}{{32,}}")

_FIELD_NAMES = (
    r"api_key|apikey|access_token|refresh_token|id_token|client_secret"
    r"|password|secret|token"
)


@frozen
class _Family:
    """
    One shape of secret: a cheap substring test and the regex behind it.

    ``markers`` are searched with ``in`` (on the lower-cased text when
    ``folded``): the regex, much slower per character than a substring
    search, only runs on text that contains one of them.
    """

    markers: tuple[str, ...]
    folded: bool
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]


def _keep_group_1(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def _provider_key_hint(match: re.Match[str]) -> str:
    text = match.group(0)
    for hint in ("sk-ant-", "sk-proj-"):
        if text.startswith(hint):
            return hint + REDACTED
    return "sk-" + REDACTED


# Order matters a little: header values are taken whole first, so a
# "Bearer sk-..." inside one is not redacted twice into a confusing shape.
# Every branch either starts at a literal or ends in a greedy run with
# nothing after it, so no attempt backtracks further than its own run.
_FAMILIES: Final = (
    # "Authorization: value", "x-api-key=value", b'Authorization': [b'...'],
    # ('x-api-key', 'value').
    # A quoted value ends at the quote; an unquoted one at the end of line.
    _Family(
        ("authorization", "api-key"),
        True,
        re.compile(
            r"((?<![A-Za-z0-9_\-])"
            r"(?i:proxy-authorization|authorization|x-api-key|api-key)"
            r"(?:['\"][ \t]*[:=,]|[ \t]*[:=])[ \t]*(?![ \t]|\[REDACTED\])"
            r"(?:[\[(][ \t]*)?(?:b?(?P<q>['\"]))?)"
            r"(?(q)[^'\"\r\n]+|[^\r\n]+)"
        ),
        _keep_group_1,
    ),
    # 'api_key': 'value', ("password", "value") in reprs and JSON.
    _Family(
        ("key'", 'key"', "token'", 'token"', "secret", "password"),
        True,
        re.compile(rf"(['\"](?i:{_FIELD_NAMES})['\"][ \t]*[:,][ \t]*b?['\"])[^'\"\r\n]+"),
        _keep_group_1,
    ),
    # key=value in query strings and keyword-argument reprs.
    _Family(
        ("key=", "token=", "secret=", "password="),
        True,
        re.compile(
            rf"((?<![A-Za-z0-9_\-])(?i:{_FIELD_NAMES}|key)=(?:b?['\"])?)"
            r"[^&\s'\"#;,<>)\]}]+"
        ),
        _keep_group_1,
    ),
    # "Bearer <token>" anywhere (RFC 6750 b64token characters).
    _Family(
        ("bearer",),
        True,
        re.compile(rf"((?<!{_WORD})(?i:bearer)[ \t]+)[A-Za-z0-9._~+/=\-]{{8,}}"),
        _keep_group_1,
    ),
    # sk-, sk-proj-, sk-ant-api03-, sk-ant-admin01-, sk-svcacct-, ...
    _Family(("sk-",), False, PROVIDER_KEY_PATTERN, _provider_key_hint),
    # Our own proxy keys (43 characters; 32 also catches a truncated one).
    _Family(("dd0c-",), False, _PROXY_KEY_IN_TEXT, lambda match: "dd0c-" + REDACTED),
)


# marker -> a shorter word every occurrence of it contains.
_COARSE: Final = {
    "api-key": "key",
    "key'": "key",
    'key"': "key",
    "key=": "key",
    "token'": "token",
    'token"': "token",
    "token=": "token",
    "secret=": "secret",
    "password=": "password",
}


# Below this length one regex over the coarse words beats a Python loop of
# ``in`` tests; above it the ``in`` tests (memory speed) win.
_SHORT: Final = 256
_SHORT_PRECHECK: Final = re.compile(r"sk-|dd0c-|key|token|secret|password|bearer|authorization")


def redact_sensitive(text: str) -> str:
    """
    Replace every credential in ``text`` with a marker.

    Returns ``text`` itself (same object) when there is nothing to redact.
    Runs in time linear in ``len(text)``.
    """
    folded = text.lower()
    if len(text) <= _SHORT and _SHORT_PRECHECK.search(folded) is None:
        return text
    # Each ``in`` scan costs about as much as lower() itself, so a marker is
    # only looked for when its coarse word ("key", "token"...) is present.
    found: dict[str, bool] = {}
    result = text
    for family in _FAMILIES:
        haystack = folded if family.folded else text
        for marker in family.markers:
            coarse = _COARSE.get(marker, marker)
            present = found.get(coarse)
            if present is None:
                present = found[coarse] = coarse in haystack
            if present and (coarse == marker or marker in haystack):
                result = family.pattern.sub(family.replace, result)
                break
    return result


def _redact_bytes(data: bytes) -> bytes:
    # latin-1 maps every byte to one code point and back, and the markers
    # are ASCII, so this is lossless for everything that is not a secret.
    text = data.decode("latin-1")
    redacted = redact_sensitive(text)
    if redacted is text:
        return data
    return redacted.encode("latin-1")


def is_sensitive_field(name: object) -> bool:
    """
    Whether a mapping key names a credential (``Authorization``,
    ``x-api-key``, ``openai_api_key``, ``client_secret``...).
    """
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        return False
    return _is_sensitive_name(name)


@functools.lru_cache(maxsize=4096)
def _is_sensitive_name(name: str) -> bool:
    # Field names come from a small set (log event keys, header names).
    folded = name.strip().lower().replace("-", "_")
    return folded in SENSITIVE_FIELD_NAMES or folded.endswith(_SENSITIVE_SUFFIXES)


_PASSTHROUGH: Final = (
    int,
    float,
    complex,
    type(None),
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    enum.Enum,
)

_MAX_DEPTH: Final = 32


def redact_structure(obj: Any, _depth: int = 0) -> Any:
    """
    A redacted copy of a log field value.

    Mappings, lists, tuples, sets, ``str`` and ``bytes`` are walked
    recursively; the value under a sensitive key name is replaced wholesale
    by ``"[REDACTED]"`` (``None`` stays ``None``: absence is not a secret);
    every string goes through :func:`redact_sensitive`; a :class:`Secret`
    becomes ``"[REDACTED]"``.  Numbers, enums, dates and UUIDs pass through.
    Any other object becomes the redacted text of its ``repr``: a log field
    must not keep a live object whose attributes (a request's headers, a
    config's keys) a sink could read.
    """
    if isinstance(obj, str):
        return redact_sensitive(obj)
    if isinstance(obj, bytes):
        return _redact_bytes(obj)
    if isinstance(obj, Secret):
        return REDACTED
    if isinstance(obj, _PASSTHROUGH):
        return obj
    if _depth >= _MAX_DEPTH:
        return redact_sensitive(safe_repr(obj))
    depth = _depth + 1
    if isinstance(obj, Mapping):
        try:
            return {
                redact_structure(key, depth): (
                    REDACTED if value is not None and is_sensitive_field(key) else redact_structure(value, depth)
                )
                for key, value in obj.items()
            }
        except Exception:
            return redact_sensitive(safe_repr(obj))
    if isinstance(obj, list):
        return [redact_structure(item, depth) for item in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(redact_structure(item, depth) for item in obj)
    if isinstance(obj, (set, frozenset)):
        return [redact_structure(item, depth) for item in obj]
    return redact_sensitive(safe_repr(obj))
