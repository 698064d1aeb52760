"""How many slow clients the service withstands alone, while normal calls stay under 1 s p99.

    python bench/slow_clients.py                 # buffering worker vs stock gthread, N up to 1500
    python bench/slow_clients.py --short         # CI smoke mode (small N, few calls)

``backpain-cds serve --workers 2`` (SQLite, development mode) on loopback. For each N, N
connections are opened and kept slow for the whole step: half send a request head one byte
per second, half send a head declaring ``Content-Length: 100000`` and then one body byte per
second. While they last, one client thread sends ``--calls`` normal requests in turn (a
``/healthz`` and a 50-resource patient-view hook call, each on a new connection, 5 s client
timeout; a timeout counts as 5 s) and the p99 of those is reported. ``withstands`` is the
largest N whose p99 stayed under 1 s. ``BACKPAIN_CDS_WORKER_CLASS=gthread`` runs gunicorn's
stock worker for comparison (the state before issue 9).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402  (also puts the repo root on sys.path)
from hook_latency import machine, pct  # noqa: E402

from tools.harness.live_service import start_service, stop_service  # noqa: E402

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"
BODY_HEAD = (b"POST /cds-services/back-pain-after-chemo HTTP/1.1\r\nHost: x\r\n"
             b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
TIMEOUT = 5.0


class Slow:
    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.socks: list[tuple[socket.socket, bytes, int]] = []
        self.opened = 0

    def open(self, n: int) -> None:
        for i in range(n):
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                continue
            sock.setblocking(False)
            if i % 2:
                try:
                    sock.send(BODY_HEAD)
                except OSError:
                    pass
                self.socks.append((sock, b"{" + b" " * 99_999, 0))
            else:
                self.socks.append((sock, HEAD, 0))
            self.opened += 1
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        while not self.stop.wait(1.0):
            for i, (sock, payload, pos) in enumerate(self.socks):
                if pos < len(payload):
                    try:
                        sock.send(payload[pos:pos + 1])
                        self.socks[i] = (sock, payload, pos + 1)
                    except OSError:
                        pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock, _, _ in self.socks:
            sock.close()


def _timed(port: int, method: str, path: str, body: bytes | None) -> float:
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            return TIMEOUT
    except (OSError, http.client.HTTPException):
        return TIMEOUT
    return time.perf_counter() - started


def run(worker: str, steps: list[int], calls: int, raw: bytes) -> list[tuple[int, int, float, float]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-slow-{worker}-"))
    env = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    if worker == "gthread":
        env["BACKPAIN_CDS_WORKER_CLASS"] = "gthread"
    service = start_service("[limits]\nrequest_read_seconds = 600\n", workdir, workers=2, env=env)
    port = int(service.base_url.rsplit(":", 1)[1])
    rows = []
    try:
        for n in steps:
            slow = Slow(port)
            slow.open(n)
            time.sleep(2.0)  # every slow connection accepted and dribbling
            lat = []
            for i in range(calls):
                if i % 2:
                    body = raw.replace(b'"bench-50"', f'"{uuid.uuid4()}"'.encode(), 1)
                    lat.append(_timed(port, "POST", f"/cds-services/{data.SERVICE_ID}", body))
                else:
                    lat.append(_timed(port, "GET", "/healthz", None))
            slow.close()
            rows.append((n, slow.opened, pct(lat, 50), pct(lat, 99)))
            print(f"[slow_clients] {worker} N={n}: p50 {pct(lat, 50) * 1000:.0f} ms p99 {pct(lat, 99) * 1000:.0f} ms",
                  file=sys.stderr, flush=True)
            time.sleep(1.0)
    finally:
        stop_service(service)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", default=None, help="comma-separated N (default 0,8,64,256,1000,1500)")
    parser.add_argument("--calls", type=int, default=None, help="normal calls per step (default 40; short 10)")
    parser.add_argument("--workers-classes", default=None, help="default buffering,gthread (short: buffering)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = [int(s) for s in (args.steps or ("0,16" if args.short else "0,8,64,256,1000,1500")).split(",")]
    calls = args.calls or (10 if args.short else 40)
    raw = data.body_for(50, "synthetic").raw
    lines = [f"slow_clients  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}",
             "gunicorn 2 workers x 4 threads, SQLite, dev mode; slow: half heads at 1 byte/s, half "
             "Content-Length 100000 bodies at 1 byte/s; normal: /healthz + 50-resource hook calls, "
             f"new connection each, {TIMEOUT:g} s timeout counted as {TIMEOUT:g} s; client on the same machine",
             f"{'worker':<10} {'N slow':>7} {'opened':>7} {'p50 ms':>8} {'p99 ms':>8}"]
    classes = args.workers_classes or ("buffering" if args.short else "buffering,gthread")
    for worker in classes.split(","):
        rows = run(worker, steps, calls, raw)
        ok = [n for n, _opened, _p50, p99 in rows if p99 < 1.0]
        for n, opened, p50, p99 in rows:
            lines.append(f"{worker:<10} {n:>7} {opened:>7} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f}")
        lines.append(f"{worker:<10} withstands N = {max(ok) if ok else 0} slow connections with normal p99 < 1 s")
    data.emit_report(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
