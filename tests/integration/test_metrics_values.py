"""/metrics of the app in-process (one registry per app): exact values after a known sequence,
the auth stage in signed mode, and no patient data in any label whatever the requests carry.

The same sums over gunicorn's workers: tests/e2e/test_metrics_workers.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from backpain_cds.app import create_app
from backpain_cds.replay import prefetch_from_resources
from backpain_cds.settings import Settings
from tests.support import hook_requests as hr
from tests.support.http_recorder import CannedResponse
from tests.support.metrics_text import by_label, label_problems, samples, total
from tests.support.signed_app import signed_app
from tools.harness import scenarios

PV = "back-pain-after-chemo"
TS = "2026-01-02T03:04:05Z"
#: strings a request may carry that must never reach /metrics
SECRET = "s3cr3t-7731"


def _catalog_sets(app):
    state = app.extensions["backpain_cds"]
    catalog, knowledge = state["service"].catalog, state["service"].knowledge
    return {
        "services": {s.id for s in catalog.services},
        "prefetch_keys": {k for s in catalog.services for k in s.prefetch},
        "override_codes": {c.code for rows in knowledge.actions.override_reasons.values() for c in rows},
    }


def _metrics(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True)


def _prefetch(app, resources):
    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    return prefetch_from_resources(service, resources)


@pytest.fixture
def fhir_app(tmp_path, http_recorder):
    """The app with one allow-listed FHIR server that finds nothing."""
    for kind in ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition", "Observation",
                 "QuestionnaireResponse", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport"):
        http_recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
    settings = Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'm.sqlite3'}",
        "validate_responses": True,
        "fhir": {"allowed_servers": [http_recorder.url("/fhir")], "timeout_seconds": 5},
    })
    return create_app(settings), http_recorder


def test_exact_values_after_a_known_sequence(fhir_app):
    app, recorder = fhir_app
    client = app.test_client()
    now = datetime.now(UTC)
    cards = []
    for i in range(3):
        response = client.post(f"/cds-services/{PV}", json=hr.patient_view(
            f"g{i}", prefetch=_prefetch(app, scenarios.gcsf_bone_pain(f"g{i}", now))))
        assert response.status_code == 200
        cards += response.get_json()["cards"]
    response = client.post(f"/cds-services/{PV}", json=hr.patient_view(
        "m1", prefetch=_prefetch(app, scenarios.mscc("m1", now))))
    cards += response.get_json()["cards"]
    assert [(c["extension"]["backpain-cds"]["rule"], c["indicator"]) for c in cards] == [
        ("gcsf-bone-pain", "info")] * 3 + [("mscc-red-flags", "critical")]
    # everything but the patient fetched from the allow-listed server (which finds nothing)
    fetched = client.post(f"/cds-services/{PV}", json=hr.patient_view(
        "f1", prefetch={"patient": scenarios.patient("f1")}, fhir_server=recorder.url("/fhir")))
    assert fetched.status_code == 200 and fetched.get_json() == {"cards": []}
    assert client.post(f"/cds-services/{PV}", data=b"{not json", content_type="application/json").status_code == 400
    assert client.post(f"/cds-services/{PV}", json={"hook": "patient-view"}).status_code == 400
    assert client.post("/cds-services/no-such-service", json=hr.patient_view("x")).status_code == 404
    refused = client.post(f"/cds-services/{PV}", json=hr.patient_view("p412", prefetch={"patient": scenarios.patient("p412")}))
    assert refused.status_code == 412
    feedback = [{"card": cards[0]["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": TS},
                {"card": cards[1]["uuid"], "outcome": "overridden", "overrideReason": {"reason": {"code": "snooze-cycle"}},
                 "outcomeTimestamp": TS}]
    assert client.post(f"/cds-services/{PV}/feedback", json={"feedback": feedback}).status_code == 200
    # the same again (a client's retry), and one naming a card never issued: neither is feedback
    assert client.post(f"/cds-services/{PV}/feedback", json={"feedback": feedback[:1] + [
        {**feedback[0], "card": "never-issued"}]}).status_code == 200

    found = samples(_metrics(client))
    assert by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status") == {
        (PV, "patient-view", "200"): 5, (PV, "unknown", "400"): 1, (PV, "patient-view", "400"): 1,
        ("unknown", "unknown", "404"): 1, (PV, "patient-view", "412"): 1}
    assert by_label(found, "backpain_cds_hook_call_seconds_count", "service", "hook", "status") == \
        by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status")
    assert by_label(found, "backpain_cds_cards_total", "rule", "indicator") == {
        ("gcsf-bone-pain", "info"): 3, ("mscc-red-flags", "critical"): 1}
    assert by_label(found, "backpain_cds_feedback_total", "outcome", "override_reason") == {
        ("accepted", "none"): 1, ("overridden", "snooze-cycle"): 1}
    assert by_label(found, "backpain_cds_feedback_set_apart_total", "reason") == {("unmatched",): 1, ("repeat",): 1}
    keys = sorted(app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view").prefetch)
    prefetch = by_label(found, "backpain_cds_prefetch_total", "key", "outcome")
    assert prefetch[("patient", "supplied")] == 6  # four full prefetches, the fetched call, the 412
    assert {k: prefetch.get((k, "fetched")) for k in keys if k != "patient"} == {k: 1 for k in keys if k != "patient"}
    assert {k: prefetch.get((k, "failed")) for k in keys if k != "patient"} == {k: 1 for k in keys if k != "patient"}
    # stages: parse and prefetch for every call past parsing (5 answered + the 412), fetch once,
    # storage for the four calls with cards; auth never (development mode)
    assert by_label(found, "backpain_cds_stage_seconds_count", "stage") == {
        ("parse",): 6, ("prefetch",): 6, ("fetch",): 1, ("mapping",): 5, ("assessment",): 5, ("render",): 5,
        ("storage",): 4}
    assert by_label(found, "backpain_cds_errors_total", "status") == {("400",): 2, ("404",): 1, ("412",): 1}
    assert total(found, "backpain_cds_deadline_exceeded_total") == 0


def test_no_patient_data_in_any_label(fhir_app):
    app, recorder = fhir_app
    client = app.test_client()
    patient = f"Patient-{SECRET}"
    hook_instance = str(uuid.uuid4())
    now = datetime.now(UTC)
    body = hr.patient_view(patient, prefetch=_prefetch(app, scenarios.gcsf_bone_pain(patient, now)))
    body["hookInstance"] = hook_instance
    card = client.post(f"/cds-services/{PV}", json=body).get_json()["cards"][0]["uuid"]
    hostile = [
        hr.patient_view(patient, prefetch={"patient": scenarios.patient(patient)},
                        fhir_server=f"https://{SECRET}.example.org/fhir"),  # off the allow-list: 412
        hr.patient_view(patient, prefetch={"patient": scenarios.patient(patient)},
                        fhir_server=recorder.url(f"/fhir?{SECRET}")),
        {**hr.patient_view(patient), "hook": f"hook-{SECRET}"},
        {**hr.patient_view(patient), f"prefetch-{SECRET}": 1, "prefetch": {f"key-{SECRET}": None}},
    ]
    for request in hostile:
        client.post(f"/cds-services/{PV}", json=request)
    client.post(f"/cds-services/service-{SECRET}", json=hr.patient_view(patient))
    client.post(f"/cds-services/{SECRET}/feedback", json={"feedback": []})
    client.post(f"/cds-services/{PV}/feedback", json={"feedback": [
        {"card": card, "outcome": "overridden", "outcomeTimestamp": TS,
         "overrideReason": {"reason": {"code": f"code-{SECRET}", "system": f"urn:{SECRET}"}, "userComment": SECRET}},
        {"card": f"card-{SECRET}", "outcome": "overridden", "outcomeTimestamp": TS,
         "overrideReason": {"reason": {"code": "snooze-cycle", "system": f"urn:{SECRET}"}}},
    ]})
    text = _metrics(client)
    assert label_problems(text, **_catalog_sets(app)) == []
    for leaked in (SECRET, hook_instance, card, "example.org", "127.0.0.1"):
        assert leaked not in text
    found = samples(text)
    # the card issued: counted (its code is not ours: "other"); the forged uuid: set apart
    assert by_label(found, "backpain_cds_feedback_total", "outcome", "override_reason") == {("overridden", "other"): 1}
    assert by_label(found, "backpain_cds_feedback_set_apart_total", "reason") == {("unmatched",): 1}
    assert total(found, "backpain_cds_hook_calls_total", service="unknown") == 1


def test_signed_mode_times_the_client_check_and_counts_refusals(tmp_path):
    with signed_app(tmp_path / "signed.sqlite3") as signed:
        client = signed.app.test_client()
        path = f"/cds-services/{PV}"
        body = hr.patient_view(prefetch=hr.nothing_found_prefetch(scenarios.patient("p1")))
        assert client.post(path, json=body, headers=signed.bearer(path)).status_code == 200
        assert client.post(path, json=body).status_code == 401
        assert client.post(path, json=body, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
        found = samples(_metrics(client))
    assert by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status") == {
        (PV, "patient-view", "200"): 1, (PV, "unknown", "401"): 2}  # refused before the body is read
    assert total(found, "backpain_cds_stage_seconds_count", stage="auth") == 3
