"""Slow clients against a real gunicorn, no proxy (issue 9, Found 1 and 5).

N connections dribble their headers one byte per second, or declare a Content-Length whose
body never arrives, for the whole test; meanwhile a normal client must get /healthz and a hook
call answered, each within 1 s (the issue's bound), measured call by call over several rounds.
With gunicorn's stock gthread worker (4 threads) the normal calls wait for as long as the slow
clients last; with the buffering worker they take milliseconds (bench/slow_clients.py gives
the p99: under 7 ms at 1,900 slow connections), so 1 s leaves room for a loaded 2-core CI box.
The socket timeout (5 s) only keeps a broken server from hanging the test.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e

#: slow connections per variant (README "Serving" states their sum)
SLOW_HEADERS = 48
SLOW_BODIES = 48
NORMAL_CALL_SECONDS = 1.0  # each normal call, connection included (issue 9)
ROUNDS = 5  # rounds of (/healthz, hook call) measured while the slow clients hold on
SOCKET_TIMEOUT = 5.0  # fail-safe only: a call slower than NORMAL_CALL_SECONDS fails anyway


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

    def __init__(self, port: int, source: str | None = None) -> None:
        self.port = port
        self.source = (source, 0) if source else None  #: e.g. "127.0.0.2": another client address
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
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30, source_address=self.source)
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


def _timed(call) -> tuple[requests.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def _normal_calls(live) -> list[tuple[str, float]]:
    """One /healthz and one hook call, each on a new connection; their durations."""
    health, health_s = _timed(lambda: requests.get(live.url("/healthz"), timeout=SOCKET_TIMEOUT))
    assert health.json() == {"status": "ok"}
    body = hr.patient_view("slow1", prefetch=hr.nothing_found_prefetch(scenarios.patient("slow1")))
    hook, hook_s = _timed(lambda: requests.post(live.url("/cds-services/back-pain-after-chemo"), json=body,
                                                timeout=SOCKET_TIMEOUT))
    assert hook.status_code == 200, hook.text
    return [("/healthz", health_s), ("hook call", hook_s)]


def _open_connections(port: int) -> int:
    """Established TCP connections to ``port`` on loopback, as the kernel lists them (Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, local port
                count += 1
    return count


def test_normal_calls_are_answered_within_1s_while_many_clients_send_one_byte_per_second(live, slow):
    port = int(live.base_url.rsplit(":", 1)[1])
    slow.start(SLOW_HEADERS, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n")
    slow.start(SLOW_BODIES, b"POST /cds-services/back-pain-after-chemo HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", then_hold=True)
    time.sleep(1.5)  # let every slow connection be accepted and start dribbling
    if sys.platform.startswith("linux"):  # every slow client did connect and is still connected
        assert _open_connections(port) >= SLOW_HEADERS + SLOW_BODIES
    durations = [d for _ in range(ROUNDS) for d in _normal_calls(live)]
    slowest = max(durations, key=lambda d: d[1])
    assert slowest[1] < NORMAL_CALL_SECONDS, (slowest, durations)
    assert not slow.stop.is_set() and slow.closed_by_server == 0  # the slow ones are still there


def test_the_readme_states_the_number_of_slow_connections_checked_here():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"CI checks (\d+) such connections\s+\(`tests/e2e/test_slow_clients\.py`", readme)
    assert stated is not None and int(stated.group(1)) == SLOW_HEADERS + SLOW_BODIES


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
