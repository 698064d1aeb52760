"""HTTP throughput of ``POST /cds-services/back-pain-after-chemo`` under gunicorn, on loopback.

    python bench/http_throughput.py                  # 2 workers; small (50) and large (1,000) bodies
    python bench/http_throughput.py --short          # CI smoke mode

The service runs as ``backpain-cds serve --workers 2`` (gunicorn, gthread, 4 threads per
worker, preloaded app, SQLite audit store in a temp dir, development mode: unsigned calls on
loopback) via ``tools/harness/live_service.start_service``. The load generator is closed-loop:
``--concurrency`` client threads, each with its own keep-alive ``http.client`` connection,
send the next request as soon as the previous answer arrived, until the fixed request count
is reached or the time cap passes (whichever first). Every request gets its own
``hookInstance``. The first ``--warmup`` requests of each phase are not counted.

The client runs on the same machine as the server (2 cores here): its CPU time is taken
from the server, so the figures are a lower bound for a server with a remote client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402  (also puts the repo root on sys.path)
from hook_latency import machine, pct  # noqa: E402

from tools.harness.live_service import start_service, stop_service  # noqa: E402

PATH = f"/cds-services/{data.SERVICE_ID}"
TARGET_RPS = 300.0
TARGET_P99_MS = 100.0


@dataclass
class Phase:
    name: str
    size: int
    requests: int
    time_cap: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    client_cpu: float = 0.0


def make_bodies(raw: bytes, size: int, count: int) -> list[bytes]:
    """``count`` copies of the body, each with its own hookInstance (same length)."""
    marker = f'"bench-{size}"'.encode()
    assert marker in raw, "body built without the bench hookInstance marker"
    return [raw.replace(marker, b'"' + str(uuid.uuid4()).encode() + b'"', 1) for _ in range(count)]


def run_phase(host: str, port: int, phase: Phase, bodies: list[bytes], concurrency: int, warmup: int) -> None:
    lock = threading.Lock()
    state = {"next": 0}
    total = warmup + phase.requests
    stop_at = [0.0]
    lat: list[float] = []
    errors: list[str] = []

    def ticket() -> int | None:
        with lock:
            i = state["next"]
            if i >= total:
                return None
            if i >= warmup and time.monotonic() > stop_at[0]:
                return None
            state["next"] = i + 1
            return i

    start_event = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        start_event.wait()
        while True:
            i = ticket()
            if i is None:
                break
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - t0
                ok = response.status == 200 and payload.startswith(b'{"cards":')
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                elapsed, ok, payload = time.perf_counter() - t0, False, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                response = None
            with lock:
                if i == warmup:
                    measure_start[0] = time.perf_counter()
                if i >= warmup:
                    if ok:
                        lat.append(elapsed)
                    else:
                        status = response.status if response is not None else "exception"
                        errors.append(f"{status}: {payload[:200]!r}")
        conn.close()

    measure_start = [0.0]
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for th in threads:
        th.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    stop_at[0] = time.monotonic() + phase.time_cap
    t_begin = time.perf_counter()
    start_event.set()
    for th in threads:
        th.join(timeout=phase.time_cap + 60)
    t_end = time.perf_counter()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    phase.elapsed = t_end - (measure_start[0] or t_begin)
    phase.latencies = lat
    phase.errors = len(errors)
    phase.error_samples = errors[:3]
    phase.client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8 = 2 workers x 4 threads)")
    parser.add_argument("--small", type=int, default=50, help="resources in the small request")
    parser.add_argument("--large", type=int, default=1000, help="resources in the large request")
    parser.add_argument("--small-requests", type=int, default=None, help="default 3000 (short: 200)")
    parser.add_argument("--large-requests", type=int, default=None, help="default 400 (short: 40)")
    parser.add_argument("--time-cap", type=float, default=None, help="seconds per phase (default 30; short: 10)")
    parser.add_argument("--warmup", type=int, default=None, help="uncounted requests per phase (default 40; short: 10)")
    parser.add_argument("--source", choices=("auto", "synthea", "synthetic"), default=None)
    parser.add_argument("--prefetch", choices=data.PREFETCH_MODES, default="once",
                        help="how the record fills the prefetch keys (see bench/data.py; default: each resource once)")
    parser.add_argument("--database-url", default=None,
                        help="database_url for the service (default: SQLite file in a temp dir, as `serve` does)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    short = args.short
    small_n = args.small_requests or (200 if short else 3000)
    large_n = args.large_requests or (40 if short else 400)
    cap = args.time_cap or (10.0 if short else 30.0)
    warmup = args.warmup if args.warmup is not None else (10 if short else 40)
    source = data.resolve_source(args.source or ("synthetic" if short else "auto"))

    phases = [Phase("small", args.small, small_n, cap), Phase("large", args.large, large_n, cap)]
    bodies = {}
    for ph in phases:
        b = data.body_for(ph.size, source, prefetch=args.prefetch)
        bodies[ph.name] = (b, make_bodies(b.raw, ph.size, min(ph.requests + warmup, 500)))

    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    print(f"[http_throughput] starting gunicorn with {args.workers} workers in {workdir} ...", file=sys.stderr, flush=True)
    config = f'database_url = "{args.database_url}"\n' if args.database_url else ""
    service = start_service(config, workdir, workers=args.workers,
                            env={"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
                            # a given database (PostgreSQL) is migrated first, as an operator would
                            serve_args=("--migrate",) if args.database_url else ())
    try:
        host, port = "127.0.0.1", int(service.base_url.rsplit(":", 1)[1])
        for ph in phases:
            print(f"[http_throughput] {ph.name}: {ph.requests} requests, cap {ph.time_cap:g} s ...", file=sys.stderr, flush=True)
            run_phase(host, port, ph, bodies[ph.name][1], args.concurrency, warmup)
        metrics = _stage_metrics(host, port)
    finally:
        stop_service(service)
    metrics.append(_calls_per_worker(service.log()))
    sent = sum(warmup + len(ph.latencies) + ph.errors for ph in phases)
    metrics.append(f"hook calls the client sent: {sent} (warm-up included)")
    server_errors = [line for line in service.log().splitlines() if "Traceback" in line or "[ERROR]" in line]

    lines = [f"http_throughput  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}",
             f"data source: {source}, prefetch mode {args.prefetch}; database {args.database_url or 'SQLite file (default)'}; gunicorn {args.workers} workers x 4 threads (gthread), "
             f"{args.concurrency} closed-loop client threads (http.client keep-alive) ON THE SAME MACHINE",
             f"{'phase':<6} {'resources':>9} {'body KiB':>8} {'done':>5} {'errors':>6} {'secs':>6} {'req/s':>7}"
             f" {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'client CPU%':>11}"]
    for ph in phases:
        b = bodies[ph.name][0]
        lat = ph.latencies
        done = len(lat) + ph.errors
        rps = done / ph.elapsed if ph.elapsed > 0 else 0.0
        lines.append(
            f"{ph.name:<6} {ph.size:>9} {len(b.raw) / 1024:>8.0f} {done:>5} {ph.errors:>6} {ph.elapsed:>6.1f} {rps:>7.1f}"
            f" {pct(lat, 50) * 1000:>7.1f} {pct(lat, 95) * 1000:>7.1f} {pct(lat, 99) * 1000:>7.1f}"
            f" {max(lat, default=0) * 1000:>7.1f} {100 * ph.client_cpu / max(ph.elapsed, 1e-9):>10.0f}%"
        )
        for sample in ph.error_samples:
            lines.append(f"    error: {sample}")
    small = phases[0]
    done = len(small.latencies) + small.errors
    rps = done / small.elapsed if small.elapsed else 0.0
    p99 = pct(small.latencies, 99) * 1000
    ok = rps >= TARGET_RPS and small.errors == 0 and p99 < TARGET_P99_MS
    lines.append(f"target ({small.size} resources, {args.workers} workers): >= {TARGET_RPS:.0f} req/s, 0 errors, "
                 f"p99 < {TARGET_P99_MS:.0f} ms -> {rps:.0f} req/s, {small.errors} errors, p99 {p99:.1f} ms "
                 f"-> {'MET' if ok else 'NOT MET'}")
    if metrics:
        lines.append("server side (/metrics):")
        lines.extend("  " + m for m in metrics)
    if server_errors:
        lines.append(f"server log: {len(server_errors)} error lines, first: {server_errors[0][:200]}")
    data.emit_report(lines, args.output)
    return 0


def _stage_metrics(host: str, port: int) -> list[str]:
    """Hook calls and mean per-stage latency from one scrape of /metrics (summed over every
    worker by prometheus_client's multiprocess mode)."""
    try:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/metrics", headers={"Connection": "close"})
        text = conn.getresponse().read().decode()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return [f"/metrics unavailable: {exc!r}"]
    calls: dict[str, float] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        base = name.split("{")[0]
        if base == "backpain_cds_hook_calls_total":
            status = name.split('status="', 1)[1].split('"', 1)[0]
            calls[status] = calls.get(status, 0.0) + v
        elif base in ("backpain_cds_stage_seconds_sum", "backpain_cds_stage_seconds_count"):
            stage = name.split('stage="', 1)[1].split('"', 1)[0]
            into = sums if base.endswith("_sum") else counts
            into[stage] = into.get(stage, 0.0) + v
    order = ("auth", "parse", "prefetch", "fetch", "mapping", "assessment", "render", "storage")
    return [
        "hook calls by status (one scrape, all workers): "
        + ", ".join(f"{status}: {n:.0f}" for status, n in sorted(calls.items()) if n),
        "mean ms per stage (all workers, both phases, incl. GIL waits): " + ", ".join(
            f"{stage} {1000 * sums[stage] / counts[stage]:.2f}" for stage in order if counts.get(stage)),
    ]


def _calls_per_worker(log: str) -> str:
    """Hook calls answered per worker, from the pid of each "hook call answered" log line."""
    per_pid: dict[int, int] = {}
    for line in log.splitlines():
        if line.startswith("{") and '"hook call answered"' in line:
            pid = json.loads(line).get("pid")
            per_pid[pid] = per_pid.get(pid, 0) + 1
    total = sum(per_pid.values()) or 1
    return "calls per worker (log): " + ", ".join(
        f"pid {pid}: {n} ({100 * n / total:.0f}%)" for pid, n in sorted(per_pid.items(), key=lambda kv: str(kv[0])))


if __name__ == "__main__":
    import signal

    # run_short.sh's `timeout` sends SIGTERM: unwind so the servers we started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    raise SystemExit(main())
