# Tests: tests/test_redacting_log.py
"""
One redacting root observer in front of every log sink.

``FilteringLogObserver`` can only drop events; removing a key from a log line
needs an observer that builds a scrubbed *copy* of each event and is the only
path to any sink.  :class:`RedactingObserver` is that observer, and
:func:`install_redacting_logging` makes it the only path.

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
``logging`` (a record factory that scrubs each record at birth, so handlers
configured by libraries are covered too, and a root handler bridging records
into ``twisted.logger``), and the panic handlers ``sys.excepthook``,
``threading.excepthook`` and ``sys.unraisablehook``, which write only
redacted text to stderr.

Tracebacks are rendered with ``Failure.getTraceback()`` (default detail, no
frame locals) and handed on as :class:`RedactedFailure`, which carries
nothing but redacted text, so a JSON sink cannot serialize locals that
``Deferred.debug``/``captureVars`` captured.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable
from io import StringIO
from typing import Any, Final, TypeAlias

from attrs import field, frozen
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.python.reflect import safe_repr, safe_str
from zope.interface import implementer

from .redaction import REDACTED, is_sensitive_field, redact_sensitive, redact_structure

__all__ = [
    "Observer",
    "RedactedError",
    "RedactedFailure",
    "RedactingLogging",
    "RedactingObserver",
    "install_redacting_logging",
    "redact_event",
]

#: What the sinks are: ``ILogObserver`` providers, typed by how they are called.
Observer: TypeAlias = Callable[[LogEvent], None]

# Kept as they are: filtering needs the level object, tracing needs the list.
_KEPT: Final = frozenset({"log_level", "log_trace"})
# Dropped: the format is replaced by the rendered text; flattened values and
# the Logger (which holds ``log_source`` as a live object) would bypass it.
_DROPPED: Final = frozenset({"log_format", "log_flattened", "log_logger"})


class RedactedError(Exception):
    """
    Stands in for an exception whose message may have held a secret.

    ``str()`` gives the redacted message; ``RedactedFailure.type`` still
    names the original class, so ``check``/``trap`` keep working.
    """


class RedactedFailure(Failure):
    """
    A ``Failure`` that carries only redacted text.

    It keeps the original type (for ``check`` and the traceback header), the
    frame positions without locals, the redacted message and the redacted
    default traceback, so text sinks (``eventAsText`` calls
    ``getTraceback()``), legacy sinks and JSON sinks all work unchanged.
    """

    _traceback_text: str

    @classmethod
    def from_failure(cls, failure: Failure) -> RedactedFailure:
        """Render ``failure`` once, then keep only the redacted result."""
        if isinstance(failure, RedactedFailure):
            return failure
        try:
            text = failure.getTraceback()
        except BaseException as error:
            text = "(UNABLE TO OBTAIN TRACEBACK FROM EVENT): " + safe_str(error)
        try:
            message = failure.getErrorMessage()
            frames = [(f[0], f[1], f[2], (), ()) for f in failure.frames]
            parents = list(failure.parents)
        except Exception:
            message, frames, parents = "(unavailable)", [], []
        self = cls.__new__(cls)
        self.__dict__.update(
            count=getattr(failure, "count", 0),
            type=failure.type,
            value=RedactedError(redact_sensitive(message)),
            tb=None,
            captureVars=False,
            pickled=1,
            _parents=parents,
            _frames=frames,
            # Twisted before 25 keeps these as plain attributes (later ones
            # as properties over the underscored names): set both.
            parents=parents,
            frames=frames,
            stack=[],
            _traceback_text=redact_sensitive(text),
        )
        return self

    def printTraceback(
        self,
        file: Any = None,
        elideFrameworkCode: bool = False,
        detail: str = "default",
    ) -> None:
        """Write the redacted traceback; other details are redacted too."""
        if file is None:
            from twisted.python import log

            file = log.logerr
        if detail == "default":
            file.write(self._traceback_text)
            return
        buffer = StringIO()
        super().printTraceback(buffer, elideFrameworkCode, detail)
        file.write(redact_sensitive(buffer.getvalue()))


def _escape_format(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _redact_event(event: LogEvent) -> LogEvent:
    sensitive = {key for key in event if is_sensitive_field(key)}
    if sensitive:
        formattable = dict(event)
        for key in sensitive:
            formattable[key] = REDACTED
        text = formatEvent(formattable)
    else:
        text = formatEvent(event)
    text = redact_sensitive(text)

    scrubbed: dict[str, Any] = {}
    failures: dict[int, RedactedFailure] = {}
    for key, value in event.items():
        if key in _DROPPED:
            continue
        if key in _KEPT:
            scrubbed[key] = value
        elif isinstance(value, Failure):
            substitute = failures.get(id(value))
            if substitute is None:
                substitute = failures[id(value)] = RedactedFailure.from_failure(value)
            scrubbed[key] = substitute
        elif value is not None and key in sensitive:
            scrubbed[key] = REDACTED
        else:
            scrubbed[key] = redact_structure(value)
    if text or event.get("log_format") is not None:
        scrubbed["log_format"] = _escape_format(text)
    return scrubbed


def redact_event(event: LogEvent) -> LogEvent:
    """
    A scrubbed copy of ``event``; ``event`` itself is never modified.

    The text is rendered first (``formatEvent``, with sensitive fields
    already masked) and redacted; ``log_format`` becomes that literal text,
    so every sink prints exactly it.  Failures become
    :class:`RedactedFailure`; every other field goes through
    :func:`redact_structure`.  Never raises: if scrubbing fails the event is
    replaced by a notice that says so, never passed on raw.
    """
    try:
        return _redact_event(event)
    except Exception:
        level = event.get("log_level")
        return {
            "log_level": level if isinstance(level, type(LogLevel.info)) else None,
            "log_time": event.get("log_time"),
            "log_namespace": __name__,
            "log_format": "A log event could not be redacted and was dropped.",
        }


def _to_tuple(sinks: Iterable[Observer]) -> tuple[Observer, ...]:
    return tuple(sinks)


def _require_observers(instance: object, attribute: object, sinks: tuple[Observer, ...]) -> None:
    for sink in sinks:
        if not callable(sink):
            raise TypeError(f"RedactingObserver sinks must be ILogObserver callables; got a {type(sink).__name__}")


@implementer(ILogObserver)
@frozen
class RedactingObserver:
    """
    Hand a scrubbed copy of every event to each sink.

    A sink that raises does not stop the others; it is reported (redacted)
    to the others, like ``LogPublisher`` does.
    """

    sinks: tuple[Observer, ...] = field(converter=_to_tuple, validator=_require_observers)

    def __call__(self, event: LogEvent) -> None:
        scrubbed = redact_event(event)
        broken: list[tuple[Observer, Failure]] = []
        for sink in self.sinks:
            try:
                sink(scrubbed)
            except Exception:
                broken.append((sink, Failure()))
        for sink, failure in broken:
            report = redact_event(
                {
                    "log_level": LogLevel.critical,
                    "log_namespace": __name__,
                    "log_format": "Log observer {observer!r} raised on an event",
                    "log_failure": failure,
                    "observer": sink,
                    "log_time": scrubbed.get("log_time"),
                }
            )
            for other in self.sinks:
                if other is not sink:
                    try:
                        other(report)
                    except Exception:  # noqa: S110 - nowhere left to report to
                        pass


# --- stdlib logging ---------------------------------------------------------


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


# --- panic handlers ---------------------------------------------------------


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


# --- installation -----------------------------------------------------------


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


def _route_stdlib(publisher: LogPublisher, root_logger: logging.Logger, undo: list[Callable[[], None]]) -> None:
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


def _hook(target: Any, name: str, hook: object, undo: list[Callable[[], None]]) -> None:
    previous = getattr(target, name)
    setattr(target, name, hook)

    def restore() -> None:
        if getattr(target, name) is hook:
            setattr(target, name, previous)

    undo.append(restore)


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
        _route_stdlib(publisher, stdlib_root if stdlib_root is not None else logging.getLogger(), undo)
        _hook(process, "excepthook", _make_excepthook(process), undo)
        _hook(process, "unraisablehook", _make_unraisablehook(process), undo)
        _hook(threads, "excepthook", _make_thread_excepthook(process), undo)
    except BaseException:
        RedactingLogging(RedactingObserver([]), LogPublisher(), undo).uninstall()
        raise
    installation = RedactingLogging(root, sinks, undo)
    _installed[publisher] = installation
    return installation
