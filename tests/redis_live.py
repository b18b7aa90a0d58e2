"""
Redis for live tests: the machine's server, a key prefix per test (cleaned
up after), and a private ``redis-server`` a test may kill.

Skipped loudly only when Redis is unreachable and the env var CI is unset;
in CI an unreachable Redis fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from typing import Optional

import pytest

HOST, PORT = "127.0.0.1", 6379


def _resp(port: int, *parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=2) as sock:
        sock.sendall(b"".join(out))
        return sock.recv(65536)


def reachable(port: int = PORT) -> bool:
    try:
        return _resp(port, "PING").startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> None:
    """Skip (loudly) outside CI when Redis is not running; fail in CI."""
    if reachable():
        return
    message = f"Redis is not reachable at {HOST}:{PORT}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: live Redis tests must run)")
    warnings.warn(message + ": SKIPPING the live shared-state tests", stacklevel=2)
    pytest.skip(message)


def new_prefix() -> str:
    return f"dd0c-test-{uuid.uuid4().hex[:10]}:"


def clean_prefix(prefix: str, port: int = PORT) -> None:
    """Delete every key under ``prefix`` (a Lua SCAN-free KEYS is fine on a test server)."""
    script = "local k = redis.call('KEYS', ARGV[1]) for i = 1, #k do redis.call('DEL', k[i]) end return #k"
    try:
        _resp(port, "EVAL", script, "0", prefix + "*")
    except OSError:
        pass


def get(key: str, port: int = PORT) -> Optional[int]:
    reply = _resp(port, "GET", key)
    if reply.startswith(b"$-1"):
        return None
    return int(reply.split(b"\r\n")[1])


class PrivateRedis:
    """A ``redis-server`` on a free port, nothing on disk, that a test may kill."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = sock.getsockname()[1]
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not reachable(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
