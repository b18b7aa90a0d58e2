"""
A finished request leaves no reference cycle of ours behind (issue #18): the
call, its fallback chain, its exchange and twisted.web's request are freed
by reference counting as the request ends, not later by the cyclic GC
(which cost ~80 us per request while they formed a cycle).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import openai
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.relay.relay import Exchange
from dd0c_route.routing.fallback import FallbackChain
from dd0c_route.testing.fakeprovider import Scenario
from dd0c_route.web.call import Call
from dd0c_route.web.site import ProxyRequest

from .live import in_thread, start_live_proxy

MESSAGES = [{"role": "user", "content": "hello"}]
OURS = (Call, FallbackChain, Exchange, ProxyRequest)


def _cyclic_garbage(made: weakref.WeakSet[Any]) -> list[Any]:
    """The objects of ``made`` that only the cyclic GC would free now (each collected, too)."""
    # Noted before collecting: the collection clears the weak references to garbage.
    ours = {id(o) for o in made}
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [o for o in gc.garbage if id(o) in ours]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


class RequestGarbageTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_finished_requests_leave_no_cycles(self) -> Any:
        """Answered, streamed, refused (404) and provider-error (500) requests: none of ours left in a cycle."""
        live = yield start_live_proxy(self)
        client = live.openai_client()
        live.openai.state.push(Scenario(status=500))

        def traffic() -> None:
            with self.assertRaises(openai.InternalServerError):
                client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
            for _ in range(3):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                for _chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
                    pass
            with self.assertRaises(openai.NotFoundError):
                client.chat.completions.create(model="no-such-model", messages=MESSAGES)

        # Only what this test's requests make is looked at (other tests' leftovers may
        # become garbage meanwhile).
        made: weakref.WeakSet[Any] = weakref.WeakSet()
        counted: list[type] = []
        for kind in OURS:
            self.patch(kind, "__init__", _noting(kind, made, counted))
        # No automatic collection meanwhile: it would free a cycle before we look.
        gc.disable()
        self.addCleanup(gc.enable)
        yield in_thread(traffic)
        records = yield live.records()
        self.assertEqual(len(records), 8)
        self.assertEqual({kind: counted.count(kind) for kind in OURS}, {Call: 8, FallbackChain: 7, Exchange: 7, ProxyRequest: 8})
        self.assertEqual(_cyclic_garbage(made), [])


def _noting(kind: type, made: weakref.WeakSet[Any], counted: list[type]) -> Any:
    """``kind.__init__``, noting each object it makes (weakly) and counting them."""
    init = kind.__init__

    def noted(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is kind:
            made.add(self)
            counted.append(kind)

    return noted
