# Tests: tests/test_ledger.py
"""
Proxy keys: how they look, how they are made and how they are stored.

A proxy key is ``dd0c-`` followed by 43 URL-safe base64 characters (256 bits
of entropy).  Only its SHA-256 hex digest is stored; the key itself is shown
once, at creation.  The fixed prefix lets the redactor recognise our own keys
anywhere in text.
"""

from __future__ import annotations

import hashlib
import secrets

from ..redaction import PROXY_KEY_PATTERN

__all__ = ["KEY_PREFIX", "PROXY_KEY_PATTERN", "generate_key", "hash_key", "new_key_id"]

KEY_PREFIX = "dd0c-"
# PROXY_KEY_PATTERN (one whole key) is defined with the redactor's other key
# shapes, in dd0c_route.redaction, and re-exported here beside the generator.


def generate_key() -> str:
    """A fresh proxy key (shown once to the operator, never stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256 hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key_id() -> str:
    """A public, non-secret identifier for a key (safe in logs and records)."""
    return "key_" + secrets.token_hex(6)
