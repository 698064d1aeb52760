"""No prefetch at all: the gunicorn service fetches everything from a live sekmet-fhir server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from cds_hooks.schemas import validate_cds_response
from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.fhir_server]


@pytest.fixture(scope="module")
def live_with_fhir(tmp_path_factory, fhir_server):
    workdir = tmp_path_factory.mktemp("live-fhir")
    config = (
        f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
        "validate_responses = true\n"
        "[fhir]\n"
        f'allowed_servers = ["{fhir_server.base_url}"]\n'
    )
    service = start_service(config, workdir)
    yield service, fhir_server
    stop_service(service)


def test_every_key_is_fetched_from_the_fhir_server_when_nothing_is_prefetched(live_with_fhir):
    service, fhir = live_with_fhir
    now = datetime.now(UTC)
    fhir.load(scenarios.transaction(scenarios.mscc("e2e-fb-1", now)))
    body = hr.patient_view("e2e-fb-1", fhir_server=fhir.base_url, fhirAuthorization={
        "access_token": "opaque-test-token", "token_type": "Bearer", "expires_in": 30,
        "scope": "patient/*.read", "subject": "backpain-cds", "patient": "e2e-fb-1"})
    response = requests.post(service.url("/cds-services/back-pain-after-chemo"), json=body, timeout=30)
    assert response.status_code == 200, response.text
    validate_cds_response(response.json())
    cards = response.json()["cards"]
    assert [c["extension"]["backpain-cds"]["rule"] for c in cards] == ["mscc-red-flags"]
    evidence = cards[0]["extension"]["backpain-cds"]["evidence"]
    assert "Condition/e2e-fb-1-retention" in evidence


def test_an_unknown_patient_on_the_fhir_server_gives_no_card(live_with_fhir):
    service, fhir = live_with_fhir
    body = hr.patient_view("e2e-nobody", fhir_server=fhir.base_url)
    response = requests.post(service.url("/cds-services/back-pain-after-chemo"), json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
