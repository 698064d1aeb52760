"""extract_record as a whole: filtering, dedupe, procedures, imaging, and a large record."""

from __future__ import annotations

from pathlib import Path

import pytest

from assessment.facts import ClinicalKind, GcsfClass, ImagingKind, PatientRecord
from fhir_mapping.extract import load_matching_config, validate_matching_config
from fhir_mapping.matchconfig import MatchingConfigError
from tests.support.knowledge import KNOWLEDGE, extract, shipped_mapping

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"


def coded(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def back_pain(rid: str = "c1", subject: str = "Patient/p1") -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": subject}, "code": coded(ICD, "M54.50")}


def test_duplicate_resources_count_once() -> None:
    assert len(extract(back_pain(), back_pain(), back_pain("c2")).clinical) == 2


@pytest.mark.parametrize(
    ("subject", "kept"),
    [
        ("Patient/p1", True),
        ("Patient/p2", False),
        ("https://ehr.example.org/fhir/Patient/p2", False),
        ("https://ehr.example.org/fhir/Patient/p1/_history/3", True),
        ("urn:uuid:0b7c9f52-1f7e-4d43-9d1c-0d2a3c8e2b11", True),
        ("Group/g1", True),
    ],
)
def test_resources_of_another_patient_are_ignored(subject: str, kept: bool) -> None:
    assert bool(extract(back_pain(subject=subject)).clinical) is kept


def test_irrelevant_resource_types_are_skipped() -> None:
    encounter = {"resourceType": "Encounter", "id": "e1", "reasonCode": [coded(ICD, "M54.50")]}
    claim = {"resourceType": "Claim", "id": "x", "diagnosis": [{"diagnosisCodeableConcept": coded(ICD, "C50.911")}]}
    assert extract(encounter, claim, {"no": "type"}) == PatientRecord(patient_id="p1")


def test_chemotherapy_procedures_become_procedure_facts() -> None:
    done = {"resourceType": "Procedure", "id": "pr1", "status": "completed", "code": coded(SCT, "367336001"),
            "performedPeriod": {"start": "2024-04-28T08:00:00Z", "end": "2024-04-28T12:00:00Z"}}
    cpt = {"resourceType": "Procedure", "id": "pr2", "status": "completed", "code": coded(CPT, "96413"),
           "performedDateTime": "2024-04-07"}
    not_done = {**done, "id": "pr3", "status": "not-done"}
    other = {"resourceType": "Procedure", "id": "pr4", "status": "completed", "code": coded(SCT, "80146002")}
    facts = extract(done, cpt, not_done, other).procedures
    assert [(f.ref, f.time.day) for f in facts] == [("Procedure/pr1", 28), ("Procedure/pr2", 7)]


def test_spine_imaging_from_orders_studies_and_reports() -> None:
    order = {"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order",
             "code": coded(LOINC, "24980-5"), "authoredOn": "2024-05-12"}
    revoked = {**order, "id": "s2", "status": "revoked"}
    report = {"resourceType": "DiagnosticReport", "id": "d1", "status": "final", "code": coded(LOINC, "39818-0"),
              "effectiveDateTime": "2024-05-13"}
    study = {"resourceType": "ImagingStudy", "id": "i1", "status": "available", "started": "2024-05-14",
             "series": [{"modality": {"code": "MR"}, "bodySite": {"system": SCT, "code": "122495006"}}]}
    described = {"resourceType": "ImagingStudy", "id": "i2", "status": "available", "description": "MRI whole spine"}
    chest = {"resourceType": "ImagingStudy", "id": "i3", "status": "available", "description": "CT chest"}
    facts = {f.ref: f.kind for f in extract(order, revoked, report, study, described, chest).imaging}
    assert facts == {
        "ServiceRequest/s1": ImagingKind.SPINE_MRI,
        "DiagnosticReport/d1": ImagingKind.BONE_SCAN,
        "ImagingStudy/i1": ImagingKind.SPINE_MRI,
        "ImagingStudy/i2": ImagingKind.SPINE_MRI,
    }


def test_a_five_thousand_resource_record_gives_exactly_the_relevant_facts() -> None:
    noise = [
        {"resourceType": "Observation", "id": f"v{i}", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": LOINC, "code": "8302-2", "display": "Body Height"}], "text": "Body Height"},
         "effectiveDateTime": "2024-01-01T00:00:00Z", "valueQuantity": {"value": 170 + i % 5, "unit": "cm"}}
        for i in range(4_000)
    ]
    noise += [{"resourceType": "Encounter", "id": f"e{i}", "subject": {"reference": "Patient/p1"}} for i in range(600)]
    noise += [{"resourceType": "Claim", "id": f"cl{i}"} for i in range(390)]
    relevant = [
        back_pain("c1"),
        {"resourceType": "Condition", "id": "ca", "subject": {"reference": "Patient/p1"}, "code": coded(ICD, "C50.911")},
        {"resourceType": "Observation", "id": "pain", "status": "final", "code": coded(LOINC, "72514-3"),
         "effectiveDateTime": "2024-05-12", "valueInteger": 6},
        {"resourceType": "Observation", "id": "plt", "status": "final", "code": coded(LOINC, "777-3"),
         "effectiveDateTime": "2024-05-12", "valueQuantity": {"value": 40, "unit": "10*3/uL"}},
        {"resourceType": "MedicationAdministration", "id": "g", "status": "completed",
         "medicationCodeableConcept": {"text": "Neulasta"}, "effectiveDateTime": "2024-05-08"},
    ]
    resources = noise[:2000] + relevant + noise[2000:] + relevant  # duplicates of the relevant ones too
    assert len(resources) == 5_000
    record = extract(*resources)
    assert {f.kind for f in record.clinical} == {ClinicalKind.BACK_PAIN, ClinicalKind.CANCER}
    assert [p.score for p in record.pain_scores] == [6]
    assert [lab.value for lab in record.labs] == [40]
    assert [m.gcsf_class for m in record.medications] == [GcsfClass.LONG_ACTING]


def test_a_config_bound_to_a_missing_value_set_is_reported(tmp_path: Path) -> None:
    overlay = tmp_path / "matching.toml"
    overlay.write_text('[pain_score]\nvaluesets = ["no-such-valueset"]\n')
    config = load_matching_config([KNOWLEDGE / "matching.toml", overlay])
    problems = validate_matching_config(config, shipped_mapping()[0])
    assert problems == ["matching configuration refers to value set https://backpain-cds.org/fhir/ValueSet/no-such-valueset which is not loaded"]


def test_a_broken_matching_file_raises_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "matching.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(MatchingConfigError):
        load_matching_config([bad])
    bad.write_text('[[medication.drug]]\nid = "x"\ndrug_class = "not-a-class"\n')
    with pytest.raises(MatchingConfigError):
        load_matching_config([KNOWLEDGE / "matching.toml", bad])
