"""Fixtures for the SMART app: sekmet loaded with scenario fixtures, the test EHR, the app."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from backpain_cds.settings import Settings
from tools.harness.fake_ehr import TestEhr
from tools.harness.sekmet import FhirTestServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
PUBLIC_BASE = "http://127.0.0.1:18501"
SECRET = "test-secret-for-the-smart-app-0123456789"
CLIENT_ID = "backpain-cds-test"
#: scenario fixtures loaded into sekmet for these tests (their patients)
MSCC = "in-mscc-red-flags-leg-weakness-observation"
GCSF = "in-gcsf-bone-pain-daily-filgrastim"


def fixture_bundle(name: str) -> dict[str, t.Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def patient_of(name: str) -> str:
    bundle = fixture_bundle(name)
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


@pytest.fixture(scope="module")
def loaded_fhir(fhir_server: FhirTestServer) -> FhirTestServer:
    for name in (MSCC, GCSF):
        fhir_server.load(fixture_bundle(name))
    return fhir_server


@pytest.fixture
def ehr(loaded_fhir: FhirTestServer) -> t.Iterator[TestEhr]:
    with TestEhr(loaded_fhir.base_url, redirect_uri=f"{PUBLIC_BASE}/smart/callback",
                 client_id=CLIENT_ID) as server:
        yield server


def smart_settings(tmp_path: Path, iss: str, *, allowed: t.Sequence[str] = (), **smart: t.Any) -> Settings:
    return Settings.from_mapping(
        {
            "public_base_url": PUBLIC_BASE,
            "database_url": f"sqlite:///{tmp_path / 'smart.sqlite3'}",
            "validate_responses": True,
            "fhir": {"allowed_servers": [iss, *allowed], "timeout_seconds": 5},
            "smart": {"secret": SECRET, "client_id": CLIENT_ID, "ehrs": [{"iss": iss}], **smart},
        }
    )


@pytest.fixture
def smart_app(tmp_path: Path, ehr: TestEhr):
    from backpain_cds.app import create_app

    # the hooks may read sekmet directly (the cards' appContext tests call them)
    settings = smart_settings(tmp_path, ehr.fhir_url, allowed=[ehr.fhir_upstream])
    return create_app(settings, clock=lambda: NOW)


@pytest.fixture
def browser(smart_app):
    return smart_app.test_client()


def local_path(url: str) -> str:
    """The path+query of one of our own URLs (the test client talks to the app directly)."""
    assert url.startswith(PUBLIC_BASE + "/"), url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Flow:
    launch: t.Any  #: the app's answer to /smart/launch
    authorize_url: str
    callback_url: str
    callback: t.Any  #: the app's answer to /smart/callback
    view: t.Any | None  #: the app's answer to the view URL


def run_launch(browser: t.Any, ehr: TestEhr, launch: str, *, iss: str | None = None) -> Flow:
    """EHR launch → authorize at the test EHR (real HTTP) → callback → view, redirects by hand."""
    first = browser.get("/smart/launch", query_string={"iss": iss or ehr.fhir_url, "launch": launch})
    assert first.status_code == 302, first.get_data(as_text=True)
    authorize_url = first.headers["Location"]
    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(authorize_url, allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    callback_url = answer.headers["Location"]
    callback = browser.get(local_path(callback_url))
    view = None
    if callback.status_code == 303:
        view = browser.get(local_path(callback.headers["Location"]))
    return Flow(first, authorize_url, callback_url, callback, view)


def card_app_context(browser: t.Any, ehr: TestEhr, patient_id: str) -> tuple[str, dict[str, t.Any]]:
    """Call the patient-view hook (data from sekmet) and return the card's smart appContext."""
    from tests.support import hook_requests as hr

    body = hr.patient_view(patient_id, fhir_server=ehr.fhir_upstream)
    answer = browser.post("/cds-services/back-pain-after-chemo", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    cards = answer.get_json()["cards"]
    assert len(cards) == 1
    smart = [link for link in cards[0]["links"] if link["type"] == "smart"]
    assert smart and smart[0]["url"] == f"{PUBLIC_BASE}/smart/launch"
    return smart[0]["appContext"], cards[0]
