# Tests: tests/test_redacting_log.py
"""
Stdlib ``logging``, redacted: records are scrubbed at birth and bridged.

A record factory scrubs each record as it is created, so handlers that
libraries configure themselves are covered too; a root handler bridges
records into ``twisted.logger`` (and so through the redacting observer).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from twisted.logger import LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.python.reflect import safe_repr

from .redacting_observer import Observer
from .redaction import redact_sensitive

__all__ = ["route_stdlib"]


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        message = "Unformattable log record: " + safe_repr(record.msg)
    record.msg = redact_sensitive(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_sensitive("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
    if record.stack_info:
        record.stack_info = redact_sensitive(record.stack_info)


def _stdlib_level(levelno: int) -> LogLevel:
    if levelno >= logging.CRITICAL:
        return LogLevel.critical
    if levelno >= logging.ERROR:
        return LogLevel.error
    if levelno >= logging.WARNING:
        return LogLevel.warn
    if levelno >= logging.INFO:
        return LogLevel.info
    return LogLevel.debug


class _TwistedBridge(logging.Handler):
    """Forward stdlib records into ``twisted.logger`` (and so the redactor)."""

    def __init__(self, publisher: Observer) -> None:
        super().__init__()
        self._publisher = publisher
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        # A twisted->stdlib observer (STDLibLogObserver) would loop back here.
        if getattr(self._busy, "active", False):
            return
        self._busy.active = True
        try:
            try:
                text = record.getMessage()
            except Exception:
                text = "Unformattable log record: " + safe_repr(record.msg)
            if record.stack_info:
                text = text + "\n" + record.stack_info
            event: dict[str, Any] = {
                "log_format": "{log_text}",
                "log_text": text,
                "log_level": _stdlib_level(record.levelno),
                "log_namespace": record.name,
                "log_time": record.created,
            }
            exc_info = record.exc_info
            if exc_info and exc_info[1] is not None:
                event["log_failure"] = Failure(exc_info[1], exc_info[0], exc_info[2])
            self._publisher(event)
        except Exception:  # noqa: S110 - handleError() prints the raw record
            pass
        finally:
            self._busy.active = False


def route_stdlib(publisher: LogPublisher, root_logger: logging.Logger, undo: list[Callable[[], None]]) -> None:
    """
    Scrub every stdlib record at birth and bridge ``root_logger`` into
    ``publisher``; each change appends its undo to ``undo``.
    """
    previous = logging.getLogRecordFactory()

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            _scrub_record(record)
        except Exception:
            record.msg, record.args = "Unredactable log record dropped", None
        return record

    logging.setLogRecordFactory(record_factory)

    def restore_factory() -> None:
        if logging.getLogRecordFactory() is record_factory:
            logging.setLogRecordFactory(previous)

    undo.append(restore_factory)
    bridge = _TwistedBridge(publisher)
    root_logger.addHandler(bridge)
    undo.append(lambda: root_logger.removeHandler(bridge))
