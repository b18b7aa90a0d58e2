# Tests: tests/test_journal.py, tests/test_kill.py
"""
The journal: every finished request's record reaches the kernel before the
reactor's next turn, so a ``kill -9`` loses none that were answered.

The writer batches records for the store (``ledger.flush_interval``, 0.2 s by
default); a process killed in that window used to lose them.  Now each
record is also appended here as it is submitted: the hot path only keeps it
(records are frozen); one ``os.write`` at the start of the next reactor
iteration hands the turn's records to the kernel, one JSON line each (a
list of the record's fields), serialized by ``orjson`` -- about 1 of the
8 microseconds per record that building a row and ``json.dumps`` took --
or, for a record ``orjson`` would write differently or refuse (a float that
is not finite, an integer past 64 bits, a lone surrogate), by ``json`` as
before; either line reads back, through ``json.loads``, as the same record.  The writer reports every record it made durable (stored
or spooled), and segments whose records are all durable are deleted; at
start the writer replays what is left (the store skips request ids it
already has, so a replay never counts a record twice).

Two windows, documented in docs/decisions.md: a killed *process* loses only
records finished within the current reactor iteration (well under 10 ms);
a crashed *machine* loses what the page cache had not written, bounded by
the fsync the writer's thread runs every flush interval.
"""

from __future__ import annotations

import glob
import json
import operator
import os
from decimal import Decimal
from typing import Any, Callable, Optional, cast

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .records import UsageRecord, record_from_json

__all__ = ["Journal", "remove_files"]

_FIELDS = tuple(a.name for a in attrs.fields(UsageRecord))
_ROW = operator.attrgetter(*_FIELDS)
#: A segment is closed (a new file started) past this size.
SEGMENT_BYTES = 4 * 1024 * 1024


#: Where the fields that hold floats sit in a row: ``orjson`` writes a float
#: that is not finite as ``null``, ``json`` as ``NaN``/``Infinity``.
_FLOATS = tuple(i for i, field in enumerate(attrs.fields(UsageRecord)) if "float" in str(cast(Any, field).type))


def _row(record: UsageRecord) -> list[Any]:
    return [str(value) if value.__class__ is Decimal else value for value in _ROW(record)]


def _decimal_text(value: Any) -> str:
    if value.__class__ is Decimal:
        return str(value)
    raise TypeError(f"not a record value: {type(value).__name__}")


def _line(record: UsageRecord) -> bytes:
    """One record as its journal line: ``_row`` as JSON, then a newline."""
    row = _ROW(record)
    for i in _FLOATS:
        value = row[i]
        if value is not None and value - value != 0:
            break
    else:
        try:
            return orjson.dumps(row, default=_decimal_text, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            pass
    return (json.dumps(_row(record), separators=(",", ":")) + "\n").encode("utf-8")


@attrs.define
class _Segment:
    path: str
    #: Index (1-based count of appended records) of the last record in it.
    last: int = 0
    size: int = 0


class Journal:
    """An append-only journal of records in files ``<path>.<n>``."""

    _log = Logger()

    def __init__(self, path: str, clock: IReactorTime, remove: Optional[Callable[[list[str]], Any]] = None) -> None:
        self.path = path
        self._clock = clock
        #: Deletes durable segments (:func:`remove_files`, at once by default).
        #: The proxy runs it in the ledger's thread: an ``unlink`` waits on
        #: the file system's journal, and was seen to take 190 ms under load.
        self._remove = remove or remove_files
        self._pending: list[UsageRecord] = []
        self._call: Optional[IDelayedCall] = None
        self._appended = 0
        self._durable = 0
        self._closed: list[_Segment] = []
        self._current: Optional[_Segment] = None
        self._fd: Optional[int] = None
        self._dirty = False
        self._next = 1 + max((self._number(p) for p in self._leftovers()), default=0)

    # -- the hot path -----------------------------------------------------

    def append(self, record: UsageRecord) -> None:
        """Journal one record (written at the start of the next iteration)."""
        self._pending.append(record)
        self._appended += 1
        if self._call is None:
            self._call = self._clock.callLater(0, self.write)

    def write(self) -> None:
        """Hand every pending record to the kernel in one ``write``."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        records, self._pending = self._pending, []
        if not records:
            return
        try:
            segment = self._segment()
            data = b"".join([_line(record) for record in records])
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            segment.size += len(data)
            segment.last = self._appended
            self._dirty = True
            if segment.size > SEGMENT_BYTES:
                self._close_current()
        except OSError as error:
            self._log.error("Writing the usage journal failed ({error}); records stay in memory only", error=error)

    # -- durability -----------------------------------------------------------

    def committed(self, count: int) -> None:
        """The oldest ``count`` journaled records are durable: drop what covers them."""
        self._durable += count
        done: list[str] = []
        while self._closed and self._closed[0].last <= self._durable:
            done.append(self._closed.pop(0).path)
        if self._durable >= self._appended:
            # Everything journaled is durable: records not yet written need not be.
            self._pending = []
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            if self._current is not None:
                self._close_current()
                done.append(self._closed.pop().path)
        if done:
            self._discard(done)

    def fsync(self) -> None:
        """For machine crashes: force what was written to disk (call off the reactor)."""
        fd = self._fd
        if fd is not None and self._dirty:
            self._dirty = False
            try:
                os.fsync(fd)
            except OSError:
                pass

    # -- replay ---------------------------------------------------------------

    def replay(self) -> list[UsageRecord]:
        """
        The records of earlier runs' segments (read at start, before any
        append); the caller queues them for the store and calls
        :meth:`replayed` once they are durable.
        """
        records: list[UsageRecord] = []
        for path in sorted(self._leftovers(), key=self._number):
            header: Optional[list[str]] = None
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    try:
                        value = json.loads(line)
                        if isinstance(value, dict):
                            header = value["fields"]
                            continue
                        fields = header or list(_FIELDS)
                        records.append(record_from_json(dict(zip(fields, value, strict=False))))
                    except (ValueError, KeyError, TypeError):
                        self._log.warn("Skipping a torn line {number} of the usage journal {path}", number=number, path=path)
        self._replaying = sorted(self._leftovers(), key=self._number)
        return records

    def replayed(self) -> None:
        """The replayed records are durable: delete the old segments."""
        if getattr(self, "_replaying", None):
            self._discard(self._replaying)
        self._replaying = []

    def close(self) -> None:
        self.write()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- files ------------------------------------------------------------------

    def _leftovers(self) -> list[str]:
        return [p for p in glob.glob(glob.escape(self.path) + ".*") if self._number(p) >= 0]

    def _number(self, path: str) -> int:
        # Exactly ``<path>.<n>``: a worker's ``<path>.w1.<n>`` is not ours.
        suffix = path[len(self.path) + 1:] if path.startswith(self.path + ".") else ""
        return int(suffix) if suffix.isdigit() else -1

    def _segment(self) -> _Segment:
        if self._current is None:
            path = f"{self.path}.{self._next}"
            self._next += 1
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            header = (json.dumps({"fields": list(_FIELDS)}) + "\n").encode("utf-8")
            os.write(self._fd, header)
            self._current = _Segment(path, size=len(header))
        return self._current

    def _close_current(self) -> None:
        if self._current is None:
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._closed.append(self._current)
        self._current = None
        self._dirty = False

    def _discard(self, paths: list[str]) -> None:
        """Delete segments whose records are all durable, through ``remove``."""
        result = self._remove(paths)
        if isinstance(result, Deferred):
            result.addCallbacks(self._kept, self._remove_failed)
        else:
            self._kept(result)

    def _kept(self, paths: Any) -> None:
        if paths:
            self._log.warn("Could not delete usage journal segments {paths}; a restart replays them (harmlessly)", paths=paths)

    def _remove_failed(self, failure: Any) -> None:
        self._log.failure("Deleting usage journal segments failed", failure)


def remove_files(paths: list[str]) -> list[str]:
    """
    Delete ``paths`` (one already gone is fine); the ones that could not be
    deleted.  Safe to run in a thread: it touches nothing but the files.
    """
    kept = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            kept.append(path)
    return kept
