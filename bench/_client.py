"""
A lean, blocking HTTP/1.1 keep-alive client for latency measurements.

One persistent socket (TCP_NODELAY), requests written in one ``sendall``,
responses parsed by hand (Content-Length or chunked).  Every ``recv`` is
timestamped, so for an SSE stream the arrival time of each event is the
moment the ``recv`` that completed it returned.  Not a scenario: used by
``proxy_latency.py``.
"""

from __future__ import annotations

import socket
from time import perf_counter
from typing import Optional

__all__ = ["Client", "Timing"]


class Timing:
    """When each part of one response arrived (perf_counter seconds)."""

    __slots__ = ("body", "end", "events", "first_byte", "sent", "status")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.status = 0
        self.first_byte = 0.0
        self.events: list[float] = []
        self.end = 0.0
        self.body = b""


class Client:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.sock: Optional[socket.socket] = None
        self.buf = b""
        self.t_recv = 0.0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self) -> bytes:
        assert self.sock is not None
        data = self.sock.recv(262144)
        self.t_recv = perf_counter()
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def post(self, path: str, headers: dict[str, str], body: bytes, stream: bool) -> Timing:
        """POST ``body`` to ``path``; for a stream, timestamp each SSE event."""
        sock = self.sock or self._connect()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        timing = Timing(perf_counter())
        sock.sendall(head.encode() + b"\r\n" + body)
        buf = self.buf
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
            if not timing.first_byte:
                timing.first_byte = self.t_recv
        raw_head, buf = buf.split(b"\r\n\r\n", 1)
        lines = raw_head.split(b"\r\n")
        timing.status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        sse = b""
        parts: list[bytes] = []

        def feed(data: bytes) -> None:
            nonlocal sse
            if not stream:
                parts.append(data)
                return
            sse += data.replace(b"\r\n", b"\n")
            while b"\n\n" in sse:
                _, sse = sse.split(b"\n\n", 1)
                timing.events.append(self.t_recv)

        if fields.get(b"transfer-encoding") == b"chunked":
            while True:
                while b"\r\n" not in buf:
                    buf += self._recv()
                line, buf = buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while b"\r\n" not in buf:
                        buf += self._recv()
                    buf = buf.split(b"\r\n", 1)[1]
                    break
                while len(buf) < size + 2:
                    buf += self._recv()
                feed(buf[:size])
                buf = buf[size + 2 :]
        elif b"content-length" in fields:
            size = int(fields[b"content-length"])
            while len(buf) < size:
                buf += self._recv()
            feed(buf[:size])
            buf = buf[size:]
        else:
            try:
                while True:
                    buf += self._recv()
            except ConnectionError:
                feed(buf)
                buf = b""
                self.close()
        timing.end = self.t_recv if self.t_recv > timing.sent else perf_counter()
        timing.body = b"".join(parts)
        if fields.get(b"connection") == b"close":
            self.close()
        else:
            self.buf = buf
        return timing
