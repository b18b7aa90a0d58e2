# Tests: tests/test_workers.py
"""
Records left behind by workers that no longer exist, handed to one that does.

A start with ``workers = 2`` after a run with 4 (or with 1) finds journals
and spools that no worker of this run would read: ``.w2``, ``.w3``, or the
unsuffixed files.  Before any worker starts, the parent (or the single
process) moves their contents into the files of the seat that will replay
them -- journal segments by ``rename`` (atomic, renumbered after the
target's own), spool lines appended to the target's spool and fsynced
before the orphan is removed.  Nothing is parsed here: the writer's replay
reads them as its own, and the store's request-id check keeps a record
that was stored already from counting twice.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Iterable, Optional

from twisted.logger import Logger

from .seat import suffixed

__all__ = ["adopt_journals", "adopt_spools", "seats_found"]

log = Logger()


def seats_found(base: str) -> set[Optional[int]]:
    """The seats (None: unsuffixed) that left files named from ``base``."""
    found: set[Optional[int]] = set()
    pattern = re.compile(re.escape(base) + r"(?:\.w(\d+))?(?:\.\d+)?$")
    for path in glob.glob(glob.escape(base) + "*"):
        match = pattern.match(path)
        if match:
            found.add(int(match.group(1)) if match.group(1) is not None else None)
    return found


def _segments(journal: str) -> list[tuple[int, str]]:
    out = []
    for path in glob.glob(glob.escape(journal) + ".*"):
        suffix = path[len(journal) + 1:]
        if suffix.isdigit():
            out.append((int(suffix), path))
    return sorted(out)


def _orphans(base: str, target: Optional[int], live: Iterable[Optional[int]]) -> list[str]:
    keep = set(live) | {target}
    return [suffixed(base, seat) for seat in sorted(seats_found(base) - keep, key=lambda s: -1 if s is None else s)]


def adopt_journals(base: str, target: Optional[int], live: Iterable[Optional[int]]) -> int:
    """
    Move the segments of every journal named from ``base`` whose seat is
    not in ``live`` into seat ``target``'s journal; how many were moved.
    """
    if not base:
        return 0
    into = suffixed(base, target)
    number = max((n for n, _ in _segments(into)), default=0)
    moved = 0
    for orphan in _orphans(base, target, live):
        for _, path in _segments(orphan):
            number += 1
            os.rename(path, f"{into}.{number}")
            moved += 1
    if moved:
        log.info("Handed {count} journal segments of earlier workers to {into}", count=moved, into=into)
    return moved


def adopt_spools(base: str, target: Optional[int], live: Iterable[Optional[int]]) -> int:
    """Append every orphan spool named from ``base`` to seat ``target``'s; how many."""
    into = suffixed(base, target)
    moved = 0
    for orphan in _orphans(base, target, live):
        if not os.path.isfile(orphan):
            continue
        with open(orphan, "rb") as f:
            data = f.read()
        if data:
            fd = os.open(into, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                os.write(fd, data if data.endswith(b"\n") else data + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        os.unlink(orphan)
        moved += 1
    if moved:
        log.info("Handed {count} spools of earlier workers to {into}", count=moved, into=into)
    return moved
