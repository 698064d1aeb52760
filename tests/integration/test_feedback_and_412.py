"""412 OperationOutcomes per missing key, the feedback log line, feedback validators on both
databases, and feedback naming a card this service never issued (issues 9 and 13)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import pytest

from backpain_cds.logs import JsonFormatter
from tests.support import hook_requests as hr
from tools.harness import scenarios

PV = "back-pain-after-chemo"
TS = "2026-01-02T03:04:05Z"


def _issue_card(app) -> str:
    """Run a hook call that returns a card; its uuid is then one this service issued."""
    now = datetime.now(UTC)
    from backpain_cds.replay import prefetch_from_resources

    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    body = hr.patient_view("fb1", prefetch=prefetch_from_resources(service, scenarios.gcsf_bone_pain("fb1", now)))
    response = app.test_client().post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"][0]["uuid"]


def _overridden(card: str, comment: str | None = None, code: str | None = "patient-declined") -> dict:
    reason: dict = {}
    if code is not None:
        reason["reason"] = {"code": code}
    if comment is not None:
        reason["userComment"] = comment
    return {"card": card, "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": TS}


# --- 412: one issue per missing prefetch key ------------------------------------------------
def test_412_names_every_missing_prefetch_key_as_an_expression(client, app):
    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    body = hr.patient_view("p412", prefetch={"patient": scenarios.patient("p412")})
    response = client.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    expected = sorted(f"prefetch.{key}" for key in service.prefetch if key != "patient")
    assert [issue["expression"] for issue in outcome["issue"]] == [[e] for e in expected]
    for issue in outcome["issue"]:
        assert issue["severity"] == "error" and issue["code"] == "incomplete"
        assert "no fhirServer" in issue["diagnostics"]  # diagnostics kept on each issue


def test_412_for_a_server_off_the_allow_list_names_the_keys_too(client):
    body = hr.patient_view("p412", prefetch={"patient": scenarios.patient("p412")},
                           fhir_server="https://elsewhere.example.org/fhir")
    response = client.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 412
    expressions = [issue["expression"][0] for issue in response.get_json()["issue"]]
    assert "prefetch.conditions" in expressions and "prefetch.patient" not in expressions


# --- feedback log line ----------------------------------------------------------------------
def test_one_log_line_per_feedback_call_with_service_counts_and_card_ids(app, caplog):
    client = app.test_client()
    card = _issue_card(app)
    forged = str(uuid.uuid4())
    body = {"feedback": [
        {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": TS},
        _overridden(card, comment="private clinical remark about the patient"),
        _overridden(forged),
    ]}
    with caplog.at_level(logging.INFO, logger="backpain_cds"):
        response = client.post(f"/cds-services/{PV}/feedback", json=body)
    assert response.status_code == 200
    assert response.get_json() == {"received": 3, "stored": 2, "unmatched": 1}
    lines = [r for r in caplog.records if r.getMessage() == "feedback received"]
    assert len(lines) == 1
    entry = json.loads(JsonFormatter().format(lines[0]))
    assert entry["service"] == PV
    assert entry["entries"] == 3
    assert entry["outcomes"] == {"accepted": 1, "overridden": 2}
    assert entry["stored"] == 2 and entry["unmatched"] == 1
    assert sorted(entry["cards"]) == sorted([card, forged])
    text = json.dumps(entry)
    assert "hookInstance" not in entry and "fb1" not in text  # no hookInstance, no patient id
    assert "private clinical remark" not in text


# --- validators refuse what any supported database refuses ----------------------------------
@pytest.mark.parametrize(("entry", "field"), [
    (_overridden("card\x00uuid"), "feedback[0].card"),
    (_overridden("c" * 129), "feedback[0].card"),
    (_overridden(str(uuid.uuid4()), comment="fine until\x00here"), "feedback[0].overrideReason.userComment"),
    (_overridden(str(uuid.uuid4()), comment="x" * 4097), "feedback[0].overrideReason.userComment"),
    (_overridden(str(uuid.uuid4()), code="code\x00"), "feedback[0].overrideReason.reason.code"),
    ({"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": [{"id": "s\x00"}],
      "outcomeTimestamp": TS}, "feedback[0].acceptedSuggestions[0].id"),
])
def test_feedback_strings_a_database_would_refuse_are_400_naming_the_field(any_db_app, entry, field):
    store = any_db_app.extensions["backpain_cds"]["store"]
    response = any_db_app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": [entry]})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["issue"][0]["expression"] == [field]
    assert store.feedback_rows() == [] and store.unmatched_feedback_rows() == []


def test_the_longest_accepted_strings_are_stored_on_both_databases(any_db_app):
    store = any_db_app.extensions["backpain_cds"]["store"]
    card = _issue_card(any_db_app)
    body = {"feedback": [_overridden(card, comment="é" * 4096, code="c" * 256),
                         _overridden("u" * 128, comment="ünïcode")]}
    response = any_db_app.test_client().post(f"/cds-services/{PV}/feedback", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": 2, "stored": 1, "unmatched": 1}
    assert [r["override_comment"] for r in store.feedback_rows()] == ["é" * 4096]
    assert [r["card_uuid"] for r in store.unmatched_feedback_rows()] == ["u" * 128]
