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

import datetime
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


class _TracerService(Service):
    """At stop (after the last record): export the spans left, in a thread."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def stopService(self) -> Any:
        super().stopService()
        from twisted.internet.threads import deferToThread

        return deferToThread(self.tracer.shutdown)


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
    #: The admin side (metrics, readiness) when ``[admin] listen`` is set.
    admin: Any = None
    admin_server: Any = None
    tracer: Any = None
    drain: Any = None


def build_service(config: Config, reactor: Any, seat: Any = None) -> Built:
    """
    Everything the proxy runs, as one service, with its parts; as worker
    ``seat`` (a :class:`dd0c_route.workers.seat.WorkerSeat`) it serves the
    inherited socket and keeps its own journal and spool.
    """
    from .ledger.journal import Journal, remove_files
    from .ledger.keycache import KeyCache
    from .ledger.opening import is_postgres, open_ledger
    from .ledger.runner import ThreadPoolRunner
    from .ledger.spool import Spool
    from .ledger.writer import UsageWriter
    from .metering.meter import Meter
    from .metering.prices import Prices, price_warnings
    from .providers.adapters import default_adapters
    from .providers.catalog import ModelCatalog, http_model_lister
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
    store = open_ledger(config.ledger, os.environ)
    postgres = is_postgres(config.ledger)
    from .workers.seat import ledger_files

    journal_path, spool_path = ledger_files(config, postgres, seat.index if seat is not None else None)
    if seat is None:
        from .workers.orphans import adopt_journals, adopt_spools

        # Records earlier workers left: this single process replays them.
        adopt_journals(journal_path, None, ())
        adopt_spools(spool_path, None, ())
    runner = ThreadPoolRunner(reactor)
    writer = UsageWriter(
        store, reactor, runner,
        batch_size=config.ledger.batch_size, flush_interval=config.ledger.flush_interval,
        spool=Spool(spool_path) if postgres else None,
        max_queued=config.ledger.max_queued,
        # Durable segments are deleted in the ledger's thread, never on the reactor.
        journal=Journal(journal_path, reactor, remove=partial(runner.run, remove_files)) if journal_path else None,
    )
    writer.setServiceParent(root)

    work = ThreadPool(minthreads=1, maxthreads=1, name="dd0c-work")
    _ThreadPoolService(work).setServiceParent(root)
    run_in_thread = partial(deferToThreadPool, reactor, work)
    key_reads = run_in_thread
    if postgres:
        # Key reads wait on the network: never behind token counting.
        key_pool = ThreadPool(minthreads=1, maxthreads=max(1, config.ledger.pool_size - 1), name="dd0c-keys")
        _ThreadPoolService(key_pool).setServiceParent(root)
        key_reads = partial(deferToThreadPool, reactor, key_pool)

    prices = Prices.load(config.price_overrides, config.providers)
    for warning in price_warnings(prices, config.providers, datetime.date.today()):
        Logger().warn("Prices: {warning}", warning=warning)
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
    tracer = None
    if config.telemetry.otlp_endpoint:
        from .tracing import RequestTracer

        tracer = RequestTracer(config)
        meter.subscribe(tracer.finish)
        _TracerService(tracer).setServiceParent(root)
    if config.alerts:
        from .alerts.watcher import watch_alerts

        alerts = watch_alerts(config, store, writer.runner.run, reactor)
        alerts.setServiceParent(root)
        meter.subscribe(alerts.observe)
    if config.log.access:
        from .accesslog import log_access

        meter.subscribe(log_access)
    seed = _BudgetSeedService(routing, store, run_in_thread)
    seed.setServiceParent(root)
    _MeterDrainService(meter).setServiceParent(root)

    keys = KeyCache(store, reactor, key_reads, ttl=config.ledger.key_cache_ttl)
    keys.setServiceParent(root)
    if shared is not None:
        shared.connect(keys, routing.breaker)

    upstream = UpstreamClient(reactor, connect_timeout=config.timeouts.connect)
    _UpstreamService(upstream).setServiceParent(root)
    adapters = default_adapters()
    # GET /v1/models: provider lists fetched in the background, never awaited.
    catalog = ModelCatalog(
        config.providers, routing.router.registry.provider_for, config.routing.aliases, reactor,
        fetch=http_model_lister(reactor, adapters, timeout=config.timeouts.connect),
    )
    catalog.setServiceParent(root)
    app = ProxyApp(
        reactor=reactor, config=config, keys=keys, meter=meter, upstream=upstream, routing=routing,
        adapters=adapters, catalog=catalog,
    )
    app.ledger_health = writer.health
    if seat is not None:
        app.worker = {"index": seat.index, "pid": os.getpid()}
    app.tracer = tracer
    site = ProxySite(
        ApiResource(app), config.server.max_body_bytes, reactor=reactor,
        client_header_timeout=config.server.client_header_timeout,
        client_body_timeout=config.server.client_body_timeout,
    )
    # Stopped in reverse order: the API port closes first, then the drain
    # waits for the requests in flight (docs in drain.py), then the admin
    # port closes, the open connections are cut, then upstream, key
    # cache, worker threads, and last the writer flushes every record.
    _ConnectionsService(site).setServiceParent(root)
    admin = admin_server = None
    # With workers, worker 0 alone serves the admin port (docs/decisions.md).
    if config.admin.listen and (seat is None or seat.index == 0):
        from .admin.service import build_admin

        admin = build_admin(
            config, reactor, app=app, writer=writer, keys=keys, meter=meter, budgets_seeded=lambda: seed.seeded,
            store=store, prices=prices, announcer=shared.announcer() if shared is not None else None,
        )
        meter.subscribe(admin.metrics.observe)
        admin_server = strports.service(config.admin.listen, admin.site, reactor=reactor)
        admin_server.setServiceParent(root)
    from .drain import DrainService

    drain = DrainService(
        reactor, lambda: app.active, config.server.drain_seconds, admin.readiness if admin is not None else None
    )
    drain.setServiceParent(root)
    server: Service
    if seat is None:
        server = strports.service(config.server.listen, site, reactor=reactor)
    else:
        from .workers.seat import AdoptedPortService

        server = AdoptedPortService(reactor, seat, site)
    server.setServiceParent(root)
    return Built(root, site, app, server, writer, keys, store, admin, admin_server, tracer, drain)


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Called by twistd: install redaction, read config, build everything.
    """
    from .loop import refuse_self_pointing
    from .redacting_log import install_redacting_logging

    install_redacting_logging()
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        config = load_config(options["config"], os.environ)
        if options["listen"]:
            config = attrs.evolve(config, server=attrs.evolve(config.server, listen=options["listen"]))
        refuse_self_pointing(config)
        if config.log.format == "json":
            from .jsonlog import use_json_lines

            use_json_lines()
        if config.server.worker_count > 1:
            from .workers.parent import build_supervisor

            return build_supervisor(config, options["config"], options["listen"], reactor)
        # Opening the ledger can fail on config too (ledger.url unreachable).
        service = build_service(config, reactor).service
    except ConfigError as error:
        sys.stderr.write(f"dd0c-route: {error}\n")
        raise SystemExit(2) from None
    # Everything built so far (modules, config, tokenizer tables, price
    # table) lives as long as the process: keep it out of the cyclic GC's
    # full collections, which otherwise re-walk it every time (~5 ms).
    gc.freeze()
    return service
