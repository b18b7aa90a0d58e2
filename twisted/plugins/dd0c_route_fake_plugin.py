# Tests: tests/test_fakeprovider.py
"""
``twistd -n dd0c-route-fake --kind openai --listen tcp:8089:interface=127.0.0.1``

Runs one fake provider as its own process, for manual runs and for
end-to-end tests that drive it over HTTP (``/_fake/scenario``,
``/_fake/reset``, ``/_fake/stats``).  The package is imported only in
``makeService``, so listing plugins stays cheap.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker, Service
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["kind", "k", "openai", "Which provider to fake: openai or anthropic."],
        ["listen", "l", "tcp:8089:interface=127.0.0.1", "Endpoint description to listen on."],
    ]

    def postOptions(self) -> None:
        if self["kind"] not in ("openai", "anthropic"):
            raise usage.UsageError(
                f"--kind must be openai or anthropic, got {self['kind']!r}"
            )


@implementer(IServiceMaker, IPlugin)
class _FakeProviderServiceMaker:
    tapname = "dd0c-route-fake"
    description = "A fake OpenAI or Anthropic provider for testing dd0c-route."
    options = Options

    def makeService(self, options: Any) -> Service:
        from twisted.application.strports import service
        from twisted.internet import reactor

        from dd0c_route.testing.fakeprovider import build_fake_factory

        factory = build_fake_factory(reactor, options["kind"])
        return service(options["listen"], factory)


serviceMaker = _FakeProviderServiceMaker()
