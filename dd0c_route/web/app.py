# Tests: tests/test_live_openai.py, tests/test_provider_contract.py
"""
Everything a request needs, built once by the tap: the :class:`ProxyApp`.

It holds the config, the key cache, the meter, the upstream client, the
routing layer, the provider adapters (``{kind: adapter}``) and the route
table (path -> endpoint).  A new endpoint is one function taking a
:class:`~dd0c_route.web.call.Call` and one entry in :attr:`ProxyApp.routes`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from twisted.internet.interfaces import IReactorTime

from ..config import Config
from ..metering.meter import Meter
from ..providers.adapters import default_adapters
from ..providers.catalog import ModelCatalog
from ..providers.interfaces import IProvider
from ..providers.registry import ProviderRegistry
from ..relay.upstream import UpstreamClient
from ..routing.service import Routing
from . import chat, messages, models, passthrough, responses
from .call import Call
from .paths import Passthrough
from .resource import ApiResource

__all__ = ["ApiResource", "ProxyApp"]


class ProxyApp:
    """Everything a request needs; see the module docstring."""

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        config: Config,
        keys: Any,
        meter: Meter,
        upstream: UpstreamClient,
        routing: Optional[Routing] = None,
        adapters: Optional[Mapping[str, IProvider]] = None,
        catalog: Optional[ModelCatalog] = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        if routing is None:
            routing = Routing(config, ProviderRegistry(config), reactor)
        self.routing = routing
        self.registry = routing.router.registry
        self.keys = keys
        self.meter = meter
        self.upstream = upstream
        self.adapters: Mapping[str, IProvider] = dict(default_adapters() if adapters is None else adapters)
        #: The provider kinds a chat completion can be served by.
        self.kinds = frozenset(self.adapters)
        self.active = 0
        #: The ledger's backlog for /healthz (set by the tap).
        self.ledger_health: Optional[Callable[[], dict[str, Any]]] = None
        #: The calls in flight (the metrics count their streams on scrape).
        self.live: set[Call] = set()
        #: The request tracer when ``[telemetry] otlp_endpoint`` is set (dd0c_route/tracing.py).
        self.tracer: Optional[Any] = None
        #: ``{"index", "pid"}`` when this process is one of several workers.
        self.worker: Optional[dict[str, int]] = None
        if catalog is None:
            # Without a lister: config names and aliases only.
            catalog = ModelCatalog(config.providers, self.registry.provider_for, config.routing.aliases, reactor)
        #: What ``GET /v1/models`` lists (the tap starts its refreshing).
        self.catalog = catalog
        self.routes: dict[bytes, Callable[[Call], None]] = {
            b"/v1/chat/completions": chat.chat_completions,
            b"/v1/responses": responses.responses,
            b"/v1/models": models.models,
            b"/v1/messages": messages.messages,
            b"/v1/messages/count_tokens": messages.count_tokens,
        }
        #: Every other ``/v1/*`` path, when ``[server] passthrough`` lists it.
        self.passthrough: Callable[[Call], None] = passthrough.passthrough
        self.passthrough_allowed = Passthrough(config.server.passthrough)
