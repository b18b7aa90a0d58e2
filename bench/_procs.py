"""
The processes a benchmark measures, each started the way an operator would:
the fake provider and the proxy under ``twistd -n``, the floor relay as its
own script.  Shared by ``proxy_latency.py`` and ``load.py`` (not a scenario).

Everything listens on 127.0.0.1 only.  A process's CPU time and RSS are read
from ``/proc`` so a benchmark can report them without instrumenting it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

__all__ = ["BENCH", "ROOT", "Proc", "Stack", "cpu_seconds", "free_port", "rss_kib"]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        env.pop(name, None)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Proc:
    """One server process on a loopback port, ready once /healthz-like GET answers."""

    def __init__(self, name: str, argv: list[str], port: int, health: str, log: Path, cwd: Path) -> None:
        self.name = name
        self.port = port
        self.health = health
        self.log = log
        self._out = open(log, "ab")
        self.process = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(f"GET {self.health} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


class Stack:
    """
    Fake provider + floor relays + proxy (optionally slowed), in a temp dir.

    ``inject_delay_ms`` starts the proxy through ``slowed_proxy.py``.
    ``floor`` starts the Agent floor (``floor_relay.py``), ``treq_floor`` the
    treq floor (``floor_treq.py``); both are targets when started.
    """

    def __init__(self, *, inject_delay_ms: float = 0.0, floor: bool = True, treq_floor: bool = True,
                 keep_dir: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dd0c-bench-"))
        self.keep_dir = keep_dir
        self.inject_delay_ms = inject_delay_ms
        self.with_floor = floor
        self.with_treq_floor = treq_floor
        self.provider_key = "sk-bench-" + secrets.token_urlsafe(24)
        self.fake: Optional[Proc] = None
        self.floor: Optional[Proc] = None
        self.treq_floor: Optional[Proc] = None
        self.proxy: Optional[Proc] = None
        self.proxy_key = ""

    # -- start / stop ------------------------------------------------------

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        fake_port = free_port()
        self.fake = Proc(
            "fake provider",
            [*TWISTD, "-n", "--pidfile", "", "dd0c-route-fake", "--kind", "openai",
             "--listen", f"tcp:{fake_port}:interface=127.0.0.1:backlog=4096"],
            fake_port, "/_fake/stats", self.dir / "fake.log", self.dir,
        )
        if self.with_floor:
            floor_port = free_port()
            self.floor = Proc(
                "floor relay",
                [sys.executable, str(BENCH / "floor_relay.py"), "--listen", str(floor_port),
                 "--upstream", f"http://127.0.0.1:{fake_port}", "--api-key", self.provider_key],
                floor_port, "/_fake/stats", self.dir / "floor.log", self.dir,
            )
        if self.with_treq_floor:
            treq_port = free_port()
            self.treq_floor = Proc(
                "treq floor relay",
                [sys.executable, str(BENCH / "floor_treq.py"), "--listen", str(treq_port),
                 "--upstream", f"http://127.0.0.1:{fake_port}", "--api-key", self.provider_key],
                treq_port, "/_fake/stats", self.dir / "floor_treq.log", self.dir,
            )
        proxy_port = free_port()
        config = self.dir / "dd0c-route.toml"
        # DD0C_BENCH_LEDGER_URL: the same runs on PostgreSQL; DD0C_BENCH_EXTRA_CONFIG:
        # TOML appended to the proxy's config (e.g. an [admin] listener), so a
        # feature's cost is measured against the default in the same way.
        ledger_url = os.environ.get("DD0C_BENCH_LEDGER_URL")
        ledger = f'url = "{ledger_url}"\n' if ledger_url else f'path = "{self.dir / "ledger.sqlite3"}"\n'
        config.write_text(
            "[server]\n"
            f'listen = "tcp:{proxy_port}:interface=127.0.0.1:backlog=4096"\n'
            "[ledger]\n"
            + ledger
            + f'journal_path = "{self.dir / "ledger.journal"}"\n'
            "[providers.openai]\n"
            f'base_url = "http://127.0.0.1:{fake_port}/v1"\n'
            f'api_key = "{self.provider_key}"\n'
            + os.environ.get("DD0C_BENCH_EXTRA_CONFIG", "")
        )
        self.proxy_key = self._create_key(config)
        twistd_args = ["-n", "--pidfile", "", "--logfile", str(self.dir / "proxy.log"),
                       "dd0c-route", "--config", str(config)]
        if self.inject_delay_ms:
            argv = [sys.executable, str(BENCH / "slowed_proxy.py"), "--delay-ms", str(self.inject_delay_ms), "--", *twistd_args]
        else:
            argv = [*TWISTD, *twistd_args]
        self.proxy = Proc("proxy", argv, proxy_port, "/healthz", self.dir / "proxy.out", self.dir)
        for proc in (self.fake, self.floor, self.treq_floor, self.proxy):
            if proc is not None:
                proc.wait_ready()

    def _create_key(self, config: Path) -> str:
        """A proxy key: through the CLI when it exists, else straight into the ledger."""
        if (ROOT / "dd0c_route" / "cli.py").exists():
            done = subprocess.run(
                [sys.executable, "-m", "dd0c_route.cli", "--config", str(config), "keys", "create", "--name", "bench"],
                capture_output=True, text=True, env=_env(), cwd=self.dir, timeout=60,
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip().splitlines()[-1].strip()
            sys.stderr.write(f"keys create failed ({done.returncode}), inserting the key directly\n")
        code = (
            "import sys, time\n"
            "from dd0c_route.ledger.interfaces import KeyInfo\n"
            "from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id\n"
            "from dd0c_route.ledger.sqlite import SQLiteLedger\n"
            "key = generate_key()\n"
            "ledger = SQLiteLedger(sys.argv[1])\n"
            "ledger.add_key(KeyInfo(key_id=new_key_id(), name='bench', key_hash=hash_key(key), created_at=time.time()))\n"
            "ledger.close()\n"
            "print(key)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(self.dir / "ledger.sqlite3")],
            capture_output=True, text=True, env=_env(), cwd=self.dir, timeout=60, check=True,
        )
        return done.stdout.strip().splitlines()[-1].strip()

    def stop(self) -> None:
        for proc in (self.proxy, self.treq_floor, self.floor, self.fake):
            if proc is not None:
                proc.stop()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- fake control ------------------------------------------------------

    def scenario(self, **fields: Any) -> None:
        """Make ``fields`` the fake's default scenario (``POST /_fake/scenario``)."""
        assert self.fake is not None
        body = json.dumps({"default": True, **fields}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.fake.port}/_fake/scenario", data=body, method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - an http URL we built, on loopback
            response.read()

    def fake_stats(self) -> dict[str, Any]:
        assert self.fake is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.fake.port}/_fake/stats", timeout=10) as response:
            return dict(json.loads(response.read()))

    # -- targets -------------------------------------------------------------

    def targets(self) -> dict[str, tuple[int, str, dict[str, str]]]:
        """name -> (port, path prefix, headers) for direct, floor (Agent), treq (floor) and proxy."""
        assert self.fake is not None and self.proxy is not None
        out = {"direct": (self.fake.port, "/v1", {"authorization": f"Bearer {self.provider_key}"})}
        if self.floor is not None:
            out["floor"] = (self.floor.port, "/v1", {})
        if self.treq_floor is not None:
            out["treq"] = (self.treq_floor.port, "/v1", {})
        out["proxy"] = (self.proxy.port, "/v1", {"authorization": f"Bearer {self.proxy_key}"})
        return out
