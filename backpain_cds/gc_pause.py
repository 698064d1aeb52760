"""Pause Python's cyclic garbage collector while requests are being handled.

A hook call allocates a large parsed body (tens of thousands of dicts) that reference
counting frees on its own; letting the cyclic collector run in the middle of that scans every
one of them again and again, which cost as much as the parse itself at 20,000 resources
(bench/README.md). Workers run several threads, so the collector is switched off while at
least one request is in flight and back on when none is; under unbroken load a young
generation collection still runs every ``collect_every`` requests.
"""

from __future__ import annotations

import gc
import threading
import typing as t

WsgiApp = t.Callable[[dict[str, t.Any], t.Callable[..., t.Any]], t.Iterable[bytes]]


class GcPauseMiddleware:
    """WSGI middleware: no cyclic GC while a request is in flight."""

    def __init__(self, app: WsgiApp, *, collect_every: int = 500) -> None:
        self.app = app
        self.collect_every = collect_every
        self._lock = threading.Lock()
        self._in_flight = 0
        self._we_disabled = False
        self._since_collect = 0

    def __call__(self, environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Iterable[bytes]:
        self._enter()
        try:
            return self.app(environ, start_response)
        finally:
            self._exit()

    def _enter(self) -> None:
        with self._lock:
            if self._in_flight == 0 and gc.isenabled():
                gc.disable()
                self._we_disabled = True
            self._in_flight += 1

    def _exit(self) -> None:
        collect = False
        with self._lock:
            self._in_flight -= 1
            self._since_collect += 1
            if self._in_flight == 0 and self._we_disabled:
                gc.enable()
                self._we_disabled = False
                self._since_collect = 0
            elif self._since_collect >= self.collect_every:
                self._since_collect = 0
                collect = True
        if collect:
            gc.collect(0)
