# Tests: tests/test_redacting_log.py
"""
One redacting root observer in front of every log sink.

``FilteringLogObserver`` can only drop events; removing a key from a log line
needs an observer that builds a scrubbed *copy* of each event and is the only
path to any sink.  :class:`~dd0c_route.redacting_observer.RedactingObserver`
is that observer, and :func:`install_redacting_logging` makes it the only
path.

Where the hook goes, and why there:

- Every ``twisted.logger`` event - ``Logger`` calls, legacy
  ``twisted.python.log.msg``/``err`` (its publisher forwards to the global
  one), "Unhandled error in Deferred", ``twisted.web``'s ``processingFailed``,
  redirected ``stdout``/``stderr`` (``LoggingFile`` writes to the global
  publisher) and the events buffered before logging began (replayed *into*
  the publisher) - passes through ``globalLogPublisher.__call__``.
- Sinks get there through ``globalLogPublisher.addObserver``: twistd's
  ``AppLogger.start`` passes its ``--logfile``/``--nodaemon``/``--syslog``/
  ``--logger`` observer to ``globalLogBeginner.beginLoggingTo``, which calls
  ``addObserver``; legacy ``log.addObserver`` and ``startLogging`` do too.
  The beginner's pre-logging stderr observer is already registered.

So installation moves the publisher's current observers into a private
``LogPublisher``, leaves :class:`RedactingObserver` (feeding that private
publisher) as the global publisher's only observer, and points the global
publisher's ``addObserver``/``removeObserver`` at the private one.  Whatever
twistd, a plugin or a library registers later lands *behind* the redactor,
however logging is configured, and removal still works.  Wrapping
``beginLoggingTo`` instead would miss observers added directly and the
events replayed from the start-up buffer.  This touches the publisher's
private ``_observers`` list; installation checks it and fails loudly at
start-up if a future Twisted changes it, rather than leaking silently.

Paths that never reach ``twisted.logger`` get their own hook: stdlib
``logging`` (:mod:`.redacting_stdlib`: a record factory that scrubs each record at birth, so handlers
configured by libraries are covered too, and a root handler bridging records
into ``twisted.logger``), and the panic handlers ``sys.excepthook``,
``threading.excepthook`` and ``sys.unraisablehook``
(:mod:`.redacting_hooks`), which write only redacted text to stderr.

Tracebacks are rendered with ``Failure.getTraceback()`` (default detail, no
frame locals) and handed on as :class:`RedactedFailure`, which carries
nothing but redacted text (:mod:`.redacted_failure`), so a JSON sink cannot serialize locals that
``Deferred.debug``/``captureVars`` captured.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from twisted.logger import LogPublisher, globalLogPublisher

from .redacting_hooks import install_panic_hooks
from .redacting_observer import RedactingObserver
from .redacting_stdlib import route_stdlib

__all__ = ["RedactingLogging", "install_redacting_logging"]


class RedactingLogging:
    """
    What :func:`install_redacting_logging` changed, and how to undo it.

    ``observer`` is the root :class:`RedactingObserver`; ``sinks`` is the
    private publisher behind it, where every observer added to the global
    publisher ends up.
    """

    def __init__(
        self,
        observer: RedactingObserver,
        sinks: LogPublisher,
        undo: list[Callable[[], None]],
    ) -> None:
        self.observer = observer
        self.sinks = sinks
        self._undo = undo

    def uninstall(self) -> None:
        """Put every hook back as it was; safe to call more than once."""
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:  # noqa: S110 - restore every other hook regardless
                pass

    def __enter__(self) -> RedactingLogging:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()


_installed: weakref.WeakKeyDictionary[LogPublisher, RedactingLogging] = weakref.WeakKeyDictionary()


def _route_publisher(publisher: LogPublisher, undo: list[Callable[[], None]]) -> tuple[RedactingObserver, LogPublisher]:
    observers = getattr(publisher, "_observers", None)
    if not isinstance(observers, list):
        raise RuntimeError(
            "Cannot install log redaction: this version of twisted.logger's "
            "LogPublisher has no _observers list; dd0c_route.redacting_log "
            "must be updated for it."
        )
    sinks = LogPublisher(*observers)
    root = RedactingObserver([sinks])
    observers[:] = [root]
    publisher.addObserver = sinks.addObserver  # type: ignore[method-assign]
    publisher.removeObserver = sinks.removeObserver  # type: ignore[method-assign]

    def restore() -> None:
        del publisher.addObserver
        del publisher.removeObserver
        observers[:] = [o for o in observers if o is not root] + list(getattr(sinks, "_observers", []))

    undo.append(restore)
    return root, sinks


def install_redacting_logging(
    publisher: LogPublisher = globalLogPublisher,
    *,
    stdlib_root: logging.Logger | None = None,
    process: Any = sys,
    threads: Any = threading,
) -> RedactingLogging:
    """
    Make redaction the only path from any log source to any log sink.

    Call it first thing in the twistd plugin's ``makeService``, which runs
    before twistd begins logging::

        def makeService(self, options):
            install_redacting_logging()  # stays for the process's life
            ...

    Idempotent per publisher: a second call returns the first installation.
    The keyword arguments exist for tests (a private publisher, logger and
    fake ``sys``/``threading``); production calls it with none.
    """
    existing = _installed.get(publisher)
    if existing is not None and existing._undo:
        return existing
    undo: list[Callable[[], None]] = []
    try:
        root, sinks = _route_publisher(publisher, undo)
        route_stdlib(publisher, stdlib_root if stdlib_root is not None else logging.getLogger(), undo)
        install_panic_hooks(process, threads, undo)
    except BaseException:
        RedactingLogging(RedactingObserver([]), LogPublisher(), undo).uninstall()
        raise
    installation = RedactingLogging(root, sinks, undo)
    _installed[publisher] = installation
    return installation
