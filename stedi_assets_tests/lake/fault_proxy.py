"""A fault-injecting reverse proxy on 127.0.0.1 between the code under test and an S3 server.

Point AWS_ENDPOINT_URL at the proxy; it relays every request to the server unless a `Fault`
matches it (method, substrings of the path and operation), in which case it answers with an error
status, drops the connection in the middle of the upload, stalls past the client's timeout,
or cuts the response body short. It can also strip headers from every request before relaying
it (`strip`): `If-None-Match`/`If-Match` stripped, the server sees plain PUTs, as from a store
that ignores conditional writes. It records each request's method, path, headers and whether
it was signed, so tests can see what the client actually sent."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERRORS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


@dataclass
class Fault:
    # "error", "drop" (mid-upload), "stall" (past the timeout), "truncate" (response body),
    # "lose" (relayed, so the server acts on it, but the response never reaches the client),
    # "hold" (the first `times` matching requests wait for each other, then all are relayed
    # at once: concurrent writers made to race deterministically)
    kind: str
    path: str = ""  # a substring of the request path
    method: str | None = None
    target: str = ""  # a substring of the X-Amz-Target header: the operation of a JSON service (Glue)
    agent: str = ""  # a substring of the User-Agent: "object_store" (delta-rs), "Boto3", "aws-sdk-cpp" (Arrow)
    times: int | None = 1  # None: every matching request, for good
    status: int = 500
    injected: int = 0
    hold_seconds: float = 30.0  # "hold": how long the first ones wait for the others
    _barrier: threading.Barrier | None = field(default=None, repr=False)

    def hold(self) -> None:
        if self._barrier is None:
            raise ValueError("a hold fault needs times")
        try:
            self._barrier.wait(self.hold_seconds)
        except threading.BrokenBarrierError:
            pass  # fewer came than expected: relay those that did

    def __post_init__(self) -> None:
        if self.kind == "hold" and self.times:
            self._barrier = threading.Barrier(self.times)

    def matches(self, method: str, path: str, target: str, agent: str = "") -> bool:
        if self.times is not None and self.injected >= self.times:
            return False
        return (
            (self.method is None or self.method == method)
            and self.path in path
            and self.target in target
            and self.agent.lower() in agent.lower()
        )


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    signed: bool
    headers: tuple[tuple[str, str], ...] = ()  # as the client sent them, before any stripping
    at: float = 0.0  # time.monotonic() on arrival

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class FaultProxy:
    upstream_port: int
    stall_seconds: float = 5.0
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    strip: frozenset[str] = frozenset()  # lower-case names of request headers never relayed

    CONDITIONAL_HEADERS = frozenset({"if-none-match", "if-match"})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Relay)
        self._server.daemon_threads = True  # a stalled handler must not hold up the shutdown
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, *faults: Fault) -> list[Fault]:
        with self._lock:
            self.faults = list(faults)
            self.seen = []
        return list(faults)

    def strip_conditional_headers(self, strip: bool = True) -> None:
        """Relay requests without `If-None-Match`/`If-Match`: the server below then behaves
        as a store that ignores conditional writes (they succeed unconditionally)."""
        self.strip = self.CONDITIONAL_HEADERS if strip else frozenset()

    def _fault_for(self, method: str, path: str, target: str, signed: bool, headers: tuple) -> Fault | None:
        with self._lock:
            self.seen.append(Seen(method, path, signed, headers, time.monotonic()))
            agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
            for fault in self.faults:
                if fault.matches(method, path, target, agent):
                    fault.injected += 1
                    return fault
        return None


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each response can wait
    # for the client's delayed ACK (tens of milliseconds, hundreds of requests per run).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._relay()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

    def _relay(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        fault = proxy._fault_for(
            self.command,
            self.path,
            self.headers.get("X-Amz-Target", ""),
            "Authorization" in self.headers,
            tuple(self.headers.items()),
        )
        length = int(self.headers.get("Content-Length") or 0)
        if fault is not None and fault.kind == "drop":
            self.rfile.read(length // 2)
            return self._hang_up()
        body = self._read_body(length)
        if fault is not None and fault.kind == "hold":
            fault.hold()
        if fault is not None and fault.kind == "stall":
            time.sleep(proxy.stall_seconds)
            return self._hang_up()
        if fault is not None and fault.kind == "error":
            return self._send_error(fault.status)
        status, headers, payload = self._forward(proxy.upstream_port, body)
        if fault is not None and fault.kind == "lose":
            return self._hang_up()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            return self._hang_up()
        self.wfile.write(payload)

    def _read_body(self, length: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(length)
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def _forward(self, port: int, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            # Same Host header and body as the client sent: its signature stays valid.
            upstream.connect()
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            strip = self.server.proxy.strip  # type: ignore[attr-defined]
            for name, value in self.headers.items():
                if name.lower() not in {"transfer-encoding", "content-length", "connection"} | strip:
                    upstream.putheader(name, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            payload = response.read()
            skip = {"transfer-encoding", "connection"} | ({"content-length"} if self.command != "HEAD" else set())
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in skip]
            if self.command != "HEAD":
                headers.append(("Content-Length", str(len(payload))))
            return response.status, headers, payload
        finally:
            upstream.close()

    def _send_error(self, status: int) -> None:
        code, message = _ERRORS[status]
        if "X-Amz-Target" in self.headers:  # a JSON-protocol service: Glue
            content_type, body = "application/x-amz-json-1.1", json.dumps({"__type": code, "message": message})
        else:
            content_type = "application/xml"
            body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body.encode())

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
