"""A tiny loopback HTTP server, in a thread, that records requests and serves canned answers.

Used to prove what an HTTP client did and did not do: that a server received nothing, that
a header went only where it should, how requests overlapped in time (delays).

    with HttpRecorder() as rec:
        rec.route("/fhir/Patient/1", CannedResponse(body={"resourceType": "Patient", "id": "1"}))
        ...  # call rec.url("/fhir")
        assert rec.requests[0].headers["authorization"] == "Bearer t"

Routes match on the request target (path + query) exactly first, then on the path alone.
Unrouted requests get 404 with an OperationOutcome. The server speaks HTTP/1.0 and closes
every connection after one answer, so no keep-alive sockets outlive a test.

Pytest: the ``http_recorder`` fixture (``tests/conftest.py``) gives a function-scoped, started
recorder.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CannedResponse", "HttpRecorder", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; header names are lower-case."""

    method: str
    target: str  # path + query, as sent
    headers: dict[str, str]
    body: bytes
    started: float  # time.monotonic() when the request line was read
    finished: float | None = None  # set on a copy when the answer was sent

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass
class CannedResponse:
    """What to answer. ``body`` may be bytes, str, or a JSON-able object (sent as FHIR JSON)."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line is sent
    send_content_length: bool = True  # False: close-delimited body (tests streaming limits)
    chunk_delay: float = 0.0  # seconds between 64 KiB body chunks (slow drip)

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Responder = CannedResponse | Callable[[RecordedRequest], CannedResponse]

_NOT_FOUND = CannedResponse(
    status=404,
    body={"resourceType": "OperationOutcome",
          "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no route"}]},
)


class HttpRecorder:
    """Threaded loopback HTTP server that records every request it receives."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Responder] = {}
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HttpRecorder:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name="http-recorder", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that sit in a delay
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HttpRecorder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """Absolute URL on this server for ``path`` (which should start with '/')."""
        return self.origin + path

    def route(self, target: str, response: Responder, method: str = "GET") -> None:
        """Answer ``method target`` with ``response`` (a CannedResponse or a callable)."""
        with self._lock:
            self._routes[(method.upper(), target)] = response

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ internals

    def _lookup(self, method: str, target: str) -> Responder:
        with self._lock:
            found = self._routes.get((method, target))
            if found is None:
                found = self._routes.get((method, urlsplit(target).path))
        return found if found is not None else _NOT_FOUND

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self._requests.append(request)
            return len(self._requests) - 1

    def _finish(self, index: int) -> None:
        with self._lock:
            old = self._requests[index]
            self._requests[index] = RecordedRequest(
                old.method, old.target, old.headers, old.body, old.started, time.monotonic()
            )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output clean

            def _handle(self) -> None:
                started = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = RecordedRequest(
                    method=self.command,
                    target=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    started=started,
                )
                index = recorder._record(request)
                responder = recorder._lookup(self.command, self.path)
                canned = responder(request) if callable(responder) else responder
                try:
                    self._send(canned)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, size cap): that is what tests provoke
                finally:
                    recorder._finish(index)

            def _send(self, canned: CannedResponse) -> None:
                if canned.delay and recorder._stopping.wait(canned.delay):
                    return
                payload = canned.encoded_body()
                self.send_response(canned.status)
                headers = {"Content-Type": "application/fhir+json"} if payload else {}
                headers.update(canned.headers)
                for name, value in headers.items():
                    self.send_header(name, value)
                if canned.send_content_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                step = 64 * 1024
                for start in range(0, len(payload), step):
                    if start and canned.chunk_delay and recorder._stopping.wait(canned.chunk_delay):
                        return
                    self.wfile.write(payload[start:start + step])
                    self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler
