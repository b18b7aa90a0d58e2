# Tests: tests/test_workers.py
"""
A worker's seat: its index, the listening socket it inherited, and the
files it alone writes.

Every worker keeps its own ledger journal and (with PostgreSQL) its own
spool, named by a ``.w<index>`` suffix: two processes appending to one
journal would interleave rows and delete each other's segments.  A worker
restarted in the same seat replays what its predecessor left (the store
skips request ids it already has).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IListeningPort

from ..config import Config

__all__ = ["AdoptedPortService", "WorkerSeat", "ledger_files", "suffixed"]


def suffixed(path: str, index: Optional[int]) -> str:
    """``path`` as worker ``index`` names it (unchanged without workers)."""
    return path if index is None else f"{path}.w{index}"


def ledger_files(config: Config, postgres: bool, index: Optional[int] = None) -> tuple[str, str]:
    """
    The journal path ("" = off) and the spool path this process writes.
    Without workers they are the configured ones; worker ``index`` adds
    its suffix to each.
    """
    journal = config.ledger.journal_path
    if journal is None:
        journal = (config.ledger.spool_path if postgres else config.ledger.path) + ".journal"
    spool = config.ledger.spool_path
    return (suffixed(journal, index) if journal else ""), suffixed(spool, index)


@attrs.frozen
class WorkerSeat:
    """Which worker this process is, and the listening socket it adopts."""

    index: int
    fd: int
    family: int = socket.AF_INET


class AdoptedPortService(Service):
    """
    Serves ``factory`` on an inherited listening socket
    (``IReactorSocket.adoptStreamPort``); stopping closes this process's
    copy only, so the others keep accepting on it.
    """

    def __init__(self, reactor: Any, seat: WorkerSeat, factory: Any) -> None:
        self.reactor = reactor
        self.seat = seat
        self.factory = factory
        self.port: Optional[IListeningPort] = None

    def startService(self) -> None:
        super().startService()
        # The reactor listens on a duplicate of the descriptor; the
        # inherited one is ours to close.
        self.port = self.reactor.adoptStreamPort(self.seat.fd, self.seat.family, self.factory)
        os.close(self.seat.fd)

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
