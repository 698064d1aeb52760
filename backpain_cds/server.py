"""Run the app under gunicorn (``backpain-cds serve``)."""

from __future__ import annotations

import gc
import typing as t

from gunicorn.app.base import BaseApplication

from backpain_cds.settings import Settings


class _GunicornApp(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, t.Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> t.Any:
        from backpain_cds.app import create_app

        app = create_app(self._settings)
        # Never share pooled database connections across the fork.
        app.extensions["backpain_cds"]["store"].engine.dispose()
        # Knowledge and indexes are built once before forking; freeze them out of the cyclic
        # collector so workers neither rescan nor copy-on-write them.
        gc.collect()
        gc.freeze()
        return app


def run_gunicorn(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Serve until stopped; configuration errors surface before any worker forks."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "preload_app": True,  # load knowledge once, fail fast on bad config
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "forwarded_allow_ips": "127.0.0.1",
        "limit_request_line": 8190,
    }
    _GunicornApp(settings, options).run()
    return 0
