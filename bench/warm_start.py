"""First hook call after the service starts vs steady state (issue 13: warm start).

    python bench/warm_start.py            # 5 starts per mode, 1 worker, 50-resource calls
    python bench/warm_start.py --short    # CI smoke mode (2 starts per mode)

Each start runs ``backpain-cds serve --workers 1`` (so the first call is known to reach a
fresh worker) with ``BACKPAIN_CDS_WARM_START=0`` (no warm-up: the state before issue 13) and
with the default warm-up (``backpain_cds.server.warm_up``: a synthetic call per service in
the master before the fork, then a database connection and a second synthetic call in each
worker before it accepts). Waiting for readiness uses a bare TCP connect, not ``/healthz``,
so no request reaches the worker before the measured one. Every call is a new connection
with its own hookInstance; the figures are client-side wall time on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402  (also puts the repo root on sys.path)
from hook_latency import machine, pct  # noqa: E402

from tools.harness.servers import free_port  # noqa: E402

PATH = f"/cds-services/{data.SERVICE_ID}"


def _start(workdir: Path, warm: bool) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    config = workdir / "config.toml"
    config.write_text(f'public_base_url = "http://127.0.0.1:{port}"\n'
                      f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n')
    env = {**os.environ, "BACKPAIN_CDS_WARM_START": "1" if warm else "0"}
    log = (workdir / "service.log").open("ab")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "backpain_cds.cli", "serve", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    limit = time.monotonic() + 60
    while time.monotonic() < limit:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "service.log").read_text(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    # the master listens before the worker has booted: wait for the worker's boot line
    while time.monotonic() < limit and b"Booting worker" not in (workdir / "service.log").read_bytes():
        time.sleep(0.02)
    return proc, port, time.monotonic() - started


def _call(port: int, raw: bytes) -> float:
    body = raw.replace(b'"bench-50"', f'"{uuid.uuid4()}"'.encode(), 1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--starts", type=int, default=None, help="starts per mode (default 5; short 2)")
    parser.add_argument("--calls", type=int, default=30, help="steady-state calls after the first")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    starts = args.starts or (2 if args.short else 5)
    raw = data.body_for(50, "synthetic").raw
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for mode in ("cold", "warm"):
        firsts, steady, boots = [], [], []
        for _ in range(starts):
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-warm-{mode}-"))
            proc, port, boot = _start(workdir, warm=mode == "warm")
            try:
                time.sleep(0.5)  # let the worker finish booting (and warming) before the call
                firsts.append(_call(port, raw))
                steady.extend(_call(port, raw) for _ in range(args.calls))
                boots.append(boot)
            finally:
                proc.terminate()
                proc.wait(timeout=15)
        results[mode] = (firsts, steady, boots)
    lines = [f"warm_start  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}",
             f"1 gunicorn worker, 50-resource patient-view calls, {starts} starts per mode, "
             f"{args.calls} steady calls per start, new connection per call (client on the same machine)",
             f"{'mode':<5} {'first call ms (each start)':<34} {'first p50':>9} {'steady p50':>10} {'steady p95':>10}"]
    for mode, (firsts, steady, _boots) in results.items():
        each = " ".join(f"{f * 1000:.0f}" for f in firsts)
        lines.append(f"{mode:<5} {each:<34} {pct(firsts, 50) * 1000:>9.1f} {pct(steady, 50) * 1000:>10.1f}"
                     f" {pct(steady, 95) * 1000:>10.1f}")
    data.emit_report(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
