# Tests: tests/test_spool.py
"""
The spool: usage records waiting on local disk while the store is down.

When PostgreSQL is unreachable the writer keeps records in memory up to
``ledger.max_queued``; past that, or when the proxy stops, it appends the
whole queue here -- one JSON line per record, one ``fsync`` per batch -- and
replays the file into the store before anything else once the store
answers again, at the latest on the next start.

Exactly once: replay goes through ``write_records``, which skips request
ids already stored, so a replay interrupted half way (or a batch that was
committed but not acknowledged before it was spooled) is never counted
twice.  The file is truncated only after every record in it is committed.

The file is append-only and read whole: a line torn by a crash is skipped
(and logged), and a new append starts on a fresh line.  All methods block;
the writer calls them on its own thread, one at a time.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from twisted.logger import Logger

from .interfaces import IUsageStore
from .records import UsageRecord, record_from_json, record_to_json

__all__ = ["Spool"]


class Spool:
    """An append-only JSON-lines file of usage records at ``path``."""

    _log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        #: Records in the file (lines, torn ones included until replayed).
        self.count = 0
        self._needs_newline = False
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        self.count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        self._needs_newline = bool(data) and not data.endswith(b"\n")

    def append(self, records: Sequence[UsageRecord]) -> None:
        """Add the records to the file and fsync it before returning."""
        if not records:
            return
        lines = "".join(json.dumps(record_to_json(r), separators=(",", ":")) + "\n" for r in records)
        if self._needs_newline:
            lines = "\n" + lines
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = lines.encode("utf-8")
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._needs_newline = False
        self.count += len(records)

    def read(self) -> list[UsageRecord]:
        """Every whole record in the file, in the order spooled."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(record_from_json(json.loads(line)))
            except (ValueError, TypeError, ArithmeticError):
                self._log.error(
                    "Skipping unreadable line {number} of the usage spool {path} (torn by a crash?)",
                    number=number, path=self.path,
                )
        return records

    def replay(self, store: IUsageStore, batch_size: int = 500) -> int:
        """
        Write every spooled record to C{store}, then empty the file;
        returns how many were replayed.  Fails (keeping the file) if the
        store does.
        """
        records = self.read()
        for start in range(0, len(records), batch_size):
            store.write_records(records[start:start + batch_size])
        self.clear()
        if records:
            self._log.info("Replayed {count} spooled usage records into the ledger", count=len(records))
        return len(records)

    def clear(self) -> None:
        """Empty the file (after its records are committed elsewhere)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:
            pass
        else:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.count = 0
        self._needs_newline = False
