# Tests: tests/test_cli.py
"""
How a ``dd0c-route`` command ends: its exit codes, and the exception that
stops it with a message for stderr (``main`` prints it and exits with its code).
"""

from __future__ import annotations

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "Fail"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

_MAX_NAME = 64


class Fail(Exception):
    """Stop the command: print the message on stderr and exit with the code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
