"""Dose-time rules of CLINICAL.md *G-CSF window* on FHIR JSON, through to the card."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.knowledge import extract
from tests.unit.test_codes_support import (
    NOW,
    RX,
    administration,
    back_pain,
    cancer,
    coded,
    iso,
    request,
    rules,
    statement,
)

PEG = coded(RX, "727542", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe [Neulasta]")
FIL = coded(RX, "727537", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe [Neupogen]")


def test_reported_bug_a_request_authored_before_the_pain_for_a_dose_after_it_does_not_explain_it() -> None:
    # pegfilgrastim authored 5 June for 12 June (boundsPeriod.start); pain of 9 June: not in window
    peg = request("peg", PEG, authoredOn=iso(10),
                  dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": iso(3)}}}}])
    (fact,) = extract(peg).medications
    assert fact.time == NOW - timedelta(days=3)
    assert rules(peg, back_pain(days_ago=6), cancer()) == ["back-pain-supportive-care"]
    # the same dose before the pain does explain it
    assert rules(peg, back_pain(days_ago=1), cancer()) == ["gcsf-bone-pain"]


@pytest.mark.parametrize("fields, days_ago", [
    ({"dosageInstruction": [{"timing": {"event": [iso(4), iso(2)],
                                        "repeat": {"boundsPeriod": {"start": iso(9)}}}}],
      "dispenseRequest": {"validityPeriod": {"start": iso(8)}}}, 4),
    ({"dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": iso(7)}}}}],
      "dispenseRequest": {"validityPeriod": {"start": iso(8)}}}, 7),
    ({"dispenseRequest": {"validityPeriod": {"start": iso(8), "end": iso(-20)}}}, 8),
    ({}, 12),
])
def test_request_dose_time_order_event_bounds_validity_authored(fields: dict, days_ago: float) -> None:
    (fact,) = extract(request("r", PEG, authoredOn=iso(12), **fields)).medications
    assert fact.time == NOW - timedelta(days=days_ago)


def test_daily_administration_period_covers_first_to_last_dose() -> None:
    course = administration("fil", FIL, 0, effectivePeriod={"start": iso(12), "end": iso(5)})
    del course["effectiveDateTime"]
    # last dose 5 days ago + 3 days tail: pain 3 days ago in window, pain 1 day ago (4 days after) not
    assert rules(course, back_pain(days_ago=3), cancer()) == ["gcsf-bone-pain"]
    assert rules(course, back_pain(days_ago=1), cancer()) == ["back-pain-supportive-care"]
    # pain before the first dose is never explained by it
    assert rules(course, back_pain(days_ago=13), cancer()) == ["back-pain-supportive-care"]


def test_daily_statement_period_counts_and_long_acting_period_is_one_dose_at_start() -> None:
    fil = statement("fil", FIL, effectivePeriod={"start": iso(12), "end": iso(5)})
    assert rules(fil, back_pain(days_ago=3), cancer()) == ["gcsf-bone-pain"]
    peg = statement("peg", PEG, effectivePeriod={"start": iso(12), "end": iso(2)})
    # long-acting: window [start, start + 7 days] = 12..5 days ago; pain 3 days ago is outside
    assert rules(peg, back_pain(days_ago=3), cancer()) == ["back-pain-supportive-care"]
    assert rules(peg, back_pain(days_ago=6), cancer()) == ["gcsf-bone-pain"]


def test_onpro_applied_at_a_delivers_at_a_plus_one_day() -> None:
    kit = administration("kit", {"text": "Neulasta Onpro kit"}, 9)
    (fact,) = extract(kit).medications
    assert fact.on_body_injector
    # dose D = A + 1 day = 8 days ago: pain 8.5 days ago (after the kit, before delivery) is not in window
    assert rules(kit, back_pain(days_ago=8.5), cancer()) == ["back-pain-supportive-care"]
    # D + 7 days = 1 day ago: pain 1.5 days ago is in window (a plain pegfilgrastim at A would not be)
    assert rules(kit, back_pain(days_ago=1.5), cancer()) == ["gcsf-bone-pain"]
    plain = administration("peg", PEG, 9)
    assert rules(plain, back_pain(days_ago=1.5), cancer()) == ["back-pain-supportive-care"]


@pytest.mark.parametrize("name", ["Rolvedon (eflapegrastim-xnst) 13.2 mg", "Stimufend 6 mg", "Ryzneuta 20 mg",
                                  "Fylnetra 6 mg", "efbemalenograstim alfa"])
def test_long_acting_products_without_a_verified_code_by_text(name: str) -> None:
    (fact,) = extract(administration("g", {"text": name}, 2)).medications
    assert fact.gcsf_class.value == "long-acting"


def test_nypozi_is_daily_by_text() -> None:
    (fact,) = extract(administration("g", {"text": "Nypozi (filgrastim-txid) 480 mcg"}, 2)).medications
    assert fact.gcsf_class.value == "daily"


def test_medication_statement_is_included_from_prefetch_and_fallback() -> None:
    import tomllib
    from importlib.resources import files
    from pathlib import Path
    services = tomllib.loads((Path(str(files("knowledge"))) / "services.toml").read_text())
    for service in services["services"]:
        if "same_as" in service:  # a deprecated pair inherits the prefetch of its current service
            continue
        assert "medicationStatements" in service["prefetch"], service["id"]
        assert {"serviceRequests", "carePlans"} <= set(service["prefetch"]), service["id"]
    assert services["templates"]["carePlans"]["query"].startswith("CarePlan?patient=")


def test_daily_request_with_timing_events_covers_first_to_last_event() -> None:
    events = [iso(d) for d in (10, 9, 8, 7, 6)]
    fil = request("fil", FIL, authoredOn=iso(11), dosageInstruction=[{"timing": {"event": events}}])
    (fact,) = extract(fil).medications
    assert fact.time == NOW - timedelta(days=10) and fact.last_dose == NOW - timedelta(days=6)
    # last event 6 days ago + 3 days: pain 4 days ago in window, 2 days ago not
    assert rules(fil, back_pain(days_ago=4), cancer()) == ["gcsf-bone-pain"]
    assert rules(fil, back_pain(days_ago=2), cancer()) == ["back-pain-supportive-care"]
