"""A seeded database for the governance report tests: rows inserted directly, with the figures
they must give written out by hand (tests/integration/test_report.py, tests/e2e/test_report_browser.py).

Window: 2026-03-02T00:00Z (Monday of ISO week 10, inclusive) to 2026-03-16T00:00Z (exclusive).
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from backpain_cds.report.figures import OfferedReason, Window
from backpain_cds.storage import card_audit, feedback, feedback_unmatched, hook_call, snooze

SINCE = datetime(2026, 3, 2, tzinfo=UTC)
UNTIL = datetime(2026, 3, 16, tzinfo=UTC)
WINDOW = Window(SINCE, UNTIL)
GENERATED = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
PV = "back-pain-after-chemo"
OS = "gcsf-order-select"
G, M, P = "gcsf-bone-pain", "mscc-red-flags", "progressive-back-pain"


#: the override reasons each rule's card offers in these tests (a small catalogue, not the
#: packaged one: the report's figures must not change when a clinician edits actions.toml);
#: gcsf-order-dose-review offers none, patient-declined is received on gcsf-bone-pain, which
#: does not offer it
OFFERED: dict[str, tuple[OfferedReason, ...]] = {
    G: (OfferedReason("pain-not-gcsf", "Pain not due to G-CSF"),
        OfferedReason("snooze-cycle", "Snooze for this chemotherapy cycle", snoozes=True)),
    M: (OfferedReason("managed-by-oncology", "Already managed by the oncology or MSCC team"),
        OfferedReason("patient-declined", "Patient declined")),
    P: (OfferedReason("managed-by-oncology", "Already managed by the oncology team"),
        OfferedReason("cause-known", "Cause of the pain known and assessed")),
    "back-pain-supportive-care": (OfferedReason("analgesia-in-place", "Analgesia already in place"),),
    "nsaid-caution-post-chemo": (OfferedReason("benefit-outweighs-risk", "Benefit outweighs risk, monitored"),),
}
#: every reason code of the seeded report: all offered and received, sorted, (none) last
REASON_CODES = ("analgesia-in-place", "benefit-outweighs-risk", "cause-known", "managed-by-oncology",
                "pain-not-gcsf", "patient-declined", "snooze-cycle", "(none)")


def _t(day: int, hour: int = 8, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


#: uuid, rule, created_at, shadow, suppress_reason
CARDS: list[tuple[str, str, datetime, bool, str | None]] = [
    ("c1", G, SINCE, False, None),  # exactly --since: in
    ("c2", G, _t(3, 10), False, None),
    ("c3", G, _t(9, 9), False, None),
    ("c4", G, _t(10, 12), True, None),  # shadow
    ("c5", G, _t(11), False, "snooze"),
    ("c6", G, _t(12), False, "duplicate"),
    ("c7", G, _t(13), False, None),  # shown, no feedback
    ("x1", G, UNTIL, False, None),  # exactly --until: out (its feedback too)
    ("x2", G, SINCE - timedelta(seconds=1), False, None),  # out
    ("m1", M, _t(5), False, None),
    ("m2", M, _t(6), True, "snooze"),  # shadow and suppressed: counted as shadow
    ("p1", P, _t(14), False, None),  # shown, no feedback
]

#: uuid, outcome, seconds after the card, override code, received_at
FEEDBACK: list[tuple[str, str, float, str | None, datetime]] = [
    ("c1", "accepted", 60, None, _t(2, 1)),
    ("c2", "overridden", 3600, "snooze-cycle", _t(3, 12)),
    ("c3", "overridden", 7200, "patient-declined", _t(20)),  # arrived after the window: counted
    ("x1", "accepted", 30, None, _t(16, 1)),
    ("m1", "overridden", 120, None, _t(5, 9)),
    ("x2", "overridden", 600, "snooze-cycle", _t(2, 1)),  # on a card before the window: out
]

#: card uuid, created_at: the snoozes the snooze-cycle overrides wrote (14 days from the override)
SNOOZES: list[tuple[str, datetime]] = [
    ("c2", _t(3, 12)),  # c5, suppressed by a snooze, is the loop's other end
    ("x2", _t(2, 1)),  # its card was created before the window: out
]

#: service, card uuid, outcome, received_at (feedback naming cards never shown)
UNMATCHED: list[tuple[str, str, str, datetime]] = [
    (PV, "c4", "accepted", _t(4)),  # the shadow card: not in gcsf-bone-pain's acceptance
    (PV, "never-issued", "overridden", _t(15, 23, 59, 59)),
    (OS, "never-issued-2", "accepted", _t(10)),
    (PV, "late", "accepted", UNTIL),  # out
]

#: service, hook, received_at, status, duration ms, deadline exceeded, cards
CALLS: list[tuple[str, str, datetime, int, float, bool, int]] = [
    (PV, "patient-view", SINCE, 200, 20.0, False, 1),
    (PV, "patient-view", _t(3), 200, 10.0, False, 0),
    (PV, "patient-view", _t(4), 200, 40.0, False, 2),
    (PV, "patient-view", _t(5), 412, 30.0, False, 0),
    (PV, "patient-view", _t(6), 200, 1000.0, True, 0),
    (PV, "patient-view", UNTIL, 200, 99999.0, False, 0),  # out
    (OS, "order-select", _t(7), 200, 7.25, False, 0),
    (OS, "unknown", _t(8), 401, 5.5, False, 0),
]


def seed(engine: sa.Engine) -> None:
    created = {uuid: at for uuid, _, at, _, _ in CARDS}
    with engine.begin() as conn:
        conn.execute(card_audit.insert(), [
            {"card_uuid": uuid, "service_id": PV, "hook": "patient-view", "hook_instance": f"hi-{uuid}",
             "rule_id": rule, "rule_version": "1", "indicator": "info", "patient_id": f"pat-{uuid}",
             "created_at": at, "shadow": shadow, "evidence": "[]", "suppressed": reason is not None,
             "suppress_reason": reason, "user_id": None, "encounter_id": None}
            for uuid, rule, at, shadow, reason in CARDS])
        conn.execute(feedback.insert(), [
            {"service_id": PV, "card_uuid": uuid, "outcome": outcome,
             "outcome_timestamp": created[uuid] + timedelta(seconds=after), "accepted_suggestions": "[]",
             "override_code": code, "override_system": None, "override_comment": None, "received_at": received}
            for uuid, outcome, after, code, received in FEEDBACK])
        conn.execute(snooze.insert(), [
            {"patient_id": f"pat-{uuid}", "rule_id": G, "indicator": "info", "card_uuid": uuid, "service_id": PV,
             "reason_code": "snooze-cycle", "evidence": "[]", "created_at": at,
             "expires_at": at + timedelta(days=14)}
            for uuid, at in SNOOZES])
        conn.execute(feedback_unmatched.insert(), [
            {"service_id": service, "card_uuid": uuid, "outcome": outcome, "outcome_timestamp": received,
             "accepted_suggestions": "[]", "received_at": received}
            for service, uuid, outcome, received in UNMATCHED])
        conn.execute(hook_call.insert(), [
            {"received_at": at, "service_id": service, "hook": hook, "status": status, "duration_ms": ms,
             "deadline_exceeded": late, "cards": cards}
            for service, hook, at, status, ms, late, cards in CALLS])


def wipe(engine: sa.Engine) -> None:
    from backpain_cds.storage import metadata

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


ZERO_RULES = ("back-pain-supportive-care", "gcsf-order-dose-review", "nsaid-caution-post-chemo")


def _offered_json(rule: str) -> list[dict[str, str]]:
    return [{"code": o.code, "display": o.display, "snoozes": o.snoozes} for o in OFFERED.get(rule, ())]


def expected_rules() -> dict[str, dict[str, t.Any]]:
    """The per-rule figures of :func:`seed`, by hand (null: the reason is not offered)."""
    none = dict.fromkeys(REASON_CODES)
    zero = {"fired": 0, "returned": 0, "shadow": 0, "suppressed": 0,
            "suppressed_by_reason": {"snooze": 0, "duplicate": 0}, "accepted": 0, "overridden": 0,
            "overridden_with_snooze": None, "acceptance_rate": None, "median_seconds_to_feedback": None}
    out: dict[str, dict[str, t.Any]] = {}
    out["back-pain-supportive-care"] = {"rule": "back-pain-supportive-care", **zero,
                                        "overridden_by_reason": {**none, "analgesia-in-place": 0, "(none)": 0}}
    out["gcsf-order-dose-review"] = {"rule": "gcsf-order-dose-review", **zero,
                                     "overridden_by_reason": {**none, "(none)": 0}}
    out["nsaid-caution-post-chemo"] = {"rule": "nsaid-caution-post-chemo", **zero,
                                       "overridden_by_reason": {**none, "benefit-outweighs-risk": 0, "(none)": 0}}
    out[G] = {"rule": G, "fired": 7, "returned": 4, "shadow": 1, "suppressed": 2,
              "suppressed_by_reason": {"snooze": 1, "duplicate": 1}, "accepted": 1, "overridden": 2,
              "overridden_with_snooze": 1,
              "acceptance_rate": 0.3333, "median_seconds_to_feedback": 3600.0,
              "overridden_by_reason": {**none, "pain-not-gcsf": 0, "patient-declined": 1, "snooze-cycle": 1,
                                       "(none)": 0}}
    out[M] = {"rule": M, "fired": 2, "returned": 1, "shadow": 1, "suppressed": 0,
              "suppressed_by_reason": {"snooze": 0, "duplicate": 0}, "accepted": 0, "overridden": 1,
              "overridden_with_snooze": None,
              "acceptance_rate": 0.0, "median_seconds_to_feedback": 120.0,
              "overridden_by_reason": {**none, "managed-by-oncology": 0, "patient-declined": 0, "(none)": 1}}
    out[P] = {"rule": P, **zero, "fired": 1, "returned": 1,
              "overridden_by_reason": {**none, "cause-known": 0, "managed-by-oncology": 0, "(none)": 0}}
    for rule, figures in out.items():
        figures["override_reasons_offered"] = _offered_json(rule)
    return dict(sorted(out.items()))
