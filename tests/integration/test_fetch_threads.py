"""Fetch threads are bounded by the deadline, whatever the FHIR server does (issue 9, Found 4).

A server that drips its body (one byte every 0.5 s, no Content-Length, never ending) used to
keep every fetch thread reading forever: the time limit was checked only between 64 KiB
chunks. Now the body download has a total-time limit and each read waits at most the time left.
No wall-clock assertion on speed: the liveness bounds below are generous, and the decisive
checks are that the threads end and the client hangs up *while the server is still dripping*.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fhir_mapping.fhir_client import FhirClient, FhirClientLimits, FhirFetchError

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n\r\n"


class DripServer:
    """Answers every connection with a body that never ends, one byte per ``interval``."""

    def __init__(self, interval: float = 0.5, head: bytes = HEAD) -> None:
        self.interval = interval
        self.head = head
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.accepted = 0
        self.hung_up = 0  #: connections the client closed while we were still dripping
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/fhir"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            thread = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                while not self.stop.wait(self.interval):
                    conn.sendall(b" ")
            except OSError:
                with self._lock:
                    self.hung_up += 1

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def drip():
    server = DripServer()
    yield server
    server.close()


def _fetch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("fhir-fetch"))


def _wait_for(predicate, seconds: float) -> bool:
    """Liveness, not speed: poll until ``predicate`` holds or a generous bound passes."""
    limit = time.monotonic() + seconds
    while time.monotonic() < limit:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_dripping_server_holds_no_fetch_thread_past_the_deadline(drip):
    deadline, socket_timeout = 1.5, 1.0
    baseline = _fetch_threads()
    client = FhirClient(drip.url, allowed_servers=[drip.url],
                        limits=FhirClientLimits(timeout_seconds=socket_timeout))
    queries = {f"k{i}": f"Observation?patient=p&n={i}" for i in range(6)}
    with client, pytest.raises(FhirFetchError):
        client.fetch_many(queries, deadline_seconds=deadline, max_workers=6)
    assert drip.accepted == 6
    # deadline + one socket timeout, with a wide margin for a loaded CI machine
    assert _wait_for(lambda: _fetch_threads() == baseline, deadline + socket_timeout + 10)
    assert _wait_for(lambda: drip.hung_up == 6, 10)
    assert not drip.stop.is_set()  # the server never stopped dripping: we hung up


def test_a_single_read_stops_at_the_time_limit_even_while_bytes_keep_coming(drip):
    client = FhirClient(drip.url, allowed_servers=[drip.url],
                        limits=FhirClientLimits(timeout_seconds=1.0))
    with client, pytest.raises(FhirFetchError, match="timed out"):
        client.get("Patient/p")  # no fetch_many deadline: only the per-request total limit
    assert _wait_for(lambda: drip.hung_up == 1, 10)
    assert not drip.stop.is_set()


def test_headers_that_never_finish_also_end_within_the_deadline():
    server = DripServer(head=b"HTTP/1.1 200 OK\r\nX-Slow: ")
    try:
        baseline = _fetch_threads()
        client = FhirClient(server.url, allowed_servers=[server.url],
                            limits=FhirClientLimits(timeout_seconds=1.0))
        with client, pytest.raises(FhirFetchError):
            client.fetch_many({"a": "Patient/p"}, deadline_seconds=1.0)
        assert _wait_for(lambda: _fetch_threads() == baseline, 12)
        assert not server.stop.is_set()
    finally:
        server.close()
