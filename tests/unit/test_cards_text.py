"""Rendered cards that read well and stay true (issue 13 item 2, issue 11 deliverable 4, eGFR
from creatinine): each test renders the card with cds_hooks.cards and checks what a clinician
reads."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from assessment.config import RULE_IDS, parse_rule_config, validate_rule_config
from assessment.egfr import age_in_years, ckd_epi_2021
from assessment.facts import DrugClass, LabKind, LabResult, MedicationSource
from assessment.rules import concepts
from cds_hooks.cards import render_card
from cds_hooks.schemas import CdsResponse
from fhir_mapping.knowledge import load_knowledge
from fhir_mapping.overlay import merge_overlay
from fhir_mapping.patients import patient_demographics
from tests.unit.test_rules_common import (
    NOW,
    RAW_CONFIG,
    ago,
    anticoagulant,
    back_pain,
    cancer,
    chemo_procedure,
    draft,
    gcsf,
    lab,
    record,
    red_flag,
    run,
    score,
)

KNOWLEDGE = load_knowledge()
NSAID = "nsaid-caution-post-chemo"
LONG_NAME = "Naproxen sodium 220 MG Oral Tablet " + "with an exceedingly long local formulary description " * 4


def _knowledge_with(overlay: dict[str, Any]):
    config = parse_rule_config(merge_overlay(RAW_CONFIG, overlay))
    return dataclasses.replace(KNOWLEDGE, rules=config)


def _render(assessment, knowledge=KNOWLEDGE) -> dict[str, Any]:
    (finding,) = assessment.findings[:1]
    return render_card(finding, knowledge, patient_id="p1", now=NOW)


def _nsaid_card(*facts: object, knowledge=KNOWLEDGE, label: str = "ibuprofen 400 mg") -> dict[str, Any]:
    drafted = draft("MedicationRequest/ibu-draft", DrugClass.NSAID, label=label)
    assessment = run(cancer(), drafted, *facts, hook="order-sign", config=knowledge.rules)
    (finding,) = [f for f in assessment.findings if f.rule_id == NSAID]
    return render_card(finding, knowledge, patient_id="p1", now=NOW)


# -- numbers come from the configuration -------------------------------------------------------


def test_overlay_thresholds_are_what_the_card_says() -> None:
    knowledge = _knowledge_with({"context": {"nsaid": {"platelets_below": {"value": 75, "unit": "10*9/L"},
                                                       "lab_lookback": {"value": 7, "unit": "d"}}}})
    card = _nsaid_card(lab(LabKind.PLATELETS, 60, days=2), lab(LabKind.EGFR, 90, days=2), knowledge=knowledge)
    text = card["summary"] + card["detail"]
    assert "below 75" in text and "within 7 days" in text
    assert "50" not in card["detail"].split("**Why this card**")[0].replace("2025", "")
    assert "14 days" not in text


def test_check_config_fails_on_a_literal_configured_number_in_card_prose() -> None:
    data = merge_overlay(RAW_CONFIG, {"rules": {NSAID: {"card": {"detail": "Platelets below 50 are unsafe."}}}})
    problems = validate_rule_config(data)
    assert any("literal number 50" in p and "platelets_below" in p and NSAID in p for p in problems), problems
    texts = merge_overlay(RAW_CONFIG, {"texts": {"imaging_note_none": "No MRI in the last 30 days."}})
    assert any("texts.imaging_note_none" in p and "literal number 30" in p for p in validate_rule_config(texts))


def test_packaged_rules_pass_check_config() -> None:
    assert validate_rule_config(RAW_CONFIG) == []


# -- summaries, labels, override reasons --------------------------------------------------------


def test_summary_keeps_the_action_with_a_200_character_drug_name_and_free_text() -> None:
    card = _nsaid_card(lab(LabKind.PLATELETS, 20), lab(LabKind.EGFR, 90), label=LONG_NAME)
    assert len(LONG_NAME) >= 200
    assert len(card["summary"]) <= 139 and card["summary"].startswith("Cancel the draft NSAID and use paracetamol")
    assert LONG_NAME.split()[0] in card["detail"]
    flag = red_flag(label="new weakness in both legs since this morning, " + "patient also reports " * 8)
    critical = _render(run(cancer(), back_pain(days=5), flag))
    assert critical["summary"].startswith("Order whole-spine MRI within 24 h")
    assert len(critical["summary"]) <= 139 and "a red flag" in critical["summary"]


def test_summaries_that_cannot_fit_are_refused_by_check_config() -> None:
    data = merge_overlay(RAW_CONFIG, {"rules": {NSAID: {"card": {"summary": "Cancel {nsaid}: " + "x" * 100}}}})
    assert any("must fit in 139" in p for p in validate_rule_config(data))


def test_source_and_link_labels_are_the_short_labels_and_long_ones_are_refused() -> None:
    card = _nsaid_card(lab(LabKind.PLATELETS, 20))
    assert card["source"]["label"] == "backpain-cds · NCCN Adult Cancer Pain"
    assert [link["label"] for link in card["links"]] == ["NCCN Adult Cancer Pain"]
    long_label = {"rules": {NSAID: {"citation": {"label": "x" * 40}}}}
    assert any("label" in p and "never cut" in p for p in validate_rule_config(merge_overlay(RAW_CONFIG, long_label)))


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_every_rule_has_override_reasons_that_fit_it(rule_id: str) -> None:
    reasons = [c.display for c in KNOWLEDGE.actions.override_reasons[rule_id]]
    assert reasons and len(reasons) == len(set(reasons))
    if rule_id in ("nsaid-caution-post-chemo", "gcsf-bone-pain", "gcsf-order-dose-review", "back-pain-supportive-care"):
        assert not any("imaging" in r.lower() or "mri" in r.lower() for r in reasons)
    expected_first = {
        "mscc-red-flags": "MRI already done or booked",
        "nsaid-caution-post-chemo": "Benefit outweighs risk, monitored",
        "gcsf-bone-pain": "Pain not due to G-CSF",
    }
    if rule_id in expected_first:
        assert reasons[0] == expected_first[rule_id]


def test_the_card_carries_its_own_rules_override_reasons() -> None:
    card = _nsaid_card(lab(LabKind.PLATELETS, 20))
    displays = [r["display"] for r in card["overrideReasons"]]
    assert displays[:2] == ["Benefit outweighs risk, monitored", "Lab value out of date"]


# -- NSAID caution: the reason that applies, a delete suggestion --------------------------------


def test_nsaid_caution_names_only_the_concern_that_applies_and_deletes_the_draft() -> None:
    card = _nsaid_card(lab(LabKind.PLATELETS, 20), lab(LabKind.EGFR, 90))
    assert card["summary"] == "Cancel the draft ibuprofen 400 mg and use paracetamol: low platelets."
    suggestion, paracetamol = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete", "description": suggestion["actions"][0]["description"],
                                      "resourceId": "MedicationRequest/ibu-draft"}]
    # paracetamol proposed as a draft order of its own (create), as the other cards do
    (create,) = paracetamol["actions"]
    assert create["type"] == "create" and create["resource"]["resourceType"] == "MedicationRequest"
    assert "aracetamol" in create["resource"]["medicationCodeableConcept"]["text"]
    assert card["selectionBehavior"] == "any"
    CdsResponse.model_validate({"cards": [card]})
    both = _nsaid_card(lab(LabKind.PLATELETS, 20), lab(LabKind.EGFR, 90), anticoagulant())
    assert both["summary"].endswith("low platelets and an active anticoagulant.")
    assert "low eGFR" not in both["summary"]


# -- wording: ids, duplicates, doubling, given / ordered / recorded ---------------------------


def test_no_fhir_ids_and_no_repeated_lines_in_what_a_clinician_reads() -> None:
    card = _render(run(cancer(), chemo_procedure(), back_pain(days=2), gcsf("MedicationRequest/peg", ago(3),
                                                                           source=MedicationSource.REQUEST,
                                                                           status="completed")))
    for text in (card["summary"], card["detail"]):
        assert "Condition/" not in text and "MedicationRequest/" not in text and "Procedure/" not in text
    assert "MedicationRequest/peg" in card["extension"]["backpain-cds"]["evidence"]
    lines = [ln for ln in card["detail"].splitlines() if ln.startswith("- ")]
    assert len(lines) == len(set(lines))


def test_chemotherapy_display_is_not_doubled() -> None:
    procedure = dataclasses.replace(chemo_procedure(), label="Chemotherapy (procedure)")
    context = concepts.oncology_context(record(procedure), NOW, KNOWLEDGE.rules.context)
    assert [r.text for r in context.reasons] == [f"Chemotherapy (procedure) on {concepts.day_text(procedure.time)}"]


@pytest.mark.parametrize(("source", "status", "verb"), [
    (MedicationSource.ADMINISTRATION, "completed", "given"),
    (MedicationSource.REQUEST, "completed", "ordered"),
    (MedicationSource.REQUEST, "active", "ordered"),
    (MedicationSource.STATEMENT, "active", "recorded"),
])
def test_cards_say_what_the_record_says(source: MedicationSource, status: str, verb: str) -> None:
    dose = gcsf("X/peg", ago(3), source=source, status=status, label="Neulasta")
    card = _render(run(cancer(), back_pain(days=2), dose))
    assert f"**Neulasta** {verb} on" in card["detail"]
    other = {"given", "ordered", "recorded"} - {verb}
    assert not any(f"Neulasta {o} on" in card["detail"] or f"**Neulasta** {o}" in card["detail"] for o in other)


# -- calendar days, severe pain --------------------------------------------------------------


@pytest.mark.parametrize(("dose", "pain", "day"), [
    ("2025-03-10T23:30:00+00:00", "2025-03-11T00:15:00+00:00", 1),   # 45 minutes, next calendar day
    ("2025-03-10T08:00:00+00:00", "2025-03-11T07:00:00+00:00", 1),   # 23 hours
    ("2025-03-10T22:00:00-05:00", "2025-03-11T04:00:00+00:00", 0),   # same day in the record's zone
    ("2025-03-10T09:00:00+02:00", "2025-03-12T23:00:00+02:00", 2),
])
def test_day_after_the_dose_is_counted_in_calendar_days_of_the_record(dose: str, pain: str, day: int) -> None:
    assert concepts.calendar_days(datetime.fromisoformat(dose), datetime.fromisoformat(pain)) == day


def test_pain_the_next_calendar_day_is_day_1_on_the_card() -> None:
    tz = timezone(timedelta(hours=-5))
    dose_at = datetime(2025, 3, 12, 22, 0, tzinfo=tz)
    pain = dataclasses.replace(back_pain(days=1), time=datetime(2025, 3, 13, 6, 0, tzinfo=tz))
    card = _render(run(cancer(), pain, gcsf("MedicationAdministration/peg", dose_at)))
    assert "day 1 after" in card["summary"] and "day 1 after" in card["detail"]


def test_severe_pain_gets_step_up_advice_instead_of_paracetamol_first() -> None:
    pain = back_pain(days=2)
    severe = _render(run(cancer(), pain, score("Observation/s", ago(1), 8), gcsf("MedicationAdministration/peg", ago(3))))
    assert severe["summary"].startswith("Step up analgesia (opioid, supervised)")
    assert "opioid under physician supervision" in severe["detail"]
    assert "Paracetamol regularly as the first step" not in severe["detail"]
    mild = _render(run(cancer(), pain, score("Observation/s", ago(1), 3), gcsf("MedicationAdministration/peg", ago(3))))
    assert mild["summary"].startswith("Paracetamol first")


def test_gcsf_and_supportive_cards_say_what_they_could_not_see() -> None:
    for card in (_render(run(cancer(), back_pain(days=2), gcsf("MedicationAdministration/peg", ago(3)))),
                 _render(run(cancer(), back_pain(days=2)))):
        flat = " ".join(card["detail"].split())
        assert "No red flag found in the record" in flat
        assert "Ask today about leg weakness, numbness and bladder or bowel control" in flat


# -- eGFR from creatinine (CKD-EPI 2021) ---------------------------------------------------------


@pytest.mark.parametrize(("scr", "age", "female", "expected"), [
    # worked by hand from the published equation (Inker 2021): 142 x min^a x max^-1.2 x 0.9938^age [x 1.012]
    (1.0, 50, True, 68.6),
    (1.2, 60, False, 69.2),
    (0.7, 40, False, 119.5),
    (0.5, 30, True, 129.3),
])
def test_ckd_epi_2021_worked_examples(scr: float, age: int, female: bool, expected: float) -> None:
    constants = KNOWLEDGE.rules.context.nsaid.ckd_epi
    assert constants is not None
    assert ckd_epi_2021(scr, age, female=female, constants=constants) == pytest.approx(expected, abs=0.6)


def test_age_in_whole_years_on_the_day_of_the_result() -> None:
    assert age_in_years(date(1960, 3, 11), datetime(2025, 3, 10, tzinfo=UTC)) == 64
    assert age_in_years(date(1960, 3, 10), datetime(2025, 3, 10, tzinfo=UTC)) == 65


def test_egfr_is_computed_from_creatinine_when_none_is_recorded() -> None:
    creatinine = LabResult(ref="Observation/scr", kind=LabKind.CREATININE, time=ago(2), value=3.0)
    drafted = draft("MedicationRequest/ibu-draft", DrugClass.NSAID, label="ibuprofen 400 mg")
    base = record(cancer(), drafted, creatinine, lab(LabKind.PLATELETS, 200))
    rec = dataclasses.replace(base, birth_date=date(1950, 1, 1), sex="female")
    from assessment.engine import assess

    assessment = assess(rec, now=NOW, config=KNOWLEDGE.rules, hook="order-sign")
    (finding,) = assessment.findings
    card = render_card(finding, KNOWLEDGE, patient_id="p1", now=NOW)
    assert "computed from creatinine (CKD-EPI 2021)" in card["detail"]
    assert card["summary"].endswith("low eGFR.")
    assert "Observation/scr" in card["extension"]["backpain-cds"]["evidence"]
    # without a known sex (or birth date) nothing is computed
    unknown = dataclasses.replace(base, birth_date=date(1950, 1, 1), sex=None)
    assert assess(unknown, now=NOW, config=KNOWLEDGE.rules, hook="order-sign").findings == ()
    # a recorded eGFR wins over the computed one
    recorded = dataclasses.replace(rec, labs=rec.labs + (lab(LabKind.EGFR, 90),))
    assert assess(recorded, now=NOW, config=KNOWLEDGE.rules, hook="order-sign").findings == ()


def test_patient_demographics_need_a_full_birth_date_and_a_binary_administrative_sex() -> None:
    assert patient_demographics({"birthDate": "1950-01-31", "gender": "female"}) == (date(1950, 1, 31), "female")
    assert patient_demographics({"birthDate": "1950", "gender": "other"}) == (None, None)


def test_creatinine_is_prefetched_with_the_labs() -> None:
    services = tomllib.loads((Path(__file__).resolve().parents[2] / "knowledge" / "services.toml").read_text())
    labs = services["templates"]["painScoresAndLabs"]["code_valuesets"]
    assert "https://backpain-cds.org/fhir/ValueSet/creatinine" in labs
    assert services["templates"]["patient"]["query"] == "Patient/{{context.patientId}}"


def test_a_coded_product_outside_the_value_set_is_not_called_free_text() -> None:
    from assessment.facts import Confidence

    coded = dataclasses.replace(draft("MedicationRequest/nap", DrugClass.NSAID, label="Naproxen sodium 220 MG Oral Tablet"),
                                confidence=Confidence.TEXT, coded=True)
    assessment = run(cancer(), coded, lab(LabKind.PLATELETS, 20), hook="order-sign")
    card = render_card(assessment.findings[0], KNOWLEDGE, patient_id="p1", now=NOW)
    assert "recognised by its name (code not in the value set)" in card["detail"]
    assert "free text" not in card["detail"]
    uncoded = dataclasses.replace(coded, coded=False)
    card = render_card(run(cancer(), uncoded, lab(LabKind.PLATELETS, 20), hook="order-sign").findings[0],
                       KNOWLEDGE, patient_id="p1", now=NOW)
    assert "free text only" in card["detail"]


@pytest.mark.parametrize(("dose", "pain", "day"), [
    ("2025-03-06T10:00:00-05:00", "2025-03-07", 1),        # pain recorded as a date: the day written
    ("2025-03-10", "2025-03-11T01:00:00+02:00", 1),        # dose recorded as a date
    ("2025-03-10", "2025-03-10T23:30:00-08:00", 0),
    ("2025-03-10", "2025-03-13", 3),
])
def test_a_date_only_time_counts_as_the_day_written(dose: str, pain: str, day: int) -> None:
    from fhir_mapping.times import parse_fhir_datetime

    start, end = parse_fhir_datetime(dose), parse_fhir_datetime(pain)
    assert start is not None and end is not None
    assert concepts.calendar_days(start, end) == day
