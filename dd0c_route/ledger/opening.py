# Tests: tests/test_postgres.py, tests/test_cli.py
"""
Opening the configured store: SQLite at ``ledger.path`` or PostgreSQL at
``ledger.url``.

The proxy's start and every CLI command open the ledger here, so both
migrate the schema the same way (or, with ``ledger.auto_migrate = false``,
only check it and leave migrating to ``dd0c-route migrate``).  Every
failure becomes a L{ConfigError} naming the key at fault; the password is
never part of the message.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Mapping, Optional

from ..config import ConfigError, LedgerConfig
from .interfaces import LedgerSchemaError, LedgerUnavailable

__all__ = ["is_postgres", "open_ledger"]


def is_postgres(config: LedgerConfig) -> bool:
    """True when the config selects PostgreSQL."""
    return config.url is not None


def _scrub(message: str, password: Optional[str]) -> str:
    return message.replace(password, "***") if password else message


def open_ledger(config: LedgerConfig, environ: Mapping[str, str], *, migrate: Optional[bool] = None) -> Any:
    """
    The store the config names, migrated (C{migrate} None: as
    ``ledger.auto_migrate`` says).
    """
    if config.url is None:
        from .sqlite import SQLiteLedger

        try:
            return SQLiteLedger(config.path)
        except LedgerSchemaError as error:
            raise ConfigError("ledger.path", str(error)) from None
        except sqlite3.Error as error:
            raise ConfigError("ledger.path", f"cannot open {config.path!r}: {error}") from None

    import psycopg

    from .conninfo import describe_conninfo
    from .postgres import PostgresLedger, password_from

    password = password_from(environ, config.password_env)
    if config.password_env and password is None:
        raise ConfigError("ledger.password_env", f"the environment variable {config.password_env} is not set")
    where = describe_conninfo(config.url)
    try:
        return PostgresLedger(
            config.url,
            password=password,
            connect_timeout=config.connect_timeout,
            pool_size=config.pool_size,
            migrate=config.auto_migrate if migrate is None else migrate,
        )
    except LedgerSchemaError as error:
        raise ConfigError("ledger.url", _scrub(str(error), password)) from None
    except LedgerUnavailable as error:
        raise ConfigError(
            "ledger.url",
            _scrub(f"cannot reach PostgreSQL at {where} within {config.connect_timeout:g}s ({error})", password),
        ) from None
    except psycopg.Error as error:
        raise ConfigError("ledger.url", _scrub(f"PostgreSQL at {where} refused the ledger: {error}", password)) from None
