# Tests: tests/test_serve.py
"""
``dd0c-route serve``: the proxy in the foreground, for containers and
process managers.

It is ``twistd --nodaemon --pidfile= --logfile=- dd0c-route`` run in this
process: no daemon, no ``twistd.pid`` left to block a restart, logs on
stdout (JSON lines with ``[log] format = "json"``), SIGTERM drains and
exits 0 (plain twistd re-raises the signal, so its exit status is 143).  The CLI has already checked the config (a bad one exits 2 with
the key named, before twistd starts).

Twistd finds the plugin through ``twisted/plugins/dropin.cache``; when the
cache is stale and site-packages is read-only, Twisted warns on every
start.  ``serve`` refreshes the cache first (a no-op when it is current);
an image whose site-packages is read-only at run time runs
``python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"``
once at build time (docs/operations.md).
"""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["refresh_plugin_cache", "serve", "twistd_arguments"]


def twistd_arguments(config: Optional[str], listen: Optional[str]) -> list[str]:
    args = ["--nodaemon", "--pidfile=", "--logfile=-", "dd0c-route"]
    if config:
        args += ["--config", config]
    if listen:
        args += ["--listen", listen]
    return args


def refresh_plugin_cache() -> None:
    """Rewrite twisted/plugins/dropin.cache if stale (Twisted logs, never raises, when it cannot)."""
    import warnings

    from twisted.plugin import IPlugin, getPlugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(getPlugins(IPlugin))


def serve(config: Optional[str], listen: Optional[str]) -> int:
    """Run twistd in this process until it stops; its exit code."""
    from twisted.scripts.twistd import ServerOptions, _SomeApplicationRunner

    refresh_plugin_cache()
    options = ServerOptions()
    try:
        options.parseOptions(twistd_arguments(config, listen))
    except Exception as error:
        print(f"dd0c-route: {error}", file=sys.stderr)
        return 2
    try:
        # twistd's runApp, except that it does not re-raise the signal that
        # stopped the reactor: a SIGTERM that drained and flushed is a clean
        # exit (0), which is what orchestrators count as success.
        _SomeApplicationRunner(options).run()
    except SystemExit as exit:
        code = exit.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
