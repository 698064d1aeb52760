"""Run nginx (Debian's package) in the foreground with a site file of deploy/nginx/, for tests.

The site file is included in a minimal ``nginx.conf`` whose temp paths and logs live under the
test's own directory (``-p``), so nothing outside it is written and nothing needs root's
/var/lib/nginx.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import requests


def nginx_binary() -> str | None:
    """The nginx executable (PATH or /usr/sbin), or None when nginx is not installed."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def start_nginx(nginx: str, site: str, workdir: Path, health_url: str) -> subprocess.Popen[bytes]:
    """Start nginx with ``site`` (the text of a conf.d file) and wait until ``health_url``
    answers 200 through it (15 s at most)."""
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "site.conf").write_text(site)
    (prefix / "nginx.conf").write_text(
        "daemon off;\nworker_processes 1;\nerror_log logs/error.log warn;\npid logs/nginx.pid;\n"
        "user root;\nevents { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;\n"
        f"  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;\n"
        f"  include {prefix}/site.conf;\n}}\n")
    with (prefix / "logs" / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    limit = time.monotonic() + 15
    while time.monotonic() < limit:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'logs' / 'stderr.log').read_text(errors='replace')}")
        try:
            if requests.get(health_url, timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=5)
    raise RuntimeError(f"nginx did not answer {health_url}: {(prefix / 'logs' / 'error.log').read_text(errors='replace')}")


def stop_nginx(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
