# Tests: tests/test_workers_live.py
"""
What ``makeService`` returns when ``[server] workers`` is more than 1: the
parent's side, built before twistd starts its reactor.

The parent opens the ledger once and closes it, so the schema is migrated
before N workers open it at the same moment, and hands every journal and
spool no worker of this run owns to worker 0 (orphans.py).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ..config import Config
from .orphans import adopt_journals, adopt_spools
from .seat import ledger_files
from .supervisor import Supervisor

__all__ = ["build_supervisor"]


def build_supervisor(config: Config, config_path: Optional[str], listen: Optional[str], reactor: Any) -> Supervisor:
    """The supervisor of ``config.server.worker_count`` workers."""
    from ..ledger.opening import is_postgres, open_ledger

    open_ledger(config.ledger, os.environ).close()
    count = config.server.worker_count
    journal, spool = ledger_files(config, is_postgres(config.ledger))
    live = range(count)
    adopt_journals(journal, 0, live)
    if is_postgres(config.ledger):
        adopt_spools(spool, 0, live)
    args = (["--config", config_path] if config_path else []) + (["--listen", listen] if listen else [])
    return Supervisor(reactor, config.server.listen, count, args, stop_grace=config.server.drain_seconds + 60)
