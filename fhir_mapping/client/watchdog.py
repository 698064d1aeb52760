"""Hard time limits on FHIR requests: a socket still in use at its limit is shut down.

Socket timeouts limit each receive, not a whole response: a server that sends its status
line or headers one byte at a time keeps a fetch thread forever. ``request_json`` therefore
sets a limit for the request it makes (:func:`time_limit`), the client's connections report
the socket they read a response from (:class:`_TrackedConnection`), and one watchdog thread
per process shuts down any such socket still registered when its limit passes. The blocked
read then fails at once, the fetch thread ends with a :class:`FhirFetchError`, and no thread
outlives the deadline by more than the watchdog's tick. The watchdog itself runs only while a
socket is registered: it ends when the last one is released or shut down (and is started again
by the next request), so a fetch leaves the process with the threads it had before.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
import typing as t

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["install_tracking", "time_limit"]

_local = threading.local()


class _Watchdog:
    """One daemon thread: shut down each registered socket at its limit unless released."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, when: float) -> int:
        with self._cond:
            ident = next(self._ids)
            self._live[ident] = sock
            heapq.heappush(self._heap, (when, ident))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fhir-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return ident

    def release(self, ident: int) -> None:
        with self._cond:
            if self._live.pop(ident, None) is not None and not self._live:
                self._cond.notify()  # nothing left to watch: let the thread end now

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # released before its limit
                if not self._heap:
                    # idle: end (under the lock, so a concurrent watch() starts a new thread)
                    self._thread = None
                    return
                when, ident = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._live.pop(ident, None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def time_limit(stop_at: float) -> t.Iterator[None]:
    """Within this block, responses read on this thread's tracked connections end by ``stop_at``."""
    previous = getattr(_local, "limit", None)
    _local.limit = stop_at
    _local.watched = []
    try:
        yield
    finally:
        for ident in getattr(_local, "watched", []):
            _WATCHDOG.release(ident)
        _local.limit = previous
        _local.watched = []


def _watch_current(conn: HTTPConnection) -> None:
    stop_at = getattr(_local, "limit", None)
    sock = getattr(conn, "sock", None)
    if stop_at is not None and sock is not None:
        _local.watched.append(_WATCHDOG.watch(sock, stop_at))


class _TrackedConnection(HTTPConnection):
    def getresponse(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        _watch_current(self)
        return super().getresponse(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        _watch_current(self)
        return super().getresponse(*args, **kwargs)


class _TrackedPool(HTTPConnectionPool):
    ConnectionCls = _TrackedConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


def install_tracking(adapter: t.Any) -> None:
    """Make a requests ``HTTPAdapter``'s pools use the tracked connections."""
    adapter.poolmanager.pool_classes_by_scheme = {"http": _TrackedPool, "https": _TrackedHTTPSPool}
