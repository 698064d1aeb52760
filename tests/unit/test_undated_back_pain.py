"""An active back-pain Condition with neither onset nor recordedDate (issue 11 audit, G2): it is
back pain (pain scores count, onset = the first score) and, for red flags, active back pain of
any onset; with nothing that dates it, no G-CSF window and no duration is judged from it."""

from __future__ import annotations

from datetime import UTC, datetime

from assessment.engine import assess
from tests.support.knowledge import KNOWLEDGE, extract
from tests.unit.test_extract_clinical import ICD
from tests.unit.test_red_flag_text_property import CONFIG

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
SUBJECT = {"reference": "Patient/p1"}
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
assert KNOWLEDGE  # the knowledge folder the extract helper reads


def _condition(rid: str, code: str, display: str, when: str | None) -> dict:
    r = {"resourceType": "Condition", "id": rid, "subject": SUBJECT, "clinicalStatus": ACTIVE,
         "code": {"coding": [{"system": ICD, "code": code, "display": display}]}}
    if when:
        r["onsetDateTime"] = when
    return r


CANCER = _condition("cancer", "C50.911", "Malignant neoplasm of unspecified site of right female breast", "2024-10-01")
UNDATED_BACK_PAIN = _condition("backpain", "M54.50", "Low back pain, unspecified", None)
CHEMO = {"resourceType": "Procedure", "id": "chemo", "status": "completed", "subject": SUBJECT,
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "367336001"}]},
         "performedDateTime": "2025-03-06T10:00:00Z"}
PEG = {"resourceType": "MedicationAdministration", "id": "peg", "status": "completed", "subject": SUBJECT,
       "medicationCodeableConcept": {"coding": [{"system": RX, "code": "727539"}]},
       "effectiveDateTime": "2025-03-07T10:00:00Z"}


def _score(value: int, when: str) -> dict:
    return {"resourceType": "Observation", "id": f"pain-{when[:10]}", "status": "final", "subject": SUBJECT,
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": "{score}"}}


def _rules(*resources: dict) -> list[str]:
    return [f.rule_id for f in assess(extract(*resources), now=NOW, config=CONFIG, hook="patient-view").findings]


def test_an_undated_back_pain_condition_with_a_red_flag_is_critical() -> None:
    retention = _condition("retention", "R33.9", "Retention of urine, unspecified", "2025-03-09T08:00:00Z")
    assert _rules(CANCER, CHEMO, UNDATED_BACK_PAIN, retention) == ["mscc-red-flags"]


def test_pain_scores_count_as_back_pain_when_an_undated_back_pain_condition_exists() -> None:
    assert _rules(CANCER, CHEMO, UNDATED_BACK_PAIN, _score(3, "2025-03-09T08:00:00Z")) == ["back-pain-supportive-care"]


def test_an_undated_back_pain_condition_alone_is_not_put_in_a_gcsf_window() -> None:
    # nothing dates the pain: neither a G-CSF card (the window) nor a triage card without red flags
    assert _rules(CANCER, CHEMO, PEG, UNDATED_BACK_PAIN) == []


# -- one dose recorded twice (the order, then the administration) ------------------------------

def _peg(resource_type: str, rid: str, when: str) -> dict:
    r = {"resourceType": resource_type, "id": rid, "subject": SUBJECT,
         "medicationCodeableConcept": {"coding": [{"system": RX, "code": "727539"}]}}
    if resource_type == "MedicationRequest":
        r.update(status="completed", intent="order", authoredOn=when)
    else:
        r.update(status="completed", effectiveDateTime=when)
    return r


def _windows(*resources: dict) -> int:
    from assessment.rules import gcsf_windows

    return len(gcsf_windows.gcsf_windows(extract(*resources), CONFIG.context))


def test_an_order_and_its_administration_are_one_window() -> None:
    assert _windows(_peg("MedicationRequest", "o", "2025-03-05T09:00:00Z"),
                    _peg("MedicationAdministration", "a", "2025-03-06T10:00:00Z")) == 1


def test_orders_far_from_any_administration_and_two_administrations_stay_separate() -> None:
    assert _windows(_peg("MedicationRequest", "o", "2025-02-20T09:00:00Z"),
                    _peg("MedicationAdministration", "a", "2025-03-06T10:00:00Z")) == 2
    assert _windows(_peg("MedicationAdministration", "a1", "2025-02-20T09:00:00Z"),
                    _peg("MedicationAdministration", "a2", "2025-03-06T10:00:00Z")) == 2


def test_a_pain_score_that_is_a_component_of_a_pain_panel_is_read() -> None:
    panel = {"resourceType": "Observation", "id": "panel", "status": "final", "subject": SUBJECT,
             "code": {"text": "Pain assessment"}, "effectiveDateTime": "2025-03-09T08:00:00Z",
             "component": [
                 {"code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                  "valueQuantity": {"value": 6, "unit": "{score}"}},
                 {"code": {"text": "Pain location"}, "valueCodeableConcept": {"text": "Lower back"}},
             ]}
    (score,) = extract(panel).pain_scores
    assert score.score == 6 and score.site is not None
    assert _rules(CANCER, CHEMO, panel) == ["back-pain-supportive-care"]
