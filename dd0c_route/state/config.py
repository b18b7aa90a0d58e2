# Tests: tests/test_shared_counters.py
"""
``[state]``: where shared limits live, and what to do when it is gone.

The Redis URL is parsed here, at start, into its parts; the password (from
``password_env`` or the URL) is held as a :class:`~dd0c_route.secret.Secret`
and the URL kept only without it (:attr:`StateConfig.display_url`), so no log
line, repr or traceback of the config can show it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional
from urllib.parse import unquote, urlsplit

import attrs

from ..secret import Secret

__all__ = ["ON_REDIS_DOWN", "StateConfig", "parse_state"]

ON_REDIS_DOWN = ("local", "closed")

_KEYS = {"redis_url", "password_env", "on_redis_down", "key_prefix", "sync_interval", "lease_fraction"}


class StateConfigError(ValueError):
    """A bad ``[state]`` value: ``key`` names it, ``problem`` says why."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


@attrs.frozen
class StateConfig:
    """A checked ``[state]`` table."""

    host: str
    port: int = 6379
    db: int = 0
    tls: bool = False
    username: Optional[str] = None
    password: Optional[Secret] = attrs.field(default=None, repr=False)
    on_redis_down: str = "local"
    key_prefix: str = "dd0c:"
    #: Seconds between reconciliations with Redis.
    sync_interval: float = 0.1
    #: The share of a limit's remaining headroom all instances together may
    #: use between two reconciliations (each takes this / instances seen).
    lease_fraction: float = 0.2

    @property
    def display_url(self) -> str:
        """The URL without its password: safe to log."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_state(table: Mapping[str, Any], environ: Mapping[str, str]) -> Optional[StateConfig]:
    """The ``[state]`` table checked, or None when it is absent or empty."""
    if not table:
        return None
    for name in table:
        if name not in _KEYS:
            raise StateConfigError(name, "unknown key (allowed: " + ", ".join(sorted(_KEYS)) + ")")
    url = table.get("redis_url")
    if not isinstance(url, str) or not url:
        raise StateConfigError("redis_url", 'must be a URL such as "redis://127.0.0.1:6379/0"')
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        # Never echo the URL: it may hold a password.
        raise StateConfigError("redis_url", "must start with redis:// or rediss:// (TLS)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise StateConfigError("redis_url", "has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise StateConfigError("redis_url", "must name a host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StateConfigError("redis_url", "the path must be a database number (e.g. /0)")
    password: Optional[Secret] = Secret(unquote(parts.password)) if parts.password else None
    env_name = table.get("password_env")
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise StateConfigError("password_env", "must name an environment variable")
        if password is not None:
            raise StateConfigError("password_env", "set the password either in redis_url or password_env, not both")
        value = environ.get(env_name, "")
        if not value:
            raise StateConfigError("password_env", f"environment variable {env_name} is not set")
        password = Secret(value)
    mode = table.get("on_redis_down", "local")
    if mode not in ON_REDIS_DOWN:
        raise StateConfigError("on_redis_down", 'must be "local" or "closed"')
    prefix = table.get("key_prefix", "dd0c:")
    if not isinstance(prefix, str) or not prefix:
        raise StateConfigError("key_prefix", "must be a non-empty string")
    interval = _number(table, "sync_interval", 0.1, 0.01, 5.0)
    fraction = _number(table, "lease_fraction", 0.2, 0.01, 1.0)
    return StateConfig(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=password,
        on_redis_down=mode,
        key_prefix=prefix,
        sync_interval=interval,
        lease_fraction=fraction,
    )


def _number(table: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise StateConfigError(name, f"must be a number from {low:g} to {high:g}")
    return float(value)
