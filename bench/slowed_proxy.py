"""
The proxy made deliberately slower, to prove the latency gate can fail.

``python bench/slowed_proxy.py --delay-ms 6 -- -n --pidfile '' dd0c-route --config FILE``

Patches ``dd0c_route.web.app.ApiResource.render`` to sleep (blocking the
reactor, as slow code on the hot path would) before every request, then runs
``twistd`` with the arguments after ``--``.  Nothing in the product reads a
flag for this: the slowdown exists only in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def install(delay_ms: float) -> None:
    from dd0c_route.web.resource import ApiResource

    original = ApiResource.render
    delay = delay_ms / 1000.0

    def render(self: Any, request: Any) -> Any:
        if request.path != b"/healthz":
            time.sleep(delay)
        return original(self, request)

    ApiResource.render = render  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description="twistd with a blocking delay before every proxy request")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("twistd_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = args.twistd_args[1:] if args.twistd_args[:1] == ["--"] else args.twistd_args
    install(args.delay_ms)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *rest]
    run()


if __name__ == "__main__":
    main()
