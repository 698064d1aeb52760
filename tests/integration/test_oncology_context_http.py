"""Chemotherapy ordered (ServiceRequest) or planned (CarePlan) and ingredient-coded chemotherapy
as oncology context, over HTTP: prefetch (carePlans / serviceRequests keys) and FHIR fallback
(the keys omitted: the service searches CarePlan / ServiceRequest / MedicationStatement itself)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backpain_cds.settings import Settings
from tests.support import hook_requests as hr
from tools.harness.sekmet import FhirTestServer

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _iso(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="seconds")


def _patient_resources(pid: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{pid}"}
    context = copy.deepcopy(context)
    context["id"] = f"{pid}-{context['id']}"
    context["subject"] = subject
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-01-01"},
        context,
        {"resourceType": "Condition", "id": f"{pid}-bp", "subject": subject,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": ICD, "code": "M54.50", "display": "Low back pain, unspecified"}]},
         "onsetDateTime": _iso(30)},
        {"resourceType": "Condition", "id": f"{pid}-rf", "subject": subject,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": ICD, "code": "G82.22", "display": "Paraplegia, incomplete"}]},
         "onsetDateTime": _iso(1)},
    ]


CONTEXTS = {
    "careplan": {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan", "created": _iso(10),
                 "activity": [{"detail": {"status": "scheduled", "code": {"text": "FOLFOX chemotherapy cycle 3"}}}]},
    "servicerequest": {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
                       "authoredOn": _iso(5), "code": {"coding": [{"system": SCT, "code": "367336001",
                                                                    "display": "Chemotherapy (procedure)"}]}},
    "statement": {"resourceType": "MedicationStatement", "id": "ms", "status": "completed",
                  "medicationCodeableConcept": {"coding": [{"system": RX, "code": "4492", "display": "fluorouracil"}]},
                  "effectivePeriod": {"start": _iso(20), "end": _iso(18)}},
}
KEYS = {"CarePlan": "carePlans", "ServiceRequest": "serviceRequests", "MedicationStatement": "medicationStatements",
        "Condition": "conditions"}


def _prefetch(resources: list[dict[str, Any]]) -> dict[str, Any]:
    prefetch: dict[str, Any] = {"patient": resources[0]}
    for key in ("medicationRequests", "medicationAdministrations", "medicationStatements", "conditions",
                "painScoresAndLabs", "codedFindings", "symptoms", "questionnaireResponses", "procedures", "serviceRequests", "carePlans",
                "imagingStudies", "diagnosticReports"):
        prefetch[key] = hr.searchset(*[r for r in resources[1:] if KEYS.get(r["resourceType"]) == key])
    return prefetch


def _rules(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [c["extension"]["backpain-cds"]["rule"] for c in response.get_json()["cards"]]


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_chemotherapy_context_in_prefetch_gives_the_critical_card(client, kind: str) -> None:
    resources = _patient_resources(f"oc-{kind}", CONTEXTS[kind])
    body = hr.patient_view(resources[0]["id"], prefetch=_prefetch(resources))
    assert _rules(client.post("/cds-services/back-pain-after-chemo", json=body)) == ["mscc-red-flags"]
    # without the chemotherapy resource there is no oncology context, so no card
    body = hr.patient_view(resources[0]["id"], prefetch=_prefetch([resources[0], *resources[2:]]))
    assert _rules(client.post("/cds-services/back-pain-after-chemo", json=body)) == []


@pytest.fixture
def fallback_client(tmp_path: Path, fhir_server: FhirTestServer):
    from backpain_cds.app import create_app

    settings = Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "fhir": {"allowed_servers": [fhir_server.base_url], "timeout_seconds": 30},
    })
    return create_app(settings).test_client(), fhir_server


@pytest.mark.fhir_server
@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_chemotherapy_context_is_fetched_when_prefetch_is_omitted(fallback_client, kind: str) -> None:
    client, server = fallback_client
    pid = f"oc-fb-{kind}-{uuid.uuid4().hex[:8]}"
    resources = _patient_resources(pid, CONTEXTS[kind])
    server.load({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})
    body = hr.patient_view(pid, fhir_server=server.base_url)
    assert _rules(client.post("/cds-services/back-pain-after-chemo", json=body)) == ["mscc-red-flags"]
