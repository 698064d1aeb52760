"""No token, JWT, Authorization header, access_token, clinical value or patient id in the logs.

In-process (caplog, every logger at DEBUG) over successful, rejected and failing hook calls,
and once through a real gunicorn process (``start_service``) by reading its log file. The
service's log lines are JSON with the ``hookInstance`` of the call.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import pytest
import requests

from backpain_cds.app import create_app, load_service_catalog
from backpain_cds.logs import JsonFormatter, redact, safe_traceback
from backpain_cds.replay import prefetch_from_resources
from backpain_cds.settings import Settings
from cds_hooks.json_body import decode_resource
from fhir_mapping.knowledge import load_knowledge
from tests.support import hook_requests as hr
from tests.support.jwt_factory import TestSigner
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
SERVICE = "back-pain-after-chemo"
PATIENT = "pat-LOGCHECK-4711"
ACCESS_TOKEN = "ehr-access-token-LOGCHECK-8e1f"
NOTE = "Patient reports numbness LOGCHECK-note"
# clinical values of the scenario: display texts, a distinctive free text, the patient id
CLINICAL = ("Retention of urine", "Malignant neoplasm", "pegfilgrastim", "Low back pain", NOTE, PATIENT)


@pytest.fixture(scope="module")
def signer():
    return TestSigner(alg="ES384", iss=ISS)


@pytest.fixture(scope="module")
def catalog():
    return load_service_catalog(load_knowledge())


def _request(catalog, hook_instance: str | None = None) -> dict:
    resources = scenarios.mscc(PATIENT, datetime.now(UTC))
    resources[3]["note"] = [{"text": NOTE}]
    body = hr.patient_view(
        PATIENT, fhirServer="https://ehr.example.org/fhir/r4",
        fhirAuthorization={"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                           "scope": "patient/*.read", "subject": "backpain-cds", "patient": PATIENT},
    )
    body["hookInstance"] = hook_instance or str(uuid.uuid4())
    body["prefetch"] = prefetch_from_resources(catalog.resolve(SERVICE, "patient-view"), resources)
    return body


def _assert_clean(text: str, secrets: list[str]) -> None:
    for secret in [*secrets, ACCESS_TOKEN, *CLINICAL]:
        assert secret not in text, f"{secret!r} reached the log"
    assert "Bearer ey" not in text


@pytest.fixture
def secured(tmp_path, signer):
    jwks = signer.write_jwks(tmp_path / "jwks.json")
    app = create_app(Settings.from_mapping({
        "public_base_url": BASE,
        "database_url": f"sqlite:///{tmp_path / 'log.sqlite3'}",
        "validate_responses": True,
        "limits": {"max_body_bytes": 200_000},
        "auth": {"trusted_clients": [{"iss": ISS, "jwks_file": str(jwks)}]},
    }))
    return app


def _logged(caplog) -> str:
    """Every record as the service writes it (JSON) and as its raw message."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(r) + "\n" + r.getMessage() for r in caplog.records)


def test_hook_calls_log_ids_not_tokens_or_clinical_values(secured, signer, catalog, caplog):
    caplog.set_level(logging.DEBUG)
    client = secured.test_client()
    path = f"/cds-services/{SERVICE}"
    tokens = []

    def call(body, **kw):
        token = signer.token(BASE + path)
        tokens.append(token)
        return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"}, **kw)

    hook_instance = str(uuid.uuid4())
    ok = call(_request(catalog, hook_instance))
    assert ok.status_code == 200 and ok.get_json()["cards"]
    bad_field = _request(catalog)
    bad_field["context"]["patientId"] = f"{PATIENT}/{ACCESS_TOKEN}"
    assert call(bad_field).status_code == 400
    missing = _request(catalog)
    del missing["prefetch"]["conditions"]
    assert call(missing).status_code == 412  # fhirServer not allow-listed: never contacted
    too_big = _request(catalog)
    too_big["extension"] = {"pad": NOTE * 10_000}
    assert call(too_big).status_code == 413
    replayed = tokens[0]
    assert client.post(path, json=_request(catalog), headers={"Authorization": f"Bearer {replayed}"}).status_code == 401
    assert client.post(path, json=_request(catalog), headers={"Authorization": f"Bearer {replayed[:-4]}AAAA"}).status_code == 401
    assert client.post(path, json=_request(catalog), headers={"Authorization": f"Basic {ACCESS_TOKEN}"}).status_code == 401

    text = _logged(caplog)
    _assert_clean(text, tokens)
    # the successful call is logged as one JSON line carrying its hookInstance and rule ids
    answered = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "hook call answered"]
    assert any(line.get("hookInstance") == hook_instance and line.get("cards") for line in answered)
    rejected = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request rejected"]
    assert {line["status"] for line in rejected} >= {400, 412, 413}


def test_an_unexpected_error_logs_class_and_location_not_the_message(secured, signer, catalog, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    service = secured.extensions["backpain_cds"]["service"]
    token = signer.token(f"{BASE}/cds-services/{SERVICE}")

    def explode(service_id, body, **kw):
        condition = decode_resource(body["prefetch"]["conditions"].resources[0])  # a LazyBundle
        display = condition["code"]["coding"][0]["display"]
        raise ValueError(f"cannot map {display} for {PATIENT} with {ACCESS_TOKEN} / {token}")

    monkeypatch.setattr(service, "invoke", explode)
    hook_instance = str(uuid.uuid4())
    response = secured.test_client().post(
        f"/cds-services/{SERVICE}", json=_request(catalog, hook_instance), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    _assert_clean(response.get_data(as_text=True), [token])
    _assert_clean(_logged(caplog), [token])
    errors = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[-1]["error"] == "ValueError"
    assert errors[-1]["hookInstance"] == hook_instance
    assert any("test_logging_hygiene.py" in line and "explode" in line for line in errors[-1]["traceback"])


def test_the_formatter_drops_exception_messages_and_redacts_tokens(signer):
    token = signer.token(BASE)
    try:
        try:
            raise KeyError(f"{ACCESS_TOKEN}")
        except KeyError as inner:
            raise RuntimeError(f"Authorization: Bearer {token} {NOTE}") from inner
    except RuntimeError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (f"Bearer {token}",),
                                   (type(exc), exc, exc.__traceback__))
        record.reason = f"access_token={ACCESS_TOKEN}"
        chain = safe_traceback(exc)
    line = JsonFormatter().format(record)
    _assert_clean(line, [token])
    assert [entry.split(" at ")[0] for entry in chain] == ["builtins.RuntimeError", "builtins.KeyError"]
    assert json.loads(line)["error"] == "RuntimeError"
    assert redact(f"jwt {token} end") == "jwt [redacted-jwt] end"


@pytest.mark.e2e
def test_a_real_gunicorn_process_logs_no_secrets(tmp_path, signer, catalog):
    jwks = signer.write_jwks(tmp_path / "jwks.json")
    config = (
        f'database_url = "sqlite:///{tmp_path / "live.sqlite3"}"\n'
        "[[auth.trusted_clients]]\n"
        f'iss = "{ISS}"\n'
        f'jwks_file = "{jwks}"\n'
        "[limits]\n"
        "max_body_bytes = 200000\n"
    )
    live = start_service(config, tmp_path)
    tokens: list[str] = []
    hook_instance = str(uuid.uuid4())
    try:
        url = live.url(f"/cds-services/{SERVICE}")

        def call(body, token=None, **kw):
            token = token or signer.token(url)
            tokens.append(token)
            return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)

        assert call(_request(catalog, hook_instance)).status_code == 200
        assert call(_request(catalog), token=tokens[0]).status_code == 401  # replay
        bad = _request(catalog)
        bad["context"]["userId"] = ACCESS_TOKEN
        assert call(bad).status_code == 400
        assert call(_request(catalog) | {"extension": {"pad": NOTE * 10_000}}).status_code == 413
        chunked = requests.post(url, data=iter([json.dumps(_request(catalog)).encode()] * 3), timeout=30,
                                headers={"Authorization": f"Bearer {signer.token(url)}", "Content-Type": "application/json"})
        assert chunked.status_code == 400  # three JSON documents in a row are not one document
        assert requests.post(url + "?access_token=" + ACCESS_TOKEN, data="x", timeout=30,
                             headers={"Authorization": f"Bearer {signer.token(url)}", "Content-Type": "text/plain"}).status_code == 415
    finally:
        stop_service(live)
    text = live.log()
    _assert_clean(text, tokens)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("hookInstance") == hook_instance and line.get("message") == "hook call answered" for line in lines)
    assert any("reason=replay" in line.get("message", "") for line in lines)
    assert any(line.get("status") == 415 for line in lines)
