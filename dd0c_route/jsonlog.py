# Tests: tests/test_jsonlog.py
"""
``[log] format = "json"``: one JSON object per line in the log file.

twistd picks the log sink (``--logfile``, stdout with ``-n``, rotation) and
registers a ``FileLogObserver``; the redacting observer
(:mod:`dd0c_route.redacting_log`) stands in front of every sink.  JSON
format swaps the formatter of each file observer registered after it is
enabled: the (already redacted) event is written with Twisted's
``eventAsJSON``, plus a ``text`` member holding the formatted message,
followed by a newline.  Unlike ``jsonFileLogObserver`` there is no
record-separator character, so each line is plain JSON for any log
shipper.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import FileLogObserver, LogEvent, eventAsJSON, formatEvent, globalLogPublisher

__all__ = ["json_line", "use_json_lines"]


def json_line(event: LogEvent) -> str:
    """One event as one line of JSON (``eventAsJSON`` escapes every newline)."""
    out = dict(event)
    out["text"] = formatEvent(event)
    return eventAsJSON(out) + "\n"


def use_json_lines(publisher: Any = globalLogPublisher) -> None:
    """File observers added to ``publisher`` from now on write JSON lines."""
    add = publisher.addObserver

    def addObserver(observer: Any) -> None:
        if isinstance(observer, FileLogObserver):
            observer.formatEvent = json_line
        add(observer)

    publisher.addObserver = addObserver
