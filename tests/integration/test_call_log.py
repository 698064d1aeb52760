"""The call log (``hook_call``): one row per answered hook call of a known service id, written by
the HTTP layer after the response has gone out, never changing the response when it fails.

Over a real gunicorn: tests/e2e/test_call_log_live.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from backpain_cds.app import create_app
from backpain_cds.replay import prefetch_from_resources
from backpain_cds.settings import Settings
from backpain_cds.storage import StorageError, hook_call
from backpain_cds.warm import warm_up
from tests.support import hook_requests as hr
from tests.support.http_recorder import CannedResponse
from tests.support.metrics_text import samples, total
from tests.support.signed_app import signed_app
from tools.harness import scenarios

PV = "back-pain-after-chemo"


def _rows(app) -> list[dict]:
    with app.extensions["backpain_cds"]["store"].engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(hook_call).order_by(hook_call.c.id))]


def _prefetch(app, resources):
    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    return prefetch_from_resources(service, resources)


def _post(client, path, **kw):
    """POST and close the response, as a WSGI server does once the body is sent."""
    response = client.post(path, **kw)
    response.close()
    return response


def test_each_answered_call_of_a_known_service_is_one_row(any_db_app):
    app = any_db_app
    client = app.test_client()
    now = datetime.now(UTC)
    ok = _post(client, f"/cds-services/{PV}",
               json=hr.patient_view("g1", prefetch=_prefetch(app, scenarios.gcsf_bone_pain("g1", now))))
    assert ok.status_code == 200 and len(ok.get_json()["cards"]) == 1
    empty = _post(client, f"/cds-services/{PV}",
                  json=hr.patient_view("p0", prefetch=hr.nothing_found_prefetch(scenarios.patient("p0"))))
    assert empty.status_code == 200 and empty.get_json() == {"cards": []}
    bad = _post(client, f"/cds-services/{PV}", json={"hook": "patient-view", "context": {}})
    assert bad.status_code == 400
    not_json = _post(client, f"/cds-services/{PV}", data=b"{", content_type="application/json")
    assert not_json.status_code == 400
    # no prefetch and an unreachable (allow-listed) FHIR server: 412
    missing = _post(client, f"/cds-services/{PV}", json=hr.patient_view("p2", fhir_server="http://127.0.0.1:1/fhir"))
    assert missing.status_code == 412
    assert _post(client, "/cds-services/no-such-service", json=hr.patient_view("p3")).status_code == 404
    assert _post(client, "/cds-services/bad id!", json=hr.patient_view("p3")).status_code == 404
    rows = _rows(app)
    assert [(r["service_id"], r["hook"], r["status"], r["cards"], r["deadline_exceeded"]) for r in rows] == [
        (PV, "patient-view", 200, 1, False),
        (PV, "patient-view", 200, 0, False),
        (PV, "patient-view", 400, 0, False),
        (PV, "unknown", 400, 0, False),  # the body never said which hook
        (PV, "patient-view", 412, 0, False),
    ]
    for row in rows:
        received = row["received_at"] if row["received_at"].tzinfo else row["received_at"].replace(tzinfo=UTC)
        assert now <= received <= datetime.now(UTC)
        assert row["duration_ms"] > 0


def test_duration_is_the_figure_the_metrics_histogram_observes(app, client):
    now = datetime.now(UTC)
    for pid in ("g1", "g2"):
        _post(client, f"/cds-services/{PV}",
              json=hr.patient_view(pid, prefetch=_prefetch(app, scenarios.gcsf_bone_pain(pid, now))))
    found = samples(client.get("/metrics").get_data(as_text=True))
    observed = total(found, "backpain_cds_hook_call_seconds_sum", service=PV)
    logged = sum(r["duration_ms"] for r in _rows(app)) / 1000.0
    assert logged == pytest.approx(observed, rel=1e-9, abs=1e-12)


def test_the_row_is_written_only_after_the_response_is_sent(app, client):
    response = client.post(f"/cds-services/{PV}",
                           json=hr.patient_view("p0", prefetch=hr.nothing_found_prefetch(scenarios.patient("p0"))))
    assert response.status_code == 200
    assert _rows(app) == []  # the WSGI server has not closed the response yet
    response.close()
    assert len(_rows(app)) == 1


def test_a_failing_write_never_changes_the_response_and_is_logged_once(app, client, caplog, monkeypatch):
    store = app.extensions["backpain_cds"]["store"]
    real = store.record_call

    def broken(record):
        raise StorageError("cannot write the call log: OperationalError")

    monkeypatch.setattr(store, "record_call", broken)
    body = hr.patient_view("secret-patient-77", prefetch=hr.nothing_found_prefetch(scenarios.patient("secret-patient-77")))
    caplog.set_level(logging.INFO, logger="backpain_cds.service")
    for _ in range(3):
        response = _post(client, f"/cds-services/{PV}", json=body)
        assert response.status_code == 200 and response.get_json() == {"cards": []}
    failed = [r for r in caplog.records if r.getMessage().startswith("call log write failed")]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING and failed[0].error == "StorageError"
    assert all("secret-patient-77" not in str(r.__dict__) for r in caplog.records if "call log" in r.getMessage())
    monkeypatch.setattr(store, "record_call", real)
    _post(client, f"/cds-services/{PV}", json=body)
    resumed = [r for r in caplog.records if r.getMessage() == "call log writes resumed"]
    assert len(resumed) == 1 and resumed[0].failed == 3
    assert len(_rows(app)) == 1


def test_a_refused_client_is_logged_as_401(tmp_path):
    with signed_app(tmp_path / "signed.sqlite3") as signed:
        app, client = signed.app, signed.app.test_client()
        path = f"/cds-services/{PV}"
        body = hr.patient_view(prefetch=hr.nothing_found_prefetch(scenarios.patient("p1")))
        assert _post(client, path, json=body, headers=signed.bearer(path)).status_code == 200
        assert _post(client, path, json=body).status_code == 401
        assert _post(client, "/cds-services/nope", json=body).status_code == 401  # auth first: not ours to log
    assert [(r["service_id"], r["hook"], r["status"]) for r in _rows(app)] == [
        (PV, "patient-view", 200), (PV, "unknown", 401)]  # refused before the body is read


def test_a_call_past_its_deadline_is_flagged(tmp_path, http_recorder):
    release = threading.Event()

    def held(_request):
        release.wait(30)
        return CannedResponse(body=scenarios.patient("slow"))

    http_recorder.route("/fhir/Patient/slow", held)
    for kind in ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition", "Observation",
                 "QuestionnaireResponse", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport"):
        http_recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
    app = create_app(Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'd.sqlite3'}",
        "fhir": {"allowed_servers": [http_recorder.url("/fhir")], "timeout_seconds": 10,
                 "overall_timeout_seconds": 10},
        "limits": {"hook_deadline_seconds": 0.3},
    }))
    try:
        response = _post(app.test_client(), f"/cds-services/{PV}",
                         json=hr.patient_view("slow", fhir_server=http_recorder.url("/fhir")))
    finally:
        release.set()
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    [row] = _rows(app)
    assert (row["status"], row["deadline_exceeded"], row["cards"]) == (200, True, 0)
    assert row["duration_ms"] >= 300


def test_warm_up_calls_are_not_logged(app):
    warm_up(app, where="master")
    assert _rows(app) == []
