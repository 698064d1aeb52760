"""The SMART view benchmark runs (figures are not asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_smart_view_bench_short_run(capsys) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import smart_view

        assert smart_view.main(["--short", "--size", "150", "--iterations", "1"]) == 0
    finally:
        sys.path.remove(str(BENCH))
    out = capsys.readouterr().out
    assert "render ms: median" in out
    assert "resources read per render" in out
