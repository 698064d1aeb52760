"""The governance report's statistics: nearest-rank percentiles, the median, ISO weeks, durations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backpain_cds.report.command import ReportError, parse_date, window
from backpain_cds.report.figures import (
    CallRow,
    CardRow,
    FeedbackRow,
    OfferedReason,
    Window,
    build_report,
    human_duration,
    median,
    percentile,
)


@pytest.mark.parametrize("values, p50, p95", [
    ([], None, None),
    ([7.0], 7.0, 7.0),
    ([9.0, 3.0], 3.0, 9.0),  # rank ceil(1.0) = 1 and ceil(1.9) = 2
    ([1.0, 2.0, 3.0], 2.0, 3.0),
    ([float(v) for v in range(1, 21)], 10.0, 19.0),  # 95 % of 20 is rank 19 exactly
    ([float(v) for v in range(1, 101)], 50.0, 95.0),
    ([float(v) for v in range(1, 102)], 51.0, 96.0),  # ceil(50.5) = 51, ceil(95.95) = 96
])
def test_nearest_rank_percentiles(values, p50, p95):
    assert percentile(values, 50) == p50
    assert percentile(values, 95) == p95


def test_percentile_bounds():
    assert percentile([4.0, 1.0], 100) == 4.0
    assert percentile([4.0, 1.0], 1) == 1.0
    for bad in (0, 101, -5):
        with pytest.raises(ValueError):
            percentile([1.0], bad)


@pytest.mark.parametrize("values, expected", [([], None), ([5.0], 5.0), ([1.0, 4.0], 2.5), ([3.0, 1.0, 2.0], 2.0)])
def test_median(values, expected):
    assert median(values) == expected


def test_services_percentiles_and_412_rate_from_rows():
    w = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    report = build_report(w, [], [], [CallRow("s", 412, 8.0, False, 0), CallRow("s", 200, 2.0, True, 1)], {})
    [s] = report.services
    assert (s.calls, s.p50_ms, s.p95_ms, s.rate_412, s.deadline_exceeded, s.cards) == (2, 2.0, 8.0, 0.5, 1, 1)
    assert report.rules == [] and report.unmatched_total == 0


def test_window_weeks_cross_a_year():
    w = Window(datetime(2025, 12, 28, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    assert w.weeks() == ["2025-W52", "2026-W01", "2026-W02"]
    assert Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)).weeks() == ["2026-W10"]


@pytest.mark.parametrize("seconds, text", [(None, "n/a"), (0, "0 s"), (119, "119 s"), (120, "2 min"),
                                           (7199, "120 min"), (7200, "2.0 h"), (172800, "2.0 d"), (-30, "-30 s")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize("value, expected", [
    ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),
    ("2026-03-02T10:00:00Z", datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ("2026-03-02t10:00:00z", datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ("2026-03-02T10:00:00.5+02:00", datetime(2026, 3, 2, 8, 0, 0, 500000, tzinfo=UTC)),
])
def test_dates(value, expected):
    assert parse_date("--since", value) == expected


@pytest.mark.parametrize("value", ["2026-3-2", "2026-03-02T10:00", "2026-03-02T10:00:00", "03/02/2026", "",
                                   "2026-02-29", "2026-03-02T25:00:00Z"])
def test_bad_dates(value):
    with pytest.raises(ReportError) as caught:
        parse_date("--since", value)
    assert "\n" not in str(caught.value)


def test_default_windows():
    now = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert window(None, None, now) == Window(datetime(2026, 3, 1, 12, tzinfo=UTC), now)
    assert window(None, "2026-03-10", now) == Window(datetime(2026, 2, 8, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    assert window("2026-03-30", None, now) == Window(datetime(2026, 3, 30, tzinfo=UTC), now)


def test_override_reasons_offered_received_and_foreign():
    """A reason the card offers counts from 0, one it does not offer is None unless received; a
    code in another system than ours is not our reason (counted as system|code); no system is ours."""
    w = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    at = datetime(2026, 1, 1, 8, tzinfo=UTC)
    ours = "https://backpain-cds.org/fhir/CodeSystem/override-reason"
    cards = [CardRow("r", at, False, False, None)] * 4
    feedback = [FeedbackRow("r", "overridden", "snooze-cycle", ours, at, at),
                FeedbackRow("r", "overridden", "snooze-cycle", None, at, at),
                FeedbackRow("r", "overridden", "snooze-cycle", "urn:other", at, at),
                FeedbackRow("r", "overridden", "made-up", None, at, at)]
    report = build_report(w, cards, feedback, [], {}, known_rules=("r", "s"), reason_system=ours,
                          offered={"r": (OfferedReason("snooze-cycle", "Snooze"), OfferedReason("other", "Other"))})
    r, s = report.rules
    assert r.overridden_by_reason == {"made-up": 1, "snooze-cycle": 2, "urn:other|snooze-cycle": 1}
    assert report.reason_codes == ["made-up", "other", "snooze-cycle", "urn:other|snooze-cycle"]
    assert [r.overrides_with(code) for code in report.reason_codes] == [1, 0, 2, 1]
    assert [s.overrides_with(code) for code in report.reason_codes] == [None, None, None, None]
    assert s.overrides_with("(none)") == 0  # an override without a reason is always possible
    assert r.reason_rows() == [("snooze-cycle", "Snooze", True, 2), ("other", "Other", True, 0),
                               ("made-up", None, False, 1), ("urn:other|snooze-cycle", None, False, 1)]


@pytest.mark.parametrize("top, ticks", [
    (0, [0, 1]), (1, [0, 1]), (6, list(range(7))), (10, list(range(11))), (11, [0, 2, 4, 6, 8, 10, 12]),
    (21, [0, 5, 10, 15, 20, 25]), (51, [0, 10, 20, 30, 40, 50, 60]), (101, [0, 20, 40, 60, 80, 100, 120]),
])
def test_count_axes_tick_whole_numbers(top, ticks):
    from backpain_cds.report.html import count_ticks

    assert count_ticks(top) == ticks
