"""Run ``backpain-cds serve`` as a real gunicorn process on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tools.harness.servers import free_port


@dataclass
class LiveService:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(config_text: str, workdir: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                  public_base_url: str | None = None, serve_args: tuple[str, ...] = (),
                  new_session: bool = False) -> LiveService:
    """Write the config, start gunicorn, wait for /healthz (30 s at most).

    ``public_base_url`` defaults to the service's own URL (set it to a proxy's URL);
    ``serve_args`` are added to the ``serve`` command line (e.g. ``--migrate``);
    ``new_session`` starts it in a process group of its own (gunicorn's master and workers), so
    a test can signal the whole group (``os.killpg(service.process.pid, ...)``).
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = workdir / "config.toml"
    config.write_text(f'public_base_url = "{public_base_url or base_url}"\n' + config_text)
    log_path = workdir / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backpain_cds.cli", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), *serve_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            env={**os.environ, **(env or {})}, start_new_session=new_session,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if requests.get(base_url + "/healthz", timeout=1).status_code == 200:
                return LiveService(base_url, process, log_path)
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or listening (gunicorn's master binds first) while the worker
            # still boots: on a fresh venv without .pyc files a worker can take seconds.
            pass
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=5)
    raise RuntimeError(f"service did not become healthy:\n{log_path.read_text(errors='replace')}")


def stop_service(service: LiveService) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=5)
