# Tests: tests/test_redacting_log.py
"""
Panic handlers that write only redacted text to stderr.

``sys.excepthook``, ``threading.excepthook`` and ``sys.unraisablehook``
never reach ``twisted.logger``, so each gets a replacement that renders the
traceback and redacts it before writing.  A panic handler must not raise.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from twisted.python.reflect import safe_repr

from .redaction import redact_sensitive

__all__ = ["install_panic_hooks"]


def _write_redacted(process: Any, text: str) -> None:
    try:
        stream = process.stderr or process.__stderr__
        stream.write(redact_sensitive(text))
        stream.flush()
    except Exception:  # noqa: S110 - a panic handler must not raise
        pass


def _make_excepthook(process: Any) -> Callable[..., None]:
    def excepthook(exc_type: Any, exc_value: Any, exc_tb: Any) -> None:
        """Print a redacted traceback for an uncaught exception."""
        try:
            text = "".join(traceback.format_exception(exc_type, exc_value, exc_tb))
        except Exception:
            text = "Uncaught exception (traceback unavailable)\n"
        _write_redacted(process, text)

    return excepthook


def _make_thread_excepthook(process: Any) -> Callable[[Any], None]:
    def thread_excepthook(args: Any) -> None:
        """Print a redacted traceback for an exception that ended a thread."""
        if args.exc_type is SystemExit:
            return
        try:
            name = args.thread.name if args.thread is not None else threading.get_ident()
            text = f"Exception in thread {name}:\n" + "".join(
                traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
            )
        except Exception:
            text = "Exception in a thread (traceback unavailable)\n"
        _write_redacted(process, text)

    return thread_excepthook


def _make_unraisablehook(process: Any) -> Callable[[Any], None]:
    def unraisablehook(unraisable: Any) -> None:
        """Print a redacted report of an exception Python could not raise."""
        try:
            message = unraisable.err_msg or "Exception ignored in"
            if unraisable.object is not None:
                message = f"{message}: {safe_repr(unraisable.object)}"
            text = (
                message
                + "\n"
                + "".join(
                    traceback.format_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
                )
            )
        except Exception:
            text = "Unraisable exception (details unavailable)\n"
        _write_redacted(process, text)

    return unraisablehook


def _hook(target: Any, name: str, hook: object, undo: list[Callable[[], None]]) -> None:
    previous = getattr(target, name)
    setattr(target, name, hook)

    def restore() -> None:
        if getattr(target, name) is hook:
            setattr(target, name, previous)

    undo.append(restore)


def install_panic_hooks(process: Any, threads: Any, undo: list[Callable[[], None]]) -> None:
    """
    Replace ``process``'s excepthook and unraisablehook and ``threads``'
    excepthook; each replacement appends its undo to ``undo``.
    """
    _hook(process, "excepthook", _make_excepthook(process), undo)
    _hook(process, "unraisablehook", _make_unraisablehook(process), undo)
    _hook(threads, "excepthook", _make_thread_excepthook(process), undo)
