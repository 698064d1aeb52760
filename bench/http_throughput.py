"""HTTP throughput of ``POST /cds-services/back-pain-after-chemo`` under gunicorn, on loopback.

    python bench/http_throughput.py                  # 2 workers; small (50) and large (1,000) bodies
    python bench/http_throughput.py --short          # CI smoke mode
    python bench/http_throughput.py --postgres-url postgresql+psycopg://u:pw@127.0.0.1/db
                                   # the same on SQLite and on PostgreSQL, side by side

The service runs as ``backpain-cds serve --workers 2`` (gunicorn, gthread, 4 threads per
worker, preloaded app, SQLite audit store in a temp dir, development mode: unsigned calls on
loopback) via ``tools/harness/live_service.start_service``. The load generator is closed-loop:
``--concurrency`` client threads, each with its own keep-alive ``http.client`` connection,
send the next request as soon as the previous answer arrived, until the fixed request count
is reached or the time cap passes (whichever first). Every request gets its own
``hookInstance``. The first ``--warmup`` requests of each phase are not counted.

PostgreSQL: with ``--postgres-url`` (or ``$BACKPAIN_CDS_BENCH_POSTGRES_URL``) the phases run
once on SQLite and once on PostgreSQL, in a fresh schema of that database (created, migrated
by ``serve --migrate``, dropped at the end), and the report gives both and their ratio.
Without a URL only SQLite runs (CI's short mode).

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
#: issue 12 (with audit, snooze look-ups and metrics, on PostgreSQL; issue "Performance" asked 300)
TARGET_RPS = 600.0
TARGET_P99_MS = 100.0
ENV_POSTGRES_URL = "BACKPAIN_CDS_BENCH_POSTGRES_URL"


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
    server_cpu: float | None = None  #: CPU seconds of gunicorn's workers during the phase (Linux)


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
    parser.add_argument("--postgres-url", default=None,
                        help=f"also run on this PostgreSQL database, in a fresh schema (default ${ENV_POSTGRES_URL}; "
                             "without either only SQLite runs)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    short = args.short
    small_n = args.small_requests or (200 if short else 3000)
    large_n = args.large_requests or (40 if short else 400)
    cap = args.time_cap or (10.0 if short else 30.0)
    warmup = args.warmup if args.warmup is not None else (10 if short else 40)
    source = data.resolve_source(args.source or ("synthetic" if short else "auto"))

    bodies = {}
    for name, size, count in (("small", args.small, small_n), ("large", args.large, large_n)):
        b = data.body_for(size, source, prefetch=args.prefetch)
        bodies[name] = (b, make_bodies(b.raw, size, min(count + warmup, 500)))

    postgres_url = args.postgres_url or os.environ.get(ENV_POSTGRES_URL) or None
    engines = [("SQLite" if not args.database_url else "given", args.database_url)]
    if postgres_url:
        engines.append(("PostgreSQL", postgres_url))
    header = [f"http_throughput  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}",
              f"data source: {source}, prefetch mode {args.prefetch}; gunicorn {args.workers} workers x 4 threads "
              f"(gthread), {args.concurrency} closed-loop client threads (http.client keep-alive) ON THE SAME MACHINE"]
    results = []
    for label, url in engines:
        fresh = _FreshSchema(url) if label == "PostgreSQL" else None
        try:
            phases = [Phase("small", args.small, small_n, cap), Phase("large", args.large, large_n, cap)]
            lines = run_engine(label, fresh.url if fresh else url, args, phases, bodies, warmup)
        finally:
            if fresh:
                fresh.drop()
        results.append((label, phases))
        header.extend(lines)
    if len(results) == 2:
        header.extend(_comparison(results))
    data.emit_report(header, args.output)
    return 0


def run_engine(label: str, database_url: str | None, args: argparse.Namespace, phases: list[Phase],
               bodies: dict, warmup: int) -> list[str]:
    """One service on one database, every phase; the report's lines for it."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    print(f"[http_throughput] {label}: starting gunicorn with {args.workers} workers in {workdir} ...",
          file=sys.stderr, flush=True)
    config = f'database_url = "{database_url}"\n' if database_url else ""
    service = start_service(config, workdir, workers=args.workers,
                            env={"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
                            # a given database (PostgreSQL) is migrated first, as an operator would
                            serve_args=("--migrate",) if database_url else ())
    try:
        host, port = "127.0.0.1", int(service.base_url.rsplit(":", 1)[1])
        _wait_for_workers(service, args.workers)
        for ph in phases:
            print(f"[http_throughput] {label} {ph.name}: {ph.requests} requests, cap {ph.time_cap:g} s ...",
                  file=sys.stderr, flush=True)
            cpu_before = _server_cpu(service.process.pid)
            run_phase(host, port, ph, bodies[ph.name][1], args.concurrency, warmup)
            cpu_after = _server_cpu(service.process.pid)
            if cpu_before is not None and cpu_after is not None:
                ph.server_cpu = cpu_after - cpu_before
        metrics = _stage_metrics(host, port)
    finally:
        stop_service(service)
    metrics.append(_calls_per_worker(service.log()))
    sent = sum(warmup + len(ph.latencies) + ph.errors for ph in phases)
    metrics.append(f"hook calls the client sent: {sent} (warm-up included)")
    server_errors = [line for line in service.log().splitlines() if "Traceback" in line or "[ERROR]" in line]

    shown = "PostgreSQL (fresh schema)" if label == "PostgreSQL" else (database_url or "SQLite file (default)")
    lines = [f"--- {label}: database {_redact(shown)}",
             f"{'phase':<6} {'resources':>9} {'body KiB':>8} {'done':>5} {'errors':>6} {'secs':>6} {'req/s':>7}"
             f" {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'client CPU%':>11}"]
    for ph in phases:
        b = bodies[ph.name][0]
        lat = ph.latencies
        lines.append(
            f"{ph.name:<6} {ph.size:>9} {len(b.raw) / 1024:>8.0f} {_done(ph):>5} {ph.errors:>6} {ph.elapsed:>6.1f}"
            f" {_rps(ph):>7.1f} {pct(lat, 50) * 1000:>7.1f} {pct(lat, 95) * 1000:>7.1f} {pct(lat, 99) * 1000:>7.1f}"
            f" {max(lat, default=0) * 1000:>7.1f} {100 * ph.client_cpu / max(ph.elapsed, 1e-9):>10.0f}%"
        )
        for sample in ph.error_samples:
            lines.append(f"    error: {sample}")
    for ph in phases:
        if ph.server_cpu is not None:
            per_call = 1000 * ph.server_cpu / max(warmup + _done(ph), 1)
            lines.append(f"{ph.name}: server CPU {per_call:.2f} ms per call (gunicorn workers, warm-up included) "
                         f"-> at most {1000 / per_call:.0f} calls/s per fully used core")
    small = phases[0]
    rps, p99 = _rps(small), pct(small.latencies, 99) * 1000
    ok = rps >= TARGET_RPS and small.errors == 0 and p99 < TARGET_P99_MS
    lines.append(f"target ({label}, {small.size} resources, {args.workers} workers): >= {TARGET_RPS:.0f} req/s, "
                 f"0 errors, p99 < {TARGET_P99_MS:.0f} ms -> {rps:.0f} req/s, {small.errors} errors, p99 {p99:.1f} ms "
                 f"-> {'MET' if ok else 'NOT MET'}")
    if metrics:
        lines.append("server side (/metrics):")
        lines.extend("  " + m for m in metrics)
    if server_errors:
        lines.append(f"server log: {len(server_errors)} error lines, first: {server_errors[0][:200]}")
    return lines


def _server_cpu(master: int) -> float | None:
    """CPU seconds (user + system) used so far by the gunicorn master's children, the workers
    (Linux /proc; None elsewhere). The PostgreSQL server's own CPU is not in it."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        total = 0.0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        return total
    except (OSError, ValueError, IndexError):
        return None


def _wait_for_workers(service, workers: int, limit: float = 20.0) -> None:
    """Until every worker has warmed up (its "warm-up done" log line), 20 s at most.

    /healthz answers as soon as one worker is up; the client's kept-alive connections opened
    then would all stay with that worker (one GIL: about one core) while the other warms up (a
    PostgreSQL connection takes longer than a SQLite file), and the run would measure that."""
    if os.environ.get("BACKPAIN_CDS_WARM_START") == "0":
        return  # no warm-up, no line to wait for
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        warmed = [line for line in service.log().splitlines()
                  if '"warm-up done"' in line and '"reason":"worker"' in line]
        if len(warmed) >= workers:
            return
        time.sleep(0.05)
    print(f"[http_throughput] not every worker logged its warm-up within {limit:g} s; going on",
          file=sys.stderr, flush=True)


def _done(ph: Phase) -> int:
    return len(ph.latencies) + ph.errors


def _rps(ph: Phase) -> float:
    return _done(ph) / ph.elapsed if ph.elapsed > 0 else 0.0


def _comparison(results: list[tuple[str, list[Phase]]]) -> list[str]:
    """PostgreSQL beside SQLite, phase by phase."""
    (a_label, a), (b_label, b) = results
    lines = [f"--- {b_label} / {a_label}"]
    for pa, pb in zip(a, b, strict=True):
        ratio = _rps(pb) / _rps(pa) if _rps(pa) else float("nan")
        lines.append(f"{pa.name:<6} req/s {_rps(pa):.0f} vs {_rps(pb):.0f} ({ratio:.2f}x); "
                     f"p99 {pct(pa.latencies, 99) * 1000:.1f} vs {pct(pb.latencies, 99) * 1000:.1f} ms")
    return lines


def _redact(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user_pw = head.partition("//")
    return f"{scheme}//{user_pw.split(':', 1)[0]}:***@{tail}"


class _FreshSchema:
    """An empty schema of its own in the PostgreSQL database (search_path), dropped afterwards:
    runs do not see each other's rows, nor anyone else's."""

    def __init__(self, url: str) -> None:
        import secrets

        import sqlalchemy as sa

        self.schema = f"bench_{secrets.token_hex(6)}"
        self._admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with self._admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {self.schema}"))
        fresh = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.url = fresh.render_as_string(hide_password=False)

    def drop(self) -> None:
        import sqlalchemy as sa

        with self._admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {self.schema} CASCADE"))
        self._admin.dispose()


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
