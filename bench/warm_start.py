"""First hook call after the service starts vs steady state (issue 13: warm start).

    python bench/warm_start.py            # 5 starts per mode, 1 worker, 50-resource calls
    python bench/warm_start.py --short    # CI smoke mode (1 start per mode, 10 steady calls)
    python bench/warm_start.py --modes signed-cold,signed-warm

Each start runs ``backpain-cds serve --workers 1`` (so the first call is known to reach a
fresh worker) with ``BACKPAIN_CDS_WARM_START=0`` (no warm-up: the state before issue 13) and
with the default warm-up (``backpain_cds.warm.warm_up``: a synthetic call per service in the
master before the fork, then a database connection and a second synthetic call in each worker
before it accepts), each in two auth modes:

* development mode (``cold``, ``warm``): unsigned calls, no trusted client;
* signed mode (``signed-cold``, ``signed-warm``): one ``[[auth.trusted_clients]]`` with a
  ``jwks_url`` served on loopback (``tools.harness.jwt_factory.JwksServer``), every call with
  a fresh ES384 JWT signed outside the timing (new ``jti``, ``aud`` the called URL), as the
  CDS Hooks sandbox sends them. Warm-up then also fetches the key set, runs the JWT
  verification with a throwaway key and compiles the JWT-id statements. The report counts the
  key-set requests made before the first call and during it.

Waiting for readiness uses a bare TCP connect and the worker's log lines, not ``/healthz``, so
no request reaches the worker before the measured one. Every call is a new connection with its
own hookInstance; the figures are client-side wall time on loopback.
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

from tools.harness.jwt_factory import JwksServer, TestSigner  # noqa: E402
from tools.harness.servers import free_port  # noqa: E402

PATH = f"/cds-services/{data.SERVICE_ID}"
MODES = ("cold", "warm", "signed-cold", "signed-warm")
ISS = "https://ehr.bench.example"


def _start(workdir: Path, warm: bool, jwks_url: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / "config.toml"
    text = (f'public_base_url = "http://127.0.0.1:{port}"\n'
            f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n')
    if jwks_url:
        text += f'[[auth.trusted_clients]]\niss = "{ISS}"\njwks_url = "{jwks_url}"\n'
    config.write_text(text)
    env = {**os.environ, "BACKPAIN_CDS_WARM_START": "1" if warm else "0"}
    log_path = workdir / "service.log"
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "backpain_cds.cli", "serve", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    limit = time.monotonic() + 60
    while time.monotonic() < limit:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    # The master listens before the worker has booted: wait for the worker's boot line (and,
    # when warming, for the worker's warm-up to end).
    ready = b'"reason":"worker"' if warm else b"Booting worker"
    while time.monotonic() < limit and ready not in log_path.read_bytes():
        time.sleep(0.02)
    return proc, port


def _call(port: int, raw: bytes, token: str | None) -> float:
    body = raw.replace(b'"bench-50"', f'"{uuid.uuid4()}"'.encode(), 1)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", PATH, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return elapsed


def _run_mode(mode: str, starts: int, calls: int, raw: bytes, signer: TestSigner,
              jwks: JwksServer) -> dict[str, list[float]]:
    signed = mode.startswith("signed")
    out: dict[str, list[float]] = {"first": [], "steady": [], "before": [], "during": []}
    for _ in range(starts):
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-warm-{mode}-"))
        jwks.hits.clear()
        proc, port = _start(workdir, warm=mode.endswith("warm"), jwks_url=jwks.url if signed else None)
        aud = f"http://127.0.0.1:{port}{PATH}"
        try:
            time.sleep(0.5)  # let the worker settle before the call
            before = jwks.total_hits
            token = signer.token(aud) if signed else None
            out["first"].append(_call(port, raw, token))
            out["before"].append(before)
            out["during"].append(jwks.total_hits - before)
            for _ in range(calls):
                out["steady"].append(_call(port, raw, signer.token(aud) if signed else None))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--starts", type=int, default=None, help="starts per mode (default 5; short 1)")
    parser.add_argument("--calls", type=int, default=None, help="steady-state calls after the first (default 30; short 10)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    starts = args.starts or (1 if args.short else 5)
    calls = args.calls or (10 if args.short else 30)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    raw = data.body_for(50, "synthetic").raw
    signer = TestSigner("ES384", iss=ISS)
    results: dict[str, dict[str, list[float]]] = {}
    with JwksServer(signer.jwks()) as jwks:
        for mode in modes:
            results[mode] = _run_mode(mode, starts, calls, raw, signer, jwks)
    lines = [f"warm_start  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}",
             f"1 gunicorn worker, 50-resource patient-view calls, {starts} starts per mode, "
             f"{calls} steady calls per start, new connection per call (client on the same machine); "
             "signed-*: ES384 JWT per call, key set from a loopback jwks_url",
             f"{'mode':<11} {'first call ms (each start)':<34} {'first p50':>9} {'steady p50':>10} "
             f"{'steady p95':>10} {'JWKS GETs before/during 1st':>28}"]
    for mode, r in results.items():
        each = " ".join(f"{f * 1000:.0f}" for f in r["first"])
        fetches = (f"{sum(r['before']):.0f}/{sum(r['during']):.0f}" if mode.startswith("signed") else "-")
        lines.append(f"{mode:<11} {each:<34} {pct(r['first'], 50) * 1000:>9.1f} "
                     f"{pct(r['steady'], 50) * 1000:>10.1f} {pct(r['steady'], 95) * 1000:>10.1f} {fetches:>28}")
    data.emit_report(lines, args.output)
    return 0


if __name__ == "__main__":
    import signal

    # run_short.sh's `timeout` sends SIGTERM: unwind so the servers we started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
