"""
Running the real ``twistd dd0c-route`` and ``dd0c-route`` commands as
subprocesses, the way an operator does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLI = [sys.executable, "-m", "dd0c_route.cli"]


def env() -> dict[str, str]:
    """The test's environment, with this checkout importable first."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        out.pop(name, None)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(workdir: str, port: int, rest: str) -> str:
    """
    A config file in ``workdir`` listening on ``port`` with its ledger
    beside it; ``rest`` is appended (more ``[ledger]`` keys, providers).
    """
    path = os.path.join(workdir, "dd0c.toml")
    with open(path, "w") as f:
        f.write(
            f'[server]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
            f'[ledger]\npath = "{workdir}/ledger.sqlite3"\n' + rest
        )
    return path


def run_cli(*args: str, cwd: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env(), cwd=cwd or str(ROOT), timeout=60)


class Twistd:
    """A ``twistd -n dd0c-route`` process listening on a free loopback port."""

    def __init__(self, config_path: str, workdir: str, logfile: str, port: int) -> None:
        self.port = port
        self.logfile = logfile
        self.process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile", "", "--logfile", logfile, "dd0c-route", "--config", config_path],
            cwd=workdir,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll /healthz until it answers (blocking: call in a thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"twistd exited with {self.process.returncode}: {output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("twistd did not become ready")

    def stop(self) -> int:
        """SIGTERM, as an orchestrator would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode
