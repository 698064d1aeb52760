"""Run the app under gunicorn (``backpain-cds serve``)."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import typing as t

from flask import Flask
from gunicorn.app.base import BaseApplication

from backpain_cds.gunicorn_worker import BufferingThreadWorker
from backpain_cds.warm import enabled as warm_start_enabled
from backpain_cds.warm import warm_up

#: prometheus_client's switch to multiprocess mode (read when prometheus_client is imported)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_directory() -> t.Iterator[str]:
    """A fresh private directory (mode 0700) for the workers' metric files, as
    ``PROMETHEUS_MULTIPROC_DIR``, removed when the server stops.

    Enter it before ``backpain_cds.metrics`` is first imported (prometheus_client chooses its
    value store then), so before the app is built and before gunicorn forks. A directory of
    its own per start: files left by an earlier run would be summed into this one's counts.
    """
    owner = os.getpid()
    path = tempfile.mkdtemp(prefix="backpain-cds-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        # a gunicorn worker leaves by SystemExit through this block too: only the master cleans up
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous


def _child_exit(_server: t.Any, worker: t.Any) -> None:
    """gunicorn hook, in the master: a worker is gone (its counter files stay and still count)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class _GunicornApp(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, t.Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # control_socket_disable exists from gunicorn 23 on
                self.cfg.set(key, value)

    def load(self) -> t.Any:
        return self._app


def gunicorn_options(app: Flask, *, host: str, port: int, workers: int) -> dict[str, t.Any]:
    """gunicorn's settings for ``serve`` (hooks that need the running master excepted)."""
    settings = app.extensions["backpain_cds"]["settings"]
    limits = settings.limits
    binds = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    metrics_bind = settings.metrics.bind
    if metrics_bind:  # a second listener that serves /metrics only (backpain_cds.app)
        binds.append(metrics_bind)
    options = {
        "bind": binds,
        "workers": workers,
        # BACKPAIN_CDS_WORKER_CLASS=gthread brings back gunicorn's stock worker (for
        # bench/slow_clients.py, which compares the two); not a deployment setting.
        "worker_class": os.environ.get(
            "BACKPAIN_CDS_WORKER_CLASS", "backpain_cds.gunicorn_worker.BufferingThreadWorker"
        ),
        "threads": 4,
        "worker_connections": 1000,  # per worker, slow ones included; then accept pauses
        "preload_app": True,  # load knowledge once, fail fast on bad config
        "timeout": 30,
        # SIGTERM: stop accepting, finish the calls in flight, exit 0 (README "Scaling out")
        "graceful_timeout": limits.shutdown_grace_seconds,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # X-Forwarded-Proto (the scheme) and forwarder headers are believed only from these
        # peers: the reverse proxies ([server] forwarded_allow_ips; loopback by default)
        "forwarded_allow_ips": settings.server.gunicorn_forwarded_allow_ips(),
        "limit_request_line": 8190,
        # gunicorn's control socket lives at one fixed path per user: several instances on a
        # host would fight over it, and nothing here uses it.
        "control_socket_disable": True,
        "child_exit": _child_exit,
    }
    return options


def run_gunicorn(app: Flask, *, host: str, port: int, workers: int) -> int:
    """Serve a built app until stopped (gunicorn forks its workers from this process)."""
    warm = warm_start_enabled()
    if warm:  # build the lazy lookups once, before the fork, so every worker shares them
        warm_up(app, where="master")
    # Never share pooled database connections across the fork.
    app.extensions["backpain_cds"]["store"].engine.dispose()
    # Knowledge and indexes are built once before forking; freeze them out of the cyclic
    # collector so workers neither rescan nor copy-on-write them.
    gc.collect()
    gc.freeze()
    # Requests are read whole in each worker's event loop before a thread gets them, so slow
    # clients cost a buffer, not a thread (backpain_cds.gunicorn_worker; README "Serving").
    limits = app.extensions["backpain_cds"]["settings"].limits
    BufferingThreadWorker.max_body_bytes = limits.max_body_bytes
    BufferingThreadWorker.request_read_seconds = limits.request_read_seconds
    options = gunicorn_options(app, host=host, port=port, workers=workers)
    if warm:
        # In each worker, before it accepts: its own database connection and one more
        # synthetic call (per-process state the fork does not carry).
        options["post_fork"] = lambda _server, _worker: warm_up(app, where="worker")
    _GunicornApp(app, options).run()
    return 0
