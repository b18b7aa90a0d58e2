# Tests: tests/test_workers.py, tests/test_workers_live.py
"""
The parent of ``[server] workers = N``: binds the API port once, starts N
worker processes that adopt it, restarts one that dies, and on stop
forwards SIGTERM and waits until every worker has exited.

Why one inherited socket rather than ``SO_REUSEPORT`` (docs/decisions.md):
with one accept queue shared by every worker, a worker that dies loses no
queued connection (the others accept it), the port is bound once with the
full strports description (interface, backlog), and a worker cannot come
up bound to a different port than its siblings.

The parent never accepts: its copy of the port stops reading as soon as it
is bound, and closes when the workers are told to stop.  Each worker's
stdout and stderr come back here on pipes and are logged line by line
(through this process's redacting observer, into twistd's log); its stdin
is a pipe too, which a worker watches so that it stops when the parent
is gone, even killed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Supervisor", "backoff"]

log = Logger()

#: A worker that ran this long before dying is restarted without delay growth.
STABLE_SECONDS = 10.0
#: Fd number the listening socket has in a worker.
CHILD_FD = 3


def backoff(failures: int) -> float:
    """Seconds before restarting a worker that died ``failures`` times in a row."""
    return min(30.0, 0.5 * 2 ** max(0, failures - 1))


class _Worker(ProcessProtocol):
    """One worker process: its output relayed to the log, its end reported."""

    def __init__(self, index: int, ended: Callable[[_Worker, Any], None]) -> None:
        self.index = index
        self._ended = ended
        self._partial = {1: b"", 2: b""}
        self.exited: Deferred[None] = Deferred()
        self.started_at = 0.0

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        if line.strip():
            log.info("worker {index}: {line}", index=self.index, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            self._relay(rest)
        code, sig = getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None)
        self._ended(self, f"signal {sig}" if sig is not None else f"exit code {code}")
        self.exited.callback(None)

    def signal(self, name: str) -> None:
        try:
            if self.transport is not None:
                self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass


class Supervisor(Service):
    """
    Runs ``count`` workers: ``python -m dd0c_route.workers --fd 3 --index I``
    plus ``args`` (the config file and listen override the parent got).
    """

    def __init__(
        self, reactor: Any, listen: str, count: int, args: list[str], *,
        stop_grace: float = 90.0, environ: Optional[dict[str, str]] = None,
    ) -> None:
        self.reactor = reactor
        self.listen = listen
        self.count = count
        self.args = args
        self.stop_grace = stop_grace
        self.environ = environ
        self.port: Any = None
        self.workers: dict[int, _Worker] = {}
        self._failures = dict.fromkeys(range(count), 0)
        self._restarts: dict[int, Any] = {}
        self._stopping = False

    # -- start ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self.port = _bind(self.reactor, self.listen)
        self.reactor.callWhenRunning(self._start_all)

    def _start_all(self) -> None:
        for index in range(self.count):
            if not self._stopping:
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        worker = _Worker(index, self._worker_ended)
        argv = [sys.executable, "-m", "dd0c_route.workers", "--fd", str(CHILD_FD), "--index", str(index), *self.args]
        worker.started_at = self.reactor.seconds()
        transport = self.reactor.spawnProcess(
            worker, sys.executable, argv, env=dict(self.environ if self.environ is not None else os.environ),
            childFDs={0: "w", 1: "r", 2: "r", CHILD_FD: self.port.fileno()},
        )
        self.workers[index] = worker
        log.info("Started worker {index} (pid {pid})", index=index, pid=transport.pid)

    def _worker_ended(self, worker: _Worker, status: Any) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self._stopping:
            log.info("Worker {index} exited ({status})", index=worker.index, status=status)
            return
        ran = self.reactor.seconds() - worker.started_at
        failures = 1 if ran >= STABLE_SECONDS else self._failures[worker.index] + 1
        self._failures[worker.index] = failures
        delay = backoff(failures)
        log.warn(
            "Worker {index} died ({status}) after {ran:.1f}s; restarting it in {delay:g}s",
            index=worker.index, status=status, ran=ran, delay=delay,
        )
        self._restarts[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    # -- stop ---------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers.values())
        for worker in workers:
            worker.signal("TERM")
        if workers:
            log.info("Stopping {count} workers: each drains and flushes its records", count=len(workers))
        # The workers hold their own copies of the socket: close ours.
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()
        kill = self.reactor.callLater(self.stop_grace, self._kill_left)
        done: Deferred[Any] = DeferredList([w.exited for w in workers])

        def finished(result: Any) -> Any:
            if kill.active():
                kill.cancel()
            return result

        return done.addBoth(finished)

    def _kill_left(self) -> None:
        for worker in list(self.workers.values()):
            log.error("Worker {index} did not exit in {grace:g}s: killing it", index=worker.index, grace=self.stop_grace)
            worker.signal("KILL")


class _NoConnections(Factory):
    """The parent's own port never reads, so this never builds a protocol."""


def _bind(reactor: Any, description: str) -> Any:
    """Listen as the strports description says, then stop reading: the workers accept."""
    from ..config import ConfigError

    result: list[Any] = []
    serverFromString(reactor, description).listen(_NoConnections()).addBoth(result.append)
    if not result or isinstance(result[0], Failure):
        problem = result[0].value if result else "it did not bind at once"
        raise ConfigError("server.listen", f"cannot listen on {description!r}: {problem}")
    port = result[0]
    if not hasattr(port, "addressFamily") or not hasattr(port, "fileno"):
        raise ConfigError("server.listen", "with workers > 1, listen must be a tcp:, tcp6: or unix: description")
    port.stopReading()
    return port
