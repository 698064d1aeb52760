"""Shared FHIR JSON builders for the codes tests (test_codes_*.py, test_medication_times.py):
raw resources -> extract_record -> assess, with the shipped knowledge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from assessment.engine import assess
from tests.support.knowledge import extract
from tests.unit.test_rules_common import CONFIG

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
NDC = "http://hl7.org/fhir/sid/ndc"
NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
SUBJECT = {"reference": "Patient/p1"}


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def coded(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def rules(*resources: dict[str, Any], hook: str = "patient-view", now: datetime = NOW) -> list[str]:
    record = extract(*resources)
    return [f.rule_id for f in assess(record, now=now, config=CONFIG, hook=hook).findings]


def condition(rid: str, concept: dict[str, Any], days_ago: float, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": rid, "subject": SUBJECT,
        "clinicalStatus": coded("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
        "verificationStatus": coded("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "code": concept, "onsetDateTime": iso(days_ago),
    }


def back_pain(days_ago: float = 2, rid: str = "bp") -> dict[str, Any]:
    return condition(rid, coded(ICD, "M54.50", "Low back pain, unspecified"), days_ago)


def cancer(status: str = "active", rid: str = "ca") -> dict[str, Any]:
    return condition(rid, coded(ICD, "C50.911", "Malignant neoplasm of unspecified site of right female breast"), 200, status)


def rheumatoid(rid: str = "ra") -> dict[str, Any]:
    return condition(rid, coded(ICD, "M06.9", "Rheumatoid arthritis, unspecified"), 400)


def leg_weakness(days_ago: float = 1, rid: str = "rf") -> dict[str, Any]:
    return condition(rid, coded(ICD, "G82.22", "Paraplegia, incomplete"), days_ago)


def administration(rid: str, concept: dict[str, Any], days_ago: float, **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "MedicationAdministration", "id": rid, "status": "completed", "subject": SUBJECT,
                "medicationCodeableConcept": concept, "effectiveDateTime": iso(days_ago)}
    resource.update(extra)
    return resource


def request(rid: str, concept: dict[str, Any], **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
                "subject": SUBJECT, "medicationCodeableConcept": concept}
    resource.update(extra)
    return resource


def statement(rid: str, concept: dict[str, Any], **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "MedicationStatement", "id": rid, "status": "completed", "subject": SUBJECT,
                "medicationCodeableConcept": concept}
    resource.update(extra)
    return resource
