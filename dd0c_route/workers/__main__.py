# Tests: tests/test_workers_live.py
"""
``python -m dd0c_route.workers --fd 3 --index I [--config F] [--listen L]``:
one worker, started by the parent (supervisor.py), never by hand.

It is the whole proxy (``tap.build_service``) in its own reactor, serving
the socket it inherited.  Its log goes, redacted, as text lines to stdout,
which the parent relays into its own log.  SIGTERM drains and flushes as
``twistd`` does; so does the parent going away (stdin reaches EOF).
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
from typing import Any, Optional

from twisted.internet import fdesc
from twisted.logger import FileLogObserver, Logger, formatEvent, globalLogBeginner

__all__ = ["main"]


def _line(event: Any) -> str:
    text = formatEvent(event).replace("\n", "\n    ")
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n    " + failure.getTraceback().replace("\n", "\n    ")
    level = event.get("log_level")
    return f"[{level.name if level is not None else '-'}] {text}\n"


class _ParentWatch:
    """Reads stdin (the parent's pipe); its end means the parent is gone."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._gone = False
        fdesc.setNonBlocking(0)

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Any:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.reactor.removeReader(self)
            self.connectionLost(None)
        return None

    def connectionLost(self, reason: Any) -> None:
        """EOF: epoll reports a closed pipe as a hang-up, which lands here."""
        if self._gone:
            return
        self._gone = True
        Logger().warn("The parent process is gone: stopping")
        if self.reactor.running:
            self.reactor.stop()

    def logPrefix(self) -> str:
        return "parent-watch"


def main(argv: Optional[list[str]] = None, reactor: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dd0c_route.workers")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--config")
    parser.add_argument("--listen")
    args = parser.parse_args(argv)

    from ..redacting_log import install_redacting_logging

    install_redacting_logging()
    globalLogBeginner.beginLoggingTo([FileLogObserver(sys.stdout, _line)], redirectStandardIO=False)
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    from ..config import ConfigError, load_config
    from ..tap import build_service
    from .seat import WorkerSeat

    probe = socket.socket(fileno=args.fd)
    family = probe.family
    probe.detach()
    try:
        config = load_config(args.config, os.environ)
        if args.listen:
            import attrs

            config = attrs.evolve(config, server=attrs.evolve(config.server, listen=args.listen))
        service = build_service(config, reactor, seat=WorkerSeat(args.index, args.fd, family)).service
    except ConfigError as error:
        sys.stderr.write(f"dd0c-route worker {args.index}: {error}\n")
        return 2
    gc.freeze()
    reactor.addReader(_ParentWatch(reactor))
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
