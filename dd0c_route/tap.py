# Tests: tests/test_twistd.py, tests/test_live_openai.py
"""
The composition root: builds the whole proxy from config for ``twistd``.

``makeService`` runs before twistd starts logging, which is what lets it
install the redacting log observer first: from the first event on, no sink
sees an unredacted line.  The writer service is added first so that it is
stopped last: on SIGTERM the listening port closes, then every queued usage
record is flushed.
"""

from __future__ import annotations

import gc
import os
import sys
from functools import partial
from typing import Any, Optional

import attrs
from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from .config import Config, ConfigError, load_config

__all__ = ["Options", "build_service", "makeService"]


class Options(usage.Options):
    """``twistd dd0c-route`` options."""

    synopsis = "[--config FILE] [--listen STRPORTS]"
    longdesc = (
        "Run the dd0c-route LLM gateway. With no --config it runs on embedded "
        "defaults: 127.0.0.1:8080, a SQLite ledger in the working directory, "
        "providers from OPENAI_API_KEY/OPENAI_BASE_URL and "
        "ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL."
    )
    optParameters = [
        ["config", "c", None, "Path to the TOML config file."],
        ["listen", "l", None, "Override server.listen (a strports description)."],
    ]


class _SequentialService(MultiService):
    """
    Stops its children one at a time, last added first, each after the one
    before has finished: the port closes, the open streams end and are
    metered, and only then does the writer flush the last records.
    (``MultiService`` stops all children at once.)
    """

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for service in reversed(list(self)):
            try:
                yield maybeDeferred(service.stopService)
            except Exception:
                Logger().failure("error stopping {service!r}", service=service)


class _MeterDrainService(Service):
    """Waits, at stop, for records still being counted in threads."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter

    def stopService(self) -> Any:
        super().stopService()
        return self.meter.drain()


class _ThreadPoolService(Service):
    """Starts and stops a thread pool with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> Any:
        super().stopService()
        self.pool.stop()


class _BudgetSeedService(Service):
    """Counts this month's stored spend into the budgets, at start (in a thread)."""

    def __init__(self, routing: Any, store: Any, run_in_thread: Any) -> None:
        self.routing = routing
        self.store = store
        self.run_in_thread = run_in_thread
        self.seeded: Any = None

    def startService(self) -> None:
        super().startService()
        self.seeded = self.routing.seed(self.store, self.run_in_thread)


class _ConnectionsService(Service):
    """Closes the client connections the port left open, at stop."""

    def __init__(self, site: Any) -> None:
        self.site = site

    def stopService(self) -> Any:
        super().stopService()
        return self.site.close_connections()


class _UpstreamService(Service):
    def __init__(self, upstream: Any) -> None:
        self.upstream = upstream

    def stopService(self) -> Any:
        super().stopService()
        return self.upstream.close()


@attrs.frozen
class Built:
    """The assembled proxy: the service to run and its parts (for tests)."""

    service: MultiService
    site: Any
    app: Any
    server: Any
    writer: Any
    keys: Any
    store: Any


def build_service(config: Config, reactor: Any) -> Built:
    """
    Everything the proxy runs, as one service, with its parts.
    """
    from .ledger.keycache import KeyCache
    from .ledger.runner import ThreadPoolRunner
    from .ledger.sqlite import SQLiteLedger
    from .ledger.writer import UsageWriter
    from .metering.meter import Meter
    from .metering.prices import PriceTable
    from .providers.adapters import default_adapters
    from .providers.registry import ProviderRegistry
    from .relay.upstream import UpstreamClient
    from .routing.service import Routing
    from .web.app import ProxyApp
    from .web.resource import ApiResource
    from .web.site import ProxySite

    root = _SequentialService()
    # Before the reactor serves: building a tokenizer holds the GIL for
    # 100-300 ms, which would stall every stream if done on first use.
    from .metering.preload import preload_for_kinds

    preload_for_kinds(provider.kind for provider in config.providers)
    store = SQLiteLedger(config.ledger.path)
    writer = UsageWriter(
        store, reactor, ThreadPoolRunner(reactor),
        batch_size=config.ledger.batch_size, flush_interval=config.ledger.flush_interval,
    )
    writer.setServiceParent(root)

    work = ThreadPool(minthreads=1, maxthreads=1, name="dd0c-work")
    _ThreadPoolService(work).setServiceParent(root)
    run_in_thread = partial(deferToThreadPool, reactor, work)

    prices = PriceTable.load_default().with_overrides(config.price_overrides)
    shared = None
    if config.state is not None:
        from .state.service import SharedState

        # Added before the meter drain: it stops after the last record was
        # counted, and its last round sends that record's spend.
        shared = SharedState(config.state, reactor)
        shared.setServiceParent(root)
    routing = Routing(config, ProviderRegistry(config), reactor, shared=shared.counters if shared else None)
    # One record per request, published to its subscribers: budgets count
    # it, the writer stores it.
    meter = Meter(None, prices, run_in_thread, clock=reactor)
    meter.subscribe(routing.observe)
    meter.subscribe(writer.submit)
    _BudgetSeedService(routing, store, run_in_thread).setServiceParent(root)
    _MeterDrainService(meter).setServiceParent(root)

    keys = KeyCache(store, reactor, run_in_thread, ttl=config.ledger.key_cache_ttl)
    keys.setServiceParent(root)
    if shared is not None:
        shared.connect(keys, routing.breaker)

    upstream = UpstreamClient(reactor, connect_timeout=config.timeouts.connect)
    _UpstreamService(upstream).setServiceParent(root)
    app = ProxyApp(
        reactor=reactor, config=config, keys=keys, meter=meter, upstream=upstream, routing=routing,
        adapters=default_adapters(),
    )
    site = ProxySite(ApiResource(app), config.server.max_body_bytes)
    # Stopped in reverse order: the port closes first, then the open
    # connections, then upstream, key cache, worker threads, and last the
    # writer flushes every record.
    _ConnectionsService(site).setServiceParent(root)
    server = strports.service(config.server.listen, site, reactor=reactor)
    server.setServiceParent(root)
    return Built(root, site, app, server, writer, keys, store)


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Called by twistd: install redaction, read config, build everything.
    """
    from .redacting_log import install_redacting_logging

    install_redacting_logging()
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        config = load_config(options["config"], os.environ)
    except ConfigError as error:
        sys.stderr.write(f"dd0c-route: {error}\n")
        raise SystemExit(2) from None
    if options["listen"]:
        config = attrs.evolve(config, server=attrs.evolve(config.server, listen=options["listen"]))
    service = build_service(config, reactor).service
    # Everything built so far (modules, config, tokenizer tables, price
    # table) lives as long as the process: keep it out of the cyclic GC's
    # full collections, which otherwise re-walk it every time (~5 ms).
    gc.freeze()
    return service
