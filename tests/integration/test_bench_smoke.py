"""Smoke test of the benchmark suite (bench/): data generator and a tiny in-process run.

Figures are not asserted (they belong to bench/README.md); only that the benchmarks run and
that the generated record is what they claim: exactly N resources of one patient, with cards.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import data
        import hook_latency

        yield data, hook_latency
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("size", [10, 100, 777])
def test_synthetic_record_has_exact_size_and_one_patient(bench_modules, size):
    data, _ = bench_modules
    now = datetime(2026, 1, 15, 12, tzinfo=UTC)
    record = data.build_record(size, "synthetic", now)
    assert len(record) == size
    refs = set()
    for resource in record:
        for holder in ("subject", "patient"):
            ref = (resource.get(holder) or {}).get("reference")
            if ref and ref.startswith("Patient/"):
                refs.add(ref)
    assert refs == {f"Patient/{data.PATIENT_ID}"}
    assert sum(r["resourceType"] == "Patient" for r in record) == 1


def test_hook_latency_tiny_run(bench_modules, capsys):
    _, hook_latency = bench_modules
    rc = hook_latency.main(["--short", "--sizes", "120", "--iterations", "2", "--budget", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "data source: synthetic" in out
    assert "gcsf-bone-pain" in out  # the scenario mixed into the record fires its card
