"""The app wired with trusted clients: every endpoint needs the EHR's JWT; CORS is opt-in."""

from __future__ import annotations

import uuid

import pytest

from backpain_cds.app import create_app
from backpain_cds.settings import Settings
from tests.support import hook_requests as hr
from tests.support.jwt_factory import TestSigner

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"


@pytest.fixture
def signer():
    return TestSigner(alg="ES384", iss=ISS)


@pytest.fixture
def secured(tmp_path, signer):
    jwks = signer.write_jwks(tmp_path / "ehr-jwks.json")
    settings = Settings.from_mapping({
        "public_base_url": BASE,
        "database_url": f"sqlite:///{tmp_path / 'sec.sqlite3'}",
        "validate_responses": True,
        "auth": {"trusted_clients": [{"iss": ISS, "jwks_file": str(jwks)}]},
    })
    return create_app(settings).test_client()


def _auth(signer, path, **claims):
    return {"Authorization": f"Bearer {signer.token(BASE + path, **claims)}"}


def test_discovery_with_a_valid_token_is_200(secured, signer):
    assert secured.get("/cds-services", headers=_auth(signer, "/cds-services")).status_code == 200


@pytest.mark.parametrize("path", ["/cds-services", "/cds-services/back-pain-after-chemo", "/cds-services/back-pain-after-chemo/feedback"])
def test_every_endpoint_without_a_token_is_a_bare_401(secured, path):
    response = secured.get(path) if path == "/cds-services" else secured.post(path, json={})
    assert response.status_code == 401
    assert response.data == b""


def test_a_discovery_token_replayed_on_a_service_url_is_401(secured, signer):
    headers = _auth(signer, "/cds-services")
    response = secured.post("/cds-services/back-pain-after-chemo", json=hr.patient_view(prefetch={}), headers=headers)
    assert response.status_code == 401


def test_the_same_jti_twice_is_401_the_second_time(secured, signer):
    jti = str(uuid.uuid4())
    headers = _auth(signer, "/cds-services", jti=jti)
    assert secured.get("/cds-services", headers=headers).status_code == 200
    assert secured.get("/cds-services", headers=headers).status_code == 401


def test_feedback_needs_a_token_for_the_feedback_url(secured, signer):
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "overrideReason": {"userComment": "n/a"}, "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    path = "/cds-services/back-pain-after-chemo/feedback"
    assert secured.post(path, json=body, headers=_auth(signer, "/cds-services/back-pain-after-chemo")).status_code == 401
    assert secured.post(path, json=body, headers=_auth(signer, path)).status_code == 200


def test_an_authenticated_call_to_an_unknown_service_is_404(secured, signer):
    response = secured.post("/cds-services/nope", json=hr.patient_view(), headers=_auth(signer, "/cds-services/nope"))
    assert response.status_code == 404


def test_cors_is_off_by_default(client):
    response = client.options("/cds-services", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_answers_the_sandbox_preflight_for_configured_origins(tmp_path):
    settings = Settings.from_mapping({"database_url": f"sqlite:///{tmp_path / 'c.sqlite3'}", "cors_origins": ["http://localhost:3000"]})
    client = create_app(settings).test_client()
    response = client.options("/cds-services/back-pain-after-chemo", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    other = client.options("/cds-services", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in other.headers
