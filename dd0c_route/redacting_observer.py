# Tests: tests/test_redacting_log.py, tests/test_telemetry_secrets.py
"""
The redacting observer: a scrubbed copy of each event, for every sink.

``FilteringLogObserver`` can only drop events; removing a key from a log line
needs an observer that builds a scrubbed *copy* of each event.
:class:`RedactingObserver` is that observer; :mod:`.redacting_log` makes it
the only path to any sink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias

from attrs import field, frozen
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from .redacted_failure import RedactedFailure
from .redaction import REDACTED, is_sensitive_field, redact_sensitive, redact_structure

__all__ = ["Observer", "RedactingObserver", "redact_event"]

#: What the sinks are: ``ILogObserver`` providers, typed by how they are called.
Observer: TypeAlias = Callable[[LogEvent], None]

# Kept as they are: filtering needs the level object, tracing needs the list.
_KEPT: Final = frozenset({"log_level", "log_trace"})
# Dropped: the format is replaced by the rendered text; flattened values and
# the Logger (which holds ``log_source`` as a live object) would bypass it.
_DROPPED: Final = frozenset({"log_format", "log_flattened", "log_logger"})


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
