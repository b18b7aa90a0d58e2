"""
The router's per-request cost without the network: measuring a request and
classifying its complexity (``routing.features`` + ``routing.classifier``),
and a whole routing decision (``Router.decide``), for a 4k-token prompt.

The issue asks for a p99 well under 100 µs for the classifier on a 4k-token
prompt.  pyperf gives the mean; the p50/p99 printed first come from
``--samples`` timed single calls (perf_counter), which is what a tail
latency needs.

``--e2e`` measures the end-to-end price of routing instead: one process
runs the fake OpenAI provider and two proxies built by the tap (routing
``off``, and ``enforce`` with three rules, one of which fires), and a client
thread sends the same chat completion to each in alternation over
keep-alive connections; the figures are per-request latency p50/p99 for
each proxy and their ratio (same process, same fake, interleaved, so
machine noise hits both alike).

Run: ``PYTHONPATH=. python bench/classifier.py [--samples 20000]`` (add
pyperf options such as ``--fast`` or ``-o FILE`` after ``--pyperf``), or
``PYTHONPATH=. python bench/classifier.py --e2e [--rounds 2000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__: list[str] = []

_CODE = "```python\ndef f(x):\n    return x * 2\n```\n"


def prompt_4k() -> list[dict[str, Any]]:
    """About 4,000 tokens (16,000 characters) of mixed prose and code."""
    prose = (
        "The service reads the ledger, groups records by key and model, and writes a "
        "report with totals and savings for each team. "
    )
    text = "Review this design and the code below, then summarize the risks.\n"
    while len(text) < 16000:
        text += prose
        if len(text) % 5 == 0:
            text += _CODE
    return [
        {"role": "system", "content": "You are a careful reviewer."},
        {"role": "user", "content": text[:16000]},
    ]


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return ordered[n // 2], ordered[int(n * 0.99)], ordered[-1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--pyperf", nargs=argparse.REMAINDER, default=None)
    parser.add_argument("--e2e", action="store_true", help="routing on vs off, end to end")
    parser.add_argument("--rounds", type=int, default=2000, help="--e2e: requests per proxy")
    args = parser.parse_args()
    if args.e2e:
        return end_to_end(args.rounds)

    from dd0c_route.config import parse_config
    from dd0c_route.providers.registry import ProviderRegistry
    from dd0c_route.routing.breaker import CircuitBreaker
    from dd0c_route.routing.classifier import HeuristicClassifier
    from dd0c_route.routing.features import measure_request
    from dd0c_route.routing.router import Router

    messages = prompt_4k()
    body = {"model": "gpt-4o", "messages": messages}
    classifier = HeuristicClassifier()
    config = parse_config(
        {
            "routing": {
                "mode": "enforce",
                "rules": [
                    {"name": "tools", "match": {"tools": True}, "action": {"keep": True}},
                    {"name": "long", "match": {"long_context": True}, "action": {"model": "gpt-4.1"}},
                    {"name": "cheap", "match": {"model": "gpt-4o*", "complexity": ["simple"]},
                     "action": {"model": "gpt-4o-mini"}, "fallbacks": ["claude-haiku-4-5"]},
                ],
            }
        },
        {},
    )

    class _Clock:
        def seconds(self) -> float:
            return time.monotonic()

    router = Router(config.routing, ProviderRegistry(config), classifier, CircuitBreaker(_Clock(), config.routing.circuit_breaker))

    def classify_once() -> Any:
        return classifier.classify(measure_request(body, messages, 32000))

    def decide_once() -> Any:
        return router.decide("gpt-4o", body, messages, None, frozenset({"openai", "anthropic"}))

    label = classify_once()
    print(f"prompt: {sum(len(m['content']) for m in messages)} characters (~4k tokens); class {label.label} {label.reasons}")
    for name, fn in (("measure+classify", classify_once), ("router.decide", decide_once)):
        for _ in range(1000):
            fn()
        samples = []
        clock = time.perf_counter
        for _ in range(args.samples):
            start = clock()
            fn()
            samples.append(clock() - start)
        p50, p99, worst = percentiles(samples)
        print(f"{name:18s} p50 {p50 * 1e6:6.1f} µs   p99 {p99 * 1e6:6.1f} µs   max {worst * 1e6:7.1f} µs   ({args.samples} samples)")

    if args.pyperf is not None:
        import pyperf

        sys.argv = [sys.argv[0], *args.pyperf]
        runner = pyperf.Runner()
        runner.metadata["description"] = "dd0c-route: classify a 4k-token prompt"
        runner.bench_func("classify_4k", classify_once)
        runner.bench_func("decide_4k", decide_once)
    return 0


RULES = [
    {"name": "tools", "match": {"tools": True}, "action": {"keep": True}},
    {"name": "long", "match": {"long_context": True}, "action": {"model": "gpt-4.1"}},
    {"name": "cheap", "match": {"model": "gpt-4o*", "complexity": ["simple"]},
     "action": {"model": "gpt-4o-mini"}, "fallbacks": ["gpt-4.1-mini"]},
]


def end_to_end(rounds: int) -> int:
    """Routing off vs enforce through the tap's proxy, interleaved (see the module docstring)."""
    import http.client
    import json
    import os
    import tempfile
    import threading

    from twisted.internet import reactor
    from twisted.internet.defer import inlineCallbacks
    from twisted.internet.task import deferLater

    from dd0c_route.config import parse_config
    from dd0c_route.ledger.interfaces import KeyInfo
    from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
    from dd0c_route.tap import build_service
    from dd0c_route.testing.fakeprovider import start_fake_provider

    tmp = tempfile.mkdtemp(prefix="dd0c-bench-")
    results: dict[str, list[float]] = {"off": [], "enforce": []}
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi there, how are you?"}]}).encode()

    def client(ports: dict[str, tuple[int, str]]) -> None:
        conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for name, (port, _) in ports.items()}
        order = ["off", "enforce"]
        try:
            for i in range(rounds + 200):
                for name in order if i % 2 else order[::-1]:
                    conn = conns[name]
                    headers = {"authorization": "Bearer " + ports[name][1], "content-type": "application/json"}
                    start = time.perf_counter()
                    conn.request("POST", "/v1/chat/completions", body, headers)
                    response = conn.getresponse()
                    response.read()
                    elapsed = time.perf_counter() - start
                    if response.status != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status}")
                    if i >= 200:
                        results[name].append(elapsed)
        finally:
            for conn in conns.values():
                conn.close()
            reactor.callFromThread(shutdown)

    services: list[Any] = []

    def shutdown() -> None:
        from twisted.internet.defer import DeferredList

        DeferredList([service.stopService() for service in services]).addBoth(lambda _: reactor.stop())

    @inlineCallbacks
    def start() -> Any:
        fake = yield start_fake_provider(reactor, "openai")
        ports = {}
        for name in ("off", "enforce"):
            raw = {
                "server": {"listen": "tcp:0:interface=127.0.0.1"},
                "ledger": {"path": os.path.join(tmp, name + ".sqlite3")},
                "providers": {"openai": {"base_url": fake.base_url}},
                "routing": {"mode": name, "rules": RULES},
            }
            built = build_service(parse_config(raw, {}), reactor)
            built.service.startService()
            services.append(built.service)
            listening: Any = []
            built.server._waitingForPort.addCallback(lambda p, got=listening: (got.append(p), p)[1])
            while not listening:
                yield deferLater(reactor, 0.01, lambda: None)
            port = listening[0]
            key = generate_key()
            built.store.add_key(KeyInfo(new_key_id(), "bench", hash_key(key), time.time()))
            ports[name] = (port.getHost().port, key)
        threading.Thread(target=client, args=(ports,), daemon=True).start()

    reactor.callWhenRunning(start)
    reactor.run()
    line = {}
    for name, samples in results.items():
        p50, p99, _ = percentiles(samples)
        line[name] = (p50, p99)
        print(f"routing {name:8s} p50 {p50 * 1e3:6.3f} ms   p99 {p99 * 1e3:6.3f} ms   ({len(samples)} requests)")
    print(
        f"enforce/off: p50 x{line['enforce'][0] / line['off'][0]:.3f}, p99 x{line['enforce'][1] / line['off'][1]:.3f}; "
        f"p50 difference {(line['enforce'][0] - line['off'][0]) * 1e6:+.0f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
