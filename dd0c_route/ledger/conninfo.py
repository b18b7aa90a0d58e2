# Tests: tests/test_postgres.py
"""
PostgreSQL connection strings, checked and shown without their password.

libpq's own parse errors quote the string they failed on, password and
all, so neither the config check nor any message ever passes them on:
they say what is wrong in our words and show ``user@host:port/dbname``.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["check_conninfo", "describe_conninfo"]


def check_conninfo(conninfo: str) -> Optional[str]:
    """None when C{conninfo} is a usable URL or key=value string, else the problem."""
    import psycopg

    text = conninfo.strip()
    if not text:
        return "must be a postgresql:// URL or a libpq key=value string"
    if "://" in text and not text.startswith(("postgresql://", "postgres://")):
        return "must be a postgresql:// URL or a libpq key=value string (other URL schemes are not PostgreSQL)"
    try:
        psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.Error:
        return "is not a valid postgresql:// URL or libpq key=value string (value not shown: it may hold a password)"
    return None


def describe_conninfo(conninfo: str) -> str:
    """
    ``user@host:port/dbname`` for messages: never the password, and never
    the raw string.
    """
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "(unparsable connection string)"
    user = str(params.get("user") or "")
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = str(params.get("dbname") or user)
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"
