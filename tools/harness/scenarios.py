"""Small patient records built relative to a given 'now' (written for the tests)."""

from __future__ import annotations

import typing as t
from datetime import datetime, timedelta

Resource = dict[str, t.Any]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def patient(pid: str) -> Resource:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-02"}


def gcsf_bone_pain(pid: str, now: datetime, *, score: int = 5) -> list[Resource]:
    """Breast cancer, chemotherapy 4 days ago, pegfilgrastim 3 days ago, low back pain 2 days ago."""
    subject = {"reference": f"Patient/{pid}"}
    return [
        patient(pid),
        {
            "resourceType": "Condition", "id": f"{pid}-cancer", "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911", "display": "Malignant neoplasm of unspecified site of right female breast"}]},
            "onsetDateTime": _iso(now - timedelta(days=120)),
        },
        {
            "resourceType": "Procedure", "id": f"{pid}-chemo", "subject": subject, "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "367336001", "display": "Chemotherapy"}]},
            "performedDateTime": _iso(now - timedelta(days=4)),
        },
        {
            "resourceType": "MedicationAdministration", "id": f"{pid}-peg", "subject": subject, "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "338036", "display": "pegfilgrastim"}], "text": "pegfilgrastim 6 mg"},
            "effectiveDateTime": _iso(now - timedelta(days=3)),
        },
        {
            "resourceType": "Condition", "id": f"{pid}-backpain", "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50", "display": "Low back pain, unspecified"}]},
            "onsetDateTime": _iso(now - timedelta(days=2)),
            "recordedDate": _iso(now - timedelta(days=2)),
        },
        {
            "resourceType": "Observation", "id": f"{pid}-pain", "subject": subject, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported"}]},
            "effectiveDateTime": _iso(now - timedelta(days=1)),
            "valueInteger": score,
        },
    ]


def mscc(pid: str, now: datetime) -> list[Resource]:
    """The G-CSF scenario plus urinary retention yesterday: a red flag."""
    subject = {"reference": f"Patient/{pid}"}
    return gcsf_bone_pain(pid, now) + [
        {
            "resourceType": "Condition", "id": f"{pid}-retention", "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "267064002", "display": "Retention of urine"}]},
            "onsetDateTime": _iso(now - timedelta(days=1)),
        }
    ]


def transaction(resources: list[Resource]) -> Resource:
    """A transaction Bundle that PUTs each resource under its id."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def collection(resources: list[Resource]) -> Resource:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
