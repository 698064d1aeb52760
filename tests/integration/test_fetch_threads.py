"""Fetch threads are bounded by the deadline, whatever the FHIR server does (issue 9, Found 4).

A server that drips its body (one byte every 0.5 s, no Content-Length, never ending) used to
keep every fetch thread reading forever: the time limit was checked only between 64 KiB
chunks. Now the body download has a total-time limit and each read waits at most the time left.

The drip server runs in a child process, so the threads of this process are the test's and the
fetch's alone: the process's thread count (``/proc/self/task``, every thread, whatever its name:
pool workers, the watchdog) must be back to its baseline within the deadline plus one socket
timeout plus ``SCHEDULING_MARGIN``, and the client must hang up while the server still drips.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time

import pytest

from fhir_mapping.client import FhirClient, FhirClientLimits, FhirFetchError

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n\r\n"
#: time allowed past deadline + socket timeout for threads to be scheduled, see their socket
#: shut and exit, and be reaped, on a loaded 2-core CI machine
SCHEDULING_MARGIN = 1.0


def _serve(port, accepted, hung_up, stop, interval: float, head: bytes) -> None:
    """The child process: answer every connection with a body that never ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port.value = listener.getsockname()[1]

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(head)
                while not stop.wait(interval):
                    conn.sendall(b" ")
            except OSError:
                with hung_up.get_lock():
                    hung_up.value += 1

    threads = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with accepted.get_lock():
            accepted.value += 1
        thread = threading.Thread(target=drip, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    listener.close()
    for thread in threads:
        thread.join(timeout=5)


class DripServer:
    """A child process answering every connection with a body that never ends, one byte per
    ``interval``; ``accepted`` / ``hung_up`` count connections and client hang-ups."""

    def __init__(self, interval: float = 0.5, head: bytes = HEAD) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._port = ctx.Value("i", 0)
        self._accepted = ctx.Value("i", 0)
        self._hung_up = ctx.Value("i", 0)
        self.stop = ctx.Event()
        self.process = ctx.Process(target=_serve, daemon=True,
                                   args=(self._port, self._accepted, self._hung_up, self.stop, interval, head))
        self.process.start()
        limit = time.monotonic() + 30
        while not self._port.value and time.monotonic() < limit:
            time.sleep(0.02)
        assert self._port.value, "drip server did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port.value}/fhir"

    @property
    def accepted(self) -> int:
        return self._accepted.value

    @property
    def hung_up(self) -> int:
        return self._hung_up.value

    def close(self) -> None:
        self.stop.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@pytest.fixture
def drip():
    server = DripServer()
    yield server
    server.close()


def _process_threads() -> int:
    """Every thread of this process, as the kernel counts them (Python's view elsewhere)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        return threading.active_count()


def _until(predicate, stop_at: float) -> bool:
    """Poll ``predicate`` until it holds or the monotonic clock reaches ``stop_at``."""
    while time.monotonic() < stop_at:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _wait_for(predicate, seconds: float) -> bool:
    """Liveness, not speed: poll until ``predicate`` holds or a generous bound passes."""
    return _until(predicate, time.monotonic() + seconds)


def test_a_dripping_server_holds_no_thread_past_the_deadline_plus_one_socket_timeout(drip):
    deadline, socket_timeout = 1.5, 1.0
    baseline = _process_threads()
    client = FhirClient(drip.url, allowed_servers=[drip.url],
                        limits=FhirClientLimits(timeout_seconds=socket_timeout))
    queries = {f"k{i}": f"Observation?patient=p&n={i}" for i in range(6)}
    started = time.monotonic()
    with client, pytest.raises(FhirFetchError):
        client.fetch_many(queries, deadline_seconds=deadline, max_workers=6)
    assert drip.accepted == 6
    stop_at = started + deadline + socket_timeout + SCHEDULING_MARGIN
    back = _until(lambda: _process_threads() == baseline, stop_at)
    assert back, (f"{_process_threads()} threads, baseline {baseline}, "
                  f"{time.monotonic() - started:.2f} s after the fetch started",
                  [t.name for t in threading.enumerate()])
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
        deadline, socket_timeout = 1.0, 1.0
        baseline = _process_threads()
        client = FhirClient(server.url, allowed_servers=[server.url],
                            limits=FhirClientLimits(timeout_seconds=socket_timeout))
        started = time.monotonic()
        with client, pytest.raises(FhirFetchError):
            client.fetch_many({"a": "Patient/p"}, deadline_seconds=deadline)
        stop_at = started + deadline + socket_timeout + SCHEDULING_MARGIN
        assert _until(lambda: _process_threads() == baseline, stop_at), [t.name for t in threading.enumerate()]
        assert not server.stop.is_set()
    finally:
        server.close()
