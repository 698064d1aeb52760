"""FhirClient against a live sekmet-fhir server (``fhir_server`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fhir_mapping.client import FhirClient, FhirClientLimits, FhirFetchError
from tools.harness.sekmet import FhirTestServer

pytestmark = pytest.mark.fhir_server

# Ids unique to this module: the server is shared by the whole test session.
PATIENT_ID = "fhirclient-it-patient"
PAIN_LOINC = "72514-3"  # Pain severity - 0-10 verbal numeric rating [Score] - Reported
HEART_RATE_LOINC = "8867-4"
N_PAIN = 30
N_HEART_RATE = 15
N_OBSERVATIONS = N_PAIN + N_HEART_RATE  # 45


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{resource['resourceType']}/{resource['id']}", "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _observation(i: int) -> dict[str, Any]:
    pain = i < N_PAIN
    code, display, value = ((PAIN_LOINC, "Pain severity", {"value": i % 11, "unit": "{score}",
                                                           "system": "http://unitsofmeasure.org",
                                                           "code": "{score}"})
                            if pain else
                            (HEART_RATE_LOINC, "Heart rate", {"value": 60 + i, "unit": "/min",
                                                              "system": "http://unitsofmeasure.org",
                                                              "code": "/min"}))
    return {
        "resourceType": "Observation",
        "id": f"fhirclient-it-obs-{i:02d}",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey" if pain else "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T09:00:00Z",
        "valueQuantity": value,
    }


def _bundle() -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female",
               "birthDate": "1961-04-02", "name": [{"family": "Testpatient", "given": ["Fhir"]}]}
    conditions = [
        {"resourceType": "Condition", "id": "fhirclient-it-cond-backpain",
         "clinicalStatus": {"coding": [{
             "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
             "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "161891005",
                              "display": "Backache"}]},
         "subject": {"reference": f"Patient/{PATIENT_ID}"}, "onsetDateTime": "2025-01-10"},
        {"resourceType": "Condition", "id": "fhirclient-it-cond-breast-ca",
         "clinicalStatus": {"coding": [{
             "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
             "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009",
                              "display": "Malignant neoplasm of breast"}]},
         "subject": {"reference": f"Patient/{PATIENT_ID}"}, "onsetDateTime": "2024-06-01"},
    ]
    resources = [patient, *(_observation(i) for i in range(N_OBSERVATIONS)), *conditions]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in resources]}


class _CountingSession(requests.Session):
    """A real session that counts GETs (a fake at the seam, not a mock)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        self.gets += 1
        return super().get(url, **kwargs)


@pytest.fixture(scope="module")
def loaded(fhir_server: FhirTestServer) -> FhirTestServer:
    response = fhir_server.load(_bundle())
    assert response["type"] == "transaction-response"
    assert len(response["entry"]) == 1 + N_OBSERVATIONS + 2
    return fhir_server


@pytest.fixture
def client(loaded: FhirTestServer) -> Iterator[FhirClient]:
    # The allow-list entry is spelled differently on purpose (trailing slash, upper case).
    allowed = [loaded.base_url.upper().replace("/FHIR", "/fhir") + "/"]
    with FhirClient(loaded.base_url, allowed_servers=allowed, access_token="test-token") as c:
        yield c


def _ids(bundle: dict[str, Any] | None) -> list[str]:
    assert bundle is not None
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_read_returns_the_patient(client: FhirClient) -> None:
    patient = client.get(f"Patient/{PATIENT_ID}")
    assert patient is not None
    assert patient["resourceType"] == "Patient" and patient["id"] == PATIENT_ID
    assert patient["birthDate"] == "1961-04-02"


def test_read_of_unknown_id_returns_none(client: FhirClient) -> None:
    assert client.get("Patient/fhirclient-it-does-not-exist") is None


def test_search_with_count_10_follows_next_links_to_all_45(loaded: FhirTestServer) -> None:
    session = _CountingSession()
    client = FhirClient(loaded.base_url, allowed_servers=[loaded.base_url], session=session)
    bundle = client.get(f"Observation?patient={PATIENT_ID}&_count=10")
    ids = _ids(bundle)
    assert len(ids) == N_OBSERVATIONS
    assert len(set(ids)) == N_OBSERVATIONS
    assert set(ids) == {f"fhirclient-it-obs-{i:02d}" for i in range(N_OBSERVATIONS)}
    assert bundle is not None and bundle["type"] == "searchset" and bundle["total"] == 45
    assert session.gets == 5  # 10 + 10 + 10 + 10 + 5
    session.close()


def test_search_by_patient_and_pain_code(client: FhirClient) -> None:
    bundle = client.get(f"Observation?patient={PATIENT_ID}&code=http://loinc.org|{PAIN_LOINC}")
    ids = _ids(bundle)
    assert len(ids) == N_PAIN  # more than sekmet's default page of 20: two pages
    assert bundle is not None
    assert all(e["resource"]["code"]["coding"][0]["code"] == PAIN_LOINC for e in bundle["entry"])


def test_condition_search(client: FhirClient) -> None:
    assert sorted(_ids(client.get(f"Condition?patient={PATIENT_ID}"))) == [
        "fhirclient-it-cond-backpain", "fhirclient-it-cond-breast-ca"]


def test_search_without_matches_returns_an_empty_searchset(client: FhirClient) -> None:
    bundle = client.get("Observation?patient=fhirclient-it-nobody")
    assert bundle is not None and bundle["type"] == "searchset" and "entry" not in bundle


def test_max_pages_is_enforced_against_a_real_server(loaded: FhirTestServer) -> None:
    client = FhirClient(loaded.base_url, allowed_servers=[loaded.base_url],
                        limits=FhirClientLimits(max_pages=3))
    with pytest.raises(FhirFetchError, match="more than 3 pages"):
        client.get(f"Observation?patient={PATIENT_ID}&_count=10")
    client.close()


def test_fetch_many_prefetch_style(client: FhirClient) -> None:
    results = client.fetch_many(
        {
            "patient": f"Patient/{PATIENT_ID}",
            "painScores": f"Observation?patient={PATIENT_ID}&code=http://loinc.org|{PAIN_LOINC}"
                          "&_count=10",
            "conditions": f"Condition?patient={PATIENT_ID}",
            "encounter": "Encounter/fhirclient-it-none",
        },
        deadline_seconds=15,
    )
    assert results["patient"] is not None and results["patient"]["id"] == PATIENT_ID
    assert len(_ids(results["painScores"])) == N_PAIN
    assert len(_ids(results["conditions"])) == 2
    assert results["encounter"] is None


def test_load_raises_on_a_rejected_bundle(fhir_server: FhirTestServer) -> None:
    # A conditional reference that matches nothing rolls the whole transaction back (404).
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:7d0c2c52-8f53-4b59-9d43-2b9a0d6c8b11",
        "resource": {"resourceType": "Observation", "status": "final",
                     "code": {"text": "x"},
                     "subject": {"reference": "Patient?identifier=urn:oid:1.2.3|no-such-mrn"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    with pytest.raises(RuntimeError, match="loading bundle failed: HTTP 4"):
        fhir_server.load(bad)
