"""The hook call's time budget: past it, 200 with no cards, logged and counted, nothing left running."""

from __future__ import annotations

import threading
import time

import pytest

from backpain_cds.app import create_app
from backpain_cds.settings import Settings
from tests.support import hook_requests as hr
from tests.support import scenarios
from tests.support.http_recorder import CannedResponse, http_recorder  # noqa: F401


@pytest.fixture
def slow_app(tmp_path, http_recorder):
    http_recorder.route("/fhir/Patient/slow", CannedResponse(body=scenarios.patient("slow"), delay=3.0))
    for kind in ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition",
                 "Observation", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport"):
        http_recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
    settings = Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'd.sqlite3'}",
        "validate_responses": True,
        "fhir": {"allowed_servers": [http_recorder.url("/fhir")], "timeout_seconds": 10, "overall_timeout_seconds": 10},
        "limits": {"hook_deadline_seconds": 0.5},
    })
    return create_app(settings), http_recorder


def test_a_call_past_its_deadline_gets_200_with_no_cards_and_is_counted(slow_app, caplog):
    app, recorder = slow_app
    client = app.test_client()
    threads_before = threading.active_count()
    started = time.monotonic()
    response = client.post("/cds-services/back-pain-after-chemo", json=hr.patient_view("slow", fhir_server=recorder.url("/fhir")))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    assert elapsed < 2.0  # bounded by the 0.5 s budget, not by the 3 s slow query
    assert "backpain_cds_deadline_exceeded_total{service=\"back-pain-after-chemo\"" in client.get("/metrics").get_data(as_text=True)
    assert any("deadline passed" in r.getMessage() for r in caplog.records)
    time.sleep(0.3)
    assert threading.active_count() <= threads_before + 1  # no fetch worker left behind for long


def test_a_call_within_its_deadline_is_unaffected(tmp_path):
    settings = Settings.from_mapping({"database_url": f"sqlite:///{tmp_path / 'e.sqlite3'}", "validate_responses": True,
                                      "limits": {"hook_deadline_seconds": 5}})
    client = create_app(settings).test_client()
    body = hr.patient_view("fast", prefetch=hr.nothing_found_prefetch(scenarios.patient("fast")))
    assert client.post("/cds-services/back-pain-after-chemo", json=body).status_code == 200


def test_the_cpu_stages_are_checked_too(tmp_path):
    from backpain_cds.app import build_service
    from fhir_mapping.knowledge import load_knowledge

    service = build_service(Settings(), load_knowledge())
    service.deadline_seconds = 1e-9
    outcome = service.invoke("back-pain-after-chemo", hr.patient_view("cpu", prefetch=hr.nothing_found_prefetch(scenarios.patient("cpu"))))
    assert outcome.response == {"cards": []}
    assert "deadline" in outcome.assessment.notes[0]
