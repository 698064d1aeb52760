"""What the metrics cost per hook call and per scrape, in memory and in multiprocess mode.

    python bench/metrics_overhead.py              # 20,000 calls per mode
    python bench/metrics_overhead.py --short      # CI smoke mode

Records what one answered patient-view call records (``hook_answered`` plus the service's
report: 7 stages, one card, 14 prefetch keys) in a loop, then times ``render()``. In
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, as under ``backpain-cds serve``) each value
is written to a memory-mapped file and a scrape reads and sums the files of every process;
here two processes record (as two gunicorn workers would) and the parent scrapes. Each mode
runs in a fresh interpreter: prometheus_client chooses its value store when it is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _metrics():
    from backpain_cds.app import load_service_catalog
    from backpain_cds.metrics import Metrics
    from fhir_mapping.knowledge import load_knowledge

    knowledge = load_knowledge()
    catalog = load_service_catalog(knowledge)
    return Metrics(catalog, knowledge.actions.override_reasons), catalog


def _record(calls: int) -> dict[str, float]:
    from cds_hooks.service import CallReport

    metrics, catalog = _metrics()
    keys = catalog.resolve("back-pain-after-chemo", "patient-view").prefetch
    report = CallReport(
        "back-pain-after-chemo", "patient-view",
        {"parse": 0.002, "prefetch": 0.0001, "mapping": 0.004, "assessment": 0.0005, "render": 0.0003,
         "storage": 0.002, "auth": 0.001},
        cards=(("gcsf-bone-pain", "info"),), prefetch={k: "supplied" for k in keys},
    )
    started = time.perf_counter()
    for i in range(calls):
        metrics.hook_answered(service_id="back-pain-after-chemo", hook="patient-view", status=200,
                              seconds=0.001 * (i % 50))
        metrics.call_finished(report)
    elapsed = time.perf_counter() - started
    return {"us_per_call": 1e6 * elapsed / calls}


def _scrape(repeats: int) -> dict[str, float]:
    metrics, _ = _metrics()
    started = time.perf_counter()
    for _ in range(repeats):
        text = metrics.render()
    return {"ms_per_scrape": 1000 * (time.perf_counter() - started) / repeats, "bytes": len(text)}


def _child(mode: str, what: str, n: int, directory: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if directory:
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
    out = subprocess.run([sys.executable, __file__, "--child", what, "--n", str(n)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=None, help="calls recorded per process (default 20,000; short 2,000)")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--child", choices=("record", "scrape"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = _record(args.n) if args.child == "record" else _scrape(args.n)
        print(json.dumps(result))
        return 0

    calls = args.calls or (2_000 if args.short else 20_000)
    scrapes = 20 if args.short else 100
    from hook_latency import machine  # noqa: PLC0415  (bench/ is on sys.path when run as a script)

    lines = [f"metrics_overhead  {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  {machine()}",
             f"one answered call = hook_answered + call_finished (7 stages, 1 card, 14 prefetch keys); {calls} calls per process"]
    memory = _child("memory", "record", calls, None)
    memory_scrape = _child("memory", "scrape", scrapes, None)
    lines.append(f"in memory (one process):     {memory['us_per_call']:6.1f} us per call; scrape of a fresh registry "
                 f"{memory_scrape['ms_per_scrape']:.2f} ms")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        workers = [_child("multiprocess", "record", calls, directory) for _ in range(2)]
        scrape = _child("multiprocess", "scrape", scrapes, directory)
        files = len(os.listdir(directory))
    per_call = sum(w["us_per_call"] for w in workers) / len(workers)
    lines.append(f"multiprocess (2 recorders):  {per_call:6.1f} us per call; scrape summing {files} files "
                 f"{scrape['ms_per_scrape']:.2f} ms ({scrape['bytes'] / 1024:.0f} KiB of text)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
