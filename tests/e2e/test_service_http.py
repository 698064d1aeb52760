"""The service as a real gunicorn process over HTTP: discovery, hooks, errors, prefetch states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import requests

from backpain_cds.replay import prefetch_from_resources
from backpain_cds.storage import SqlStore
from cds_hooks.schemas import validate_cds_response, validate_discovery
from tests.support import hook_requests as hr
from tests.support.http_recorder import CannedResponse, HttpRecorder
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recorder():
    with HttpRecorder() as rec:
        yield rec


@pytest.fixture(scope="module")
def outsider():
    """A FHIR server that is NOT on the allow-list: it must never receive a request."""
    with HttpRecorder() as rec:
        yield rec


@pytest.fixture(scope="module")
def live(tmp_path_factory, recorder):
    workdir = tmp_path_factory.mktemp("live")
    config = (
        f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
        "validate_responses = true\n"
        "[fhir]\n"
        f'allowed_servers = ["{recorder.url("/fhir")}"]\n'
        "timeout_seconds = 3\n"
        "[limits]\n"
        "max_body_bytes = 200000\n"
    )
    service = start_service(config, workdir)
    service.db_url = f"sqlite:///{workdir / 'cds.sqlite3'}"
    yield service
    stop_service(service)


@pytest.fixture(autouse=True)
def _fresh_recorders(recorder, outsider):
    recorder.clear()
    outsider.clear()


@pytest.fixture(scope="module")
def catalog():
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    return load_service_catalog(load_knowledge())


def _prefetch(catalog, service_id, hook, resources):
    service = catalog.resolve(service_id, hook)
    return prefetch_from_resources(service, resources)


def _post(live, service_id, body, **kw):
    return requests.post(live.url(f"/cds-services/{service_id}"), json=body, timeout=30, **kw)


def _rules(response):
    return sorted((c["extension"]["backpain-cds"]["rule"], c["indicator"]) for c in response.json()["cards"])


# --- discovery ------------------------------------------------------------------------------
def test_discovery_lists_one_id_per_hook(live):
    response = requests.get(live.url("/cds-services"), timeout=10)
    assert response.status_code == 200
    body = response.json()
    validate_discovery(body)
    pairs = {(s["id"], s["hook"]) for s in body["services"]}
    assert pairs == {
        ("back-pain-after-chemo", "patient-view"),
        ("back-pain-after-chemo-encounter", "encounter-start"),
        ("gcsf-order-select", "order-select"),
        ("gcsf-order-review", "order-sign"),
    }
    for service in body["services"]:
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for template in service["prefetch"].values():
            assert "today()" not in template and "{{Patient" not in template


def test_health_and_readiness(live):
    assert requests.get(live.url("/healthz"), timeout=5).json() == {"status": "ok"}
    assert requests.get(live.url("/readyz"), timeout=5).json()["database"] == "ok"
    assert "backpain_cds_hook_calls_total" in requests.get(live.url("/metrics"), timeout=5).text


# --- each hook ------------------------------------------------------------------------------
def test_patient_view_with_full_prefetch_returns_the_gcsf_card(live, catalog):
    now = datetime.now(UTC)
    body = hr.patient_view("gp1", prefetch=_prefetch(catalog, "back-pain-after-chemo", "patient-view", scenarios.gcsf_bone_pain("gp1", now)))
    response = _post(live, "back-pain-after-chemo", body)
    assert response.status_code == 200, response.text
    validate_cds_response(response.json())
    assert _rules(response) == [("gcsf-bone-pain", "info")]


def test_encounter_start_triages_like_patient_view(live, catalog):
    now = datetime.now(UTC)
    body = hr.encounter_start("ms1", prefetch=_prefetch(catalog, "back-pain-after-chemo-encounter", "encounter-start", scenarios.mscc("ms1", now)))
    response = _post(live, "back-pain-after-chemo-encounter", body)
    assert response.status_code == 200, response.text
    assert _rules(response) == [("mscc-red-flags", "critical")]


@pytest.mark.parametrize(("factory", "service_id"), [(hr.order_select, "gcsf-order-select"), (hr.order_sign, "gcsf-order-review")])
def test_order_hooks_answer_200(live, catalog, factory, service_id):
    body = factory("o1", prefetch=_prefetch(catalog, "gcsf-order-review", "order-sign", [scenarios.patient("o1")]))
    response = _post(live, service_id, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


def test_a_request_shaped_like_the_sandbox_gets_200(live):
    # The sandbox sends fhirServer, no fhirAuthorization, and only the prefetch keys it could fill.
    body = hr.patient_view("smart-1288992", prefetch=hr.nothing_found_prefetch(scenarios.patient("smart-1288992")), fhir_server=live.url("/unused"))
    response = _post(live, "back-pain-after-chemo", body)
    assert response.status_code == 200, response.text


# --- error statuses -------------------------------------------------------------------------
def _outcome(response):
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_malformed_json_is_400_with_an_operation_outcome(live):
    response = requests.post(live.url("/cds-services/back-pain-after-chemo"), data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert "not valid JSON" in _outcome(response)["diagnostics"]


def test_a_missing_field_is_400_naming_the_field(live):
    body = hr.patient_view()
    del body["context"]["patientId"]
    response = _post(live, "back-pain-after-chemo", body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["context.patientId"]


def test_an_unknown_service_is_404(live):
    response = _post(live, "no-such-service", hr.patient_view())
    assert response.status_code == 404
    assert _outcome(response)["code"] == "not-found"


def test_a_hook_the_service_does_not_run_on_is_400(live):
    response = _post(live, "gcsf-order-review", hr.patient_view(prefetch={}))
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["hook"]


def test_order_select_without_draft_orders_is_400(live):
    body = hr.order_select()
    del body["context"]["draftOrders"]
    response = _post(live, "gcsf-order-review", body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["context.draftOrders"]


def test_a_body_over_the_limit_is_413(live):
    body = hr.patient_view(prefetch={"patient": {"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 300_000}}})
    response = _post(live, "back-pain-after-chemo", body)
    assert response.status_code == 413
    assert _outcome(response)["code"] == "too-costly"


def test_get_on_a_service_is_405(live):
    response = requests.get(live.url("/cds-services/back-pain-after-chemo"), timeout=10)
    assert response.status_code == 405


def test_missing_prefetch_without_fhir_server_is_412(live):
    response = _post(live, "back-pain-after-chemo", hr.patient_view("p412"))
    assert response.status_code == 412
    assert "no fhirServer" in _outcome(response)["diagnostics"]


def test_a_fhir_server_off_the_allow_list_is_never_contacted(live, outsider):
    body = hr.patient_view("p1", fhir_server=outsider.url("/fhir"), fhirAuthorization={
        "access_token": "tok-should-not-leak", "token_type": "Bearer", "expires_in": 30,
        "scope": "patient/*.read", "subject": "backpain-cds"})
    response = _post(live, "back-pain-after-chemo", body)
    assert response.status_code == 412
    assert "allow-list" in _outcome(response)["diagnostics"]
    assert outsider.requests == []
    assert "tok-should-not-leak" not in live.log()


# --- prefetch states ------------------------------------------------------------------------
def _route_empty_searches(recorder, pid):
    for kind in ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition",
                 "Observation", "QuestionnaireResponse", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport"):
        recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
    recorder.route(f"/fhir/Patient/{pid}", CannedResponse(body=scenarios.patient(pid)))


def test_null_and_empty_bundle_prefetch_values_mean_nothing_found(live, catalog, recorder):
    prefetch = _prefetch(catalog, "back-pain-after-chemo", "patient-view", [scenarios.patient("pn")])
    for i, key in enumerate(list(prefetch)):
        if key != "patient":
            prefetch[key] = None if i % 2 else hr.searchset()
    response = _post(live, "back-pain-after-chemo", hr.patient_view("pn", prefetch=prefetch, fhir_server=recorder.url("/fhir")))
    assert response.status_code == 200, response.text
    assert recorder.requests == []


def test_absent_keys_are_fetched_and_only_those(live, catalog, recorder):
    now = datetime.now(UTC)
    resources = scenarios.gcsf_bone_pain("pa", now)
    _route_empty_searches(recorder, "pa")
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    recorder.route("/fhir/Condition", CannedResponse(body=hr.searchset(*conditions)))
    prefetch = _prefetch(catalog, "back-pain-after-chemo", "patient-view", resources)
    del prefetch["conditions"]
    del prefetch["patient"]
    response = _post(live, "back-pain-after-chemo", hr.patient_view("pa", prefetch=prefetch, fhir_server=recorder.url("/fhir")))
    assert response.status_code == 200, response.text
    assert sorted(r.path for r in recorder.requests) == ["/fhir/Condition", "/fhir/Patient/pa"]
    assert _rules(response) == [("gcsf-bone-pain", "info")]


def test_an_operation_outcome_value_is_fetched_again(live, catalog, recorder):
    now = datetime.now(UTC)
    resources = scenarios.gcsf_bone_pain("po", now)
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    recorder.route("/fhir/Condition", CannedResponse(body=hr.searchset(*conditions)))
    prefetch = _prefetch(catalog, "back-pain-after-chemo", "patient-view", resources)
    prefetch["conditions"] = hr.operation_outcome()
    response = _post(live, "back-pain-after-chemo", hr.patient_view("po", prefetch=prefetch, fhir_server=recorder.url("/fhir")))
    assert response.status_code == 200, response.text
    assert [r.path for r in recorder.requests] == ["/fhir/Condition"]
    assert _rules(response) == [("gcsf-bone-pain", "info")]


def test_a_prefetch_bundle_with_a_next_link_is_followed(live, catalog, recorder):
    now = datetime.now(UTC)
    resources = scenarios.gcsf_bone_pain("pg", now)
    back_pain = [r for r in resources if r["id"] == "pg-backpain"]
    cancer = [r for r in resources if r["id"] == "pg-cancer"]
    page2 = "/fhir/Condition?patient=pg&_offset=1"
    recorder.route(page2, CannedResponse(body=hr.searchset(*back_pain)))
    prefetch = _prefetch(catalog, "back-pain-after-chemo", "patient-view", resources)
    prefetch["conditions"] = hr.searchset(*cancer, next_url=recorder.url(page2))
    response = _post(live, "back-pain-after-chemo", hr.patient_view("pg", prefetch=prefetch, fhir_server=recorder.url("/fhir")))
    assert response.status_code == 200, response.text
    assert [r.target for r in recorder.requests] == [page2]
    # the back pain is only on page 2: without following next there would be no card
    assert _rules(response) == [("gcsf-bone-pain", "info")]


def test_a_fallback_query_that_fails_is_412(live, recorder):
    recorder.route("/fhir/Patient/pf", CannedResponse(status=500, body="boom"))
    response = _post(live, "back-pain-after-chemo", hr.patient_view("pf", fhir_server=recorder.url("/fhir")))
    assert response.status_code == 412
    assert _outcome(response)["code"] == "incomplete"


# --- feedback -------------------------------------------------------------------------------
def test_feedback_is_stored_once_per_card_and_outcome(live, catalog):
    now = datetime.now(UTC)
    call = hr.patient_view("fb1", prefetch=_prefetch(catalog, "back-pain-after-chemo", "patient-view", scenarios.gcsf_bone_pain("fb1", now)))
    card = _post(live, "back-pain-after-chemo", call).json()["cards"][0]["uuid"]
    body = {"feedback": [{"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
                          "outcomeTimestamp": "2026-01-02T03:04:05Z"}]}
    url = live.url("/cds-services/back-pain-after-chemo/feedback")
    assert requests.post(url, json=body, timeout=10).json() == {"received": 1, "stored": 1, "unmatched": 0}
    assert requests.post(url, json=body, timeout=10).json() == {"received": 1, "stored": 0, "unmatched": 0}
    rows = [r for r in SqlStore(live.db_url).feedback_rows() if r["card_uuid"] == card]
    assert len(rows) == 1


def test_feedback_on_a_card_never_issued_is_kept_apart(live):
    card = str(uuid.uuid4())
    body = {"feedback": [{"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
                          "outcomeTimestamp": "2026-01-02T03:04:05Z"}]}
    response = requests.post(live.url("/cds-services/back-pain-after-chemo/feedback"), json=body, timeout=10)
    assert response.json() == {"received": 1, "stored": 0, "unmatched": 1}
    assert not [r for r in SqlStore(live.db_url).feedback_rows() if r["card_uuid"] == card]
    assert [r["card_uuid"] for r in SqlStore(live.db_url).unmatched_feedback_rows() if r["card_uuid"] == card] == [card]


def test_invalid_feedback_is_400_and_nothing_is_stored(live):
    good = str(uuid.uuid4())
    body = {"feedback": [
        {"card": good, "outcome": "overridden", "overrideReason": {"reason": {"code": "patient-declined"}},
         "outcomeTimestamp": "2026-01-02T03:04:05Z"},
        {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-01-02T03:04:05Z"},
    ]}
    response = requests.post(live.url("/cds-services/back-pain-after-chemo/feedback"), json=body, timeout=10)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["feedback[1].acceptedSuggestions"]
    assert not [r for r in SqlStore(live.db_url).feedback_rows() if r["card_uuid"] == good]


def test_feedback_for_an_unknown_service_is_404(live):
    response = requests.post(live.url("/cds-services/nope/feedback"), json={"feedback": []}, timeout=10)
    assert response.status_code == 404


def test_cards_are_audited_with_their_rule(live, catalog):
    now = datetime.now(UTC)
    body = hr.patient_view("au1", prefetch=_prefetch(catalog, "back-pain-after-chemo", "patient-view", scenarios.gcsf_bone_pain("au1", now)))
    card = _post(live, "back-pain-after-chemo", body).json()["cards"][0]
    rows = [r for r in SqlStore(live.db_url).audit_rows() if r["card_uuid"] == card["uuid"]]
    assert rows and rows[0]["rule_id"] == "gcsf-bone-pain" and rows[0]["hook_instance"] == body["hookInstance"]


def test_the_service_log_never_contains_patient_clinical_values_or_tokens(live):
    log = live.log()
    assert "Bearer" not in log
    assert "Low back pain" not in log


def test_the_service_warms_up_before_the_fork_and_in_each_worker(live):
    lines = [line for line in live.log().splitlines() if '"warm-up done"' in line]
    assert any('"reason":"master"' in line for line in lines)
    assert any('"reason":"worker"' in line for line in lines)
    assert not [line for line in live.log().splitlines() if "warm-up failed" in line]
