"""Slow clients against a real gunicorn, no proxy (issue 9, Found 1 and 5).

N connections dribble their headers one byte per second, or declare a Content-Length whose
body never arrives, for the whole test; meanwhile a normal client must get /healthz and a hook
call answered. With gunicorn's stock gthread worker (4 threads) the normal calls wait for as
long as the slow clients last; with the buffering worker they do not. The bound on the normal
calls is a generous liveness timeout, not a speed measurement (bench/slow_clients.py measures).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e

#: slow connections per variant (README "Serving" states the figure)
SLOW_HEADERS = 48
SLOW_BODIES = 48
NORMAL_CALL_TIMEOUT = 5.0  # liveness bound for the normal client; the slow ones last longer


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slow")
    config = (
        f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
        "[limits]\n"
        "max_body_bytes = 200000\n"
        "request_read_seconds = 4\n"
    )
    service = start_service(config, workdir, workers=1)
    yield service
    stop_service(service)


class SlowClients:
    """Opens connections that send a request one byte per ``interval`` until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.closed_by_server = 0
        self._lock = threading.Lock()

    def start(self, n: int, payload: bytes, *, interval: float = 1.0, then_hold: bool = False) -> None:
        for _ in range(n):
            thread = threading.Thread(target=self._run, args=(payload, interval, then_hold), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, payload: bytes, interval: float, then_hold: bool) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        except OSError:
            return
        with sock:
            try:
                if then_hold:  # headers at once, then a body that never comes
                    sock.sendall(payload)
                    while not self.stop.wait(interval):
                        sock.sendall(b" ")  # one byte of a 100000-byte body now and then
                else:
                    for byte in payload:
                        if self.stop.wait(interval):
                            return
                        sock.sendall(bytes([byte]))
                    self.stop.wait()
            except OSError:
                with self._lock:
                    self.closed_by_server += 1

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def slow(live):
    clients = SlowClients(int(live.base_url.rsplit(":", 1)[1]))
    yield clients
    clients.close()


def _normal_calls(live) -> None:
    assert requests.get(live.url("/healthz"), timeout=NORMAL_CALL_TIMEOUT).json() == {"status": "ok"}
    body = hr.patient_view("slow1", prefetch=hr.nothing_found_prefetch(scenarios.patient("slow1")))
    response = requests.post(live.url("/cds-services/back-pain-after-chemo"), json=body,
                             timeout=NORMAL_CALL_TIMEOUT)
    assert response.status_code == 200, response.text


def test_normal_calls_are_answered_while_many_clients_send_headers_one_byte_per_second(live, slow):
    slow.start(SLOW_HEADERS, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n")
    slow.start(SLOW_BODIES, b"POST /cds-services/back-pain-after-chemo HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", then_hold=True)
    time.sleep(1.5)  # let every slow connection be accepted and start dribbling
    for _ in range(3):
        _normal_calls(live)
    assert not slow.stop.is_set() and slow.closed_by_server == 0  # the slow ones are still there


def test_a_request_that_never_completes_is_answered_408_at_the_read_deadline(live):
    with socket.create_connection(("127.0.0.1", int(live.base_url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(b"POST /cds-services/back-pain-after-chemo HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 50\r\n\r\n{")
        answer = sock.recv(1024)  # request_read_seconds = 4, the socket timeout 30
    assert answer.startswith(b"HTTP/1.1 408")


def _chunked(body: bytes, size: int = 16384) -> bytes:
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return bytes(out + b"0\r\n\r\n")


def _send_chunked(live, path: str, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", int(live.base_url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        try:
            sock.sendall(_chunked(body))
        except OSError:
            pass  # the server refused early and closed
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_chunked_body_over_max_body_bytes_is_413_not_cut(live):
    # valid JSON padded past the limit, then garbage: cutting it at the limit would parse
    body = json.dumps({"feedback": []}).encode() + b" " * 250_000 + b"garbage"
    answer = _send_chunked(live, "/cds-services/back-pain-after-chemo/feedback", body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too-costly"' in answer


def test_a_chunked_body_under_the_limit_is_read_whole(live):
    card = {"card": "c1", "outcome": "overridden", "overrideReason": {"userComment": "x" * 1000},
            "outcomeTimestamp": "2026-01-02T03:04:05Z"}
    body = json.dumps({"feedback": [card]}).encode() + b" " * 100_000
    answer = _send_chunked(live, "/cds-services/back-pain-after-chemo/feedback", body)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
