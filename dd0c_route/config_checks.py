# Tests: tests/test_config.py, tests/test_config_fuzz.py
"""
The checks the config declarations use that know about our domain: listen
descriptions, ledger URLs, model and rule names, path prefixes, money.

Each is a :data:`dd0c_route.schema.Check`: it returns for a good value and
raises :class:`~dd0c_route.schema.Invalid` with the problem in words.  The
ones for values that may hold a secret (a ledger URL with its password)
never put the value in the message.
"""

from __future__ import annotations

import re
import urllib.parse
from decimal import Decimal
from typing import Any, Callable, Iterable, Union

from .schema import Check, Invalid

__all__ = [
    "at_most",
    "between",
    "each",
    "each_key",
    "each_value",
    "env_name",
    "is_glob",
    "ledger_url",
    "masked_url",
    "model_name",
    "non_negative",
    "not_blank",
    "one_of",
    "path_prefix",
    "plain_name",
    "positive",
    "price",
    "rule_name",
    "strports_description",
    "usd",
    "workers_count",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONNINFO_PAIR = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']\S*)\s*")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)")
_MAX_USD = Decimal(10) ** 6
"""No model costs a million USD per million tokens; bigger is a typo (and would break exact arithmetic)."""
_USD_DECIMALS = 6


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def strports_description(value: str) -> None:
    """Parsed as ``twistd`` will, without listening: a typo fails the check, not the start."""
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, value)
    except Exception as error:  # any parse failure is the operator's typo
        raise Invalid(f"must be a Twisted strports description such as tcp:8080 ({error})") from None


def ledger_url(value: str) -> None:
    """A ``postgresql://`` URL or a libpq ``key=value`` string; the value (and its password) is never shown."""
    if not value.isprintable() or not value.strip():
        raise Invalid("must be a postgresql:// URL or a libpq key=value string (it has no or unprintable characters)")
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise Invalid("must be a postgresql:// URL or a libpq key=value string (wrong URL scheme)")
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - reading it checks it
        except ValueError:
            raise Invalid("is not a valid postgresql:// URL (check the host and port)") from None
        if " " in value:
            raise Invalid("is not a valid postgresql:// URL (spaces must be percent-encoded)")
        return
    position = 0
    while position < len(value):
        match = _CONNINFO_PAIR.match(value, position)
        if match is None or match.end() == position:
            raise Invalid("is not a valid libpq key=value string (expected key=value pairs)")
        position = match.end()


def masked_url(value: Any) -> str:
    """A ledger URL's repr with its password replaced; never raises."""
    if not isinstance(value, str):
        return repr(value)
    masked = _URL_PASSWORD.sub(r"\1***@", value)
    return repr(_CONNINFO_PASSWORD.sub(r"\1***", masked))


def env_name(value: str) -> None:
    if not _ENV_NAME.fullmatch(value):
        raise Invalid("must be an environment variable name (letters, digits and _)")


def path_prefix(value: str) -> None:
    if not value.startswith("/v1/") or not value.isascii() or not value.isprintable() or " " in value:
        raise Invalid("must be a path prefix starting with /v1/")
    if any(part in ("", ".", "..") for part in value.rstrip("/").split("/")[1:]) or "%" in value or "\\" in value:
        raise Invalid("must be a plain /v1/ path prefix (no empty, '.' or '..' segments, no escapes)")


def model_name(value: str) -> None:
    if not value.strip():
        raise Invalid("must be a model name")
    if is_glob(value):
        raise Invalid(f"must be a model name, not a glob ({value!r})")


def plain_name(value: str) -> None:
    if not value or is_glob(value):
        raise Invalid("an alias must be a plain name")


def rule_name(value: str) -> None:
    if not value.strip():
        raise Invalid("is required (it is shown in x-dd0c-route)")
    if value == "default" or value.startswith("shadow:") or not value.isprintable() or len(value) > 64:
        raise Invalid("must be 1 to 64 printable characters, not 'default' or 'shadow:...'")


def usd(value: Decimal) -> None:
    if not value.is_finite() or value < 0:
        raise Invalid("must be a finite, non-negative amount")


def price(value: Decimal) -> None:
    """
    USD per million tokens: finite, non-negative, below a million, at most 6
    decimals (the price table's exact arithmetic relies on the last two).
    """
    usd(value)
    if value >= _MAX_USD:
        raise Invalid(f"must be less than {_MAX_USD}")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    extra = -_USD_DECIMALS - exponent
    if extra > 0 and any(digits[-extra:]):
        raise Invalid(f"may have at most {_USD_DECIMALS} decimals")


def workers_count(value: Union[int, str]) -> None:
    if isinstance(value, str):
        if value != "auto":
            raise Invalid('must be a number of processes (1 or more) or "auto"')
    elif value < 1:
        raise Invalid(f'must be a number of processes (1 or more) or "auto" (got {value})')


# Generic checks: small, reusable, and silent about the value when it may be a secret.


def positive(value: Union[int, float, Decimal]) -> None:
    if not value > 0:
        raise Invalid(f"must be greater than 0 (got {value})")


def non_negative(value: Union[int, float, Decimal]) -> None:
    if not value >= 0:
        raise Invalid(f"must not be negative (got {value})")


def at_most(limit: Union[int, float], why: str = "") -> Check:
    def check(value: Union[int, float]) -> None:
        if value > limit:
            raise Invalid(f"must be at most {limit}" + (f" ({why})" if why else "") + f" (got {value})")

    return check


def between(low: int, high: int) -> Check:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise Invalid(f"must be between {low} and {high} (got {value})")

    return check


def not_blank(value: str) -> None:
    """Never shows the value: a secret field uses it too."""
    if not value.strip():
        raise Invalid("must not be empty")


def one_of(*choices: str) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            raise Invalid(f"must be one of: {', '.join(choices)}")

    return check


def _each(check: Check, entries: Callable[[Any], Iterable[tuple[Union[int, str], Any]]]) -> Check:
    def check_entries(values: Any) -> None:
        for where, value in entries(values):
            try:
                check(value)
            except Invalid as error:
                raise error.inside(where) from None

    return check_entries


def each(check: Check) -> Check:
    """``check`` on every item of an array, naming the item's index."""
    return _each(check, enumerate)


def each_key(check: Check) -> Check:
    """``check`` on every key of a table, naming the key."""
    return _each(check, lambda table: ((key, key) for key in table))


def each_value(check: Check) -> Check:
    """``check`` on every value of a table, naming its key."""
    return _each(check, lambda table: table.items())
