"""
A real PostgreSQL for tests: every test gets a database of its own, dropped
afterwards.

The server is ``DD0C_TEST_POSTGRES`` (a libpq string; default the local
PostgreSQL 15 at 127.0.0.1:5432 as user postgres).  When it cannot be
reached the test is skipped with a loud reason -- unless ``CI`` is set:
there a missing database is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import secrets
import warnings
from typing import Any

import psycopg
from twisted.trial.unittest import SkipTest

__all__ = ["SERVER", "create_database", "require_postgres"]

SERVER = os.environ.get("DD0C_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)


def require_postgres() -> None:
    """Skip (loudly) without a server, or fail under CI."""
    try:
        _admin().close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            raise AssertionError(f"CI is set and PostgreSQL at {SERVER!r} is unreachable: {error}") from None
        reason = f"PostgreSQL at {SERVER!r} is unreachable ({error}); start it or set DD0C_TEST_POSTGRES"
        warnings.warn("SKIPPING PostgreSQL TESTS: " + reason, stacklevel=2)
        raise SkipTest(reason) from None


def create_database(testcase: Any) -> str:
    """
    A fresh, empty database for C{testcase} (dropped at its cleanup);
    returns its libpq connection string.
    """
    require_postgres()
    name = "dd0c_test_" + secrets.token_hex(6)
    with _admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[call-overload]

    def drop() -> None:
        with _admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[call-overload]

    testcase.addCleanup(drop)
    params = psycopg.conninfo.conninfo_to_dict(SERVER)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
