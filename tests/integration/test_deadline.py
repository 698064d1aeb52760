"""The hook call's time budget: past it, 200 with no cards, logged and counted, nothing left running."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from backpain_cds.app import create_app
from backpain_cds.settings import Settings
from tests.support import hook_requests as hr
from tests.support.http_recorder import CannedResponse
from tests.support.metrics_text import by_label, samples
from tools.harness import scenarios


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def slow_app(tmp_path, http_recorder, release):
    def held(_request):  # answers only when the test releases it
        release.wait(60)
        return CannedResponse(body=scenarios.patient("slow"))

    http_recorder.route("/fhir/Patient/slow", held)
    for kind in ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition",
                 "Observation", "QuestionnaireResponse", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport"):
        http_recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
    settings = Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'd.sqlite3'}",
        "validate_responses": True,
        "fhir": {"allowed_servers": [http_recorder.url("/fhir")], "timeout_seconds": 10, "overall_timeout_seconds": 10},
        "limits": {"hook_deadline_seconds": 0.5},
    })
    return create_app(settings), http_recorder


def _fetch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("fhir-fetch"))


def test_a_call_past_its_deadline_gets_200_with_no_cards_and_is_counted(slow_app, caplog, release):
    app, recorder = slow_app
    client = app.test_client()
    response = client.post("/cds-services/back-pain-after-chemo", json=hr.patient_view("slow", fhir_server=recorder.url("/fhir")))
    assert not release.is_set()  # answered by the 0.5 s budget while the slow query was held
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert by_label(found, "backpain_cds_deadline_exceeded_total", "service") == {("back-pain-after-chemo",): 1}
    assert by_label(found, "backpain_cds_hook_calls_total", "status") == {("200",): 1}  # answered, no cards
    assert any("deadline passed" in r.getMessage() for r in caplog.records)
    limit = time.monotonic() + 15  # liveness bound (deadline + socket timeout + wide margin)
    while _fetch_threads() and time.monotonic() < limit:
        time.sleep(0.05)
    assert _fetch_threads() == 0  # no fetch worker left behind, though the server still holds


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


# --- cancellation points inside the CPU stages (issue 9): a fake clock, counted steps ---------
class _FakeTime:
    """Stands in for the ``time`` module of cds_hooks.service: the clock moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def _service_with_fake_clock(monkeypatch, deadline: float):
    import cds_hooks.service as service_module
    from backpain_cds.app import build_service
    from fhir_mapping.knowledge import load_knowledge

    fake = _FakeTime()
    monkeypatch.setattr(service_module, "time", fake)
    service = build_service(Settings(), load_knowledge())
    service.deadline_seconds = deadline
    return service, fake


def _conditions(pid: str, n: int) -> list[dict]:
    return [{"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/{pid}"},
             "code": {"text": "Low back pain"}, "clinicalStatus": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}
            for i in range(n)]


def test_a_slow_mapping_stage_is_abandoned_at_the_deadline_between_resources(monkeypatch):
    import fhir_mapping.extract as extract

    service, fake = _service_with_fake_clock(monkeypatch, deadline=2.5)
    mapped = []
    real = extract.condition_facts

    def slow_condition_facts(*args, **kwargs):
        mapped.append(args[1])
        fake.now += 1.0  # each Condition "takes" one second
        return real(*args, **kwargs)

    monkeypatch.setattr(extract, "condition_facts", slow_condition_facts)
    pid = "slowmap"
    prefetch = hr.nothing_found_prefetch(scenarios.patient(pid))
    prefetch["conditions"] = hr.searchset(*_conditions(pid, 50))
    outcome = service.invoke("back-pain-after-chemo", hr.patient_view(pid, prefetch=prefetch))
    assert outcome.response == {"cards": []}
    assert outcome.assessment.notes == ("deadline of 2.5 s passed during mapping",)
    assert 2 <= len(mapped) <= 3  # stopped at the first resource past the deadline, not after 50


def test_a_slow_assessment_stage_is_abandoned_before_the_next_rule(monkeypatch):
    import assessment.engine as engine

    service, fake = _service_with_fake_clock(monkeypatch, deadline=2.5)
    evaluated = []

    class _SlowRule:
        def __init__(self, rule):
            self.rule = rule
            self.RULE_ID = rule.RULE_ID

        def evaluate(self, situation):
            evaluated.append(self.RULE_ID)
            fake.now += 1.0
            return self.rule.evaluate(situation)

    slow_rules = tuple(_SlowRule(r) for r in engine.TRIAGE_RULES)
    assert len(slow_rules) >= 4
    monkeypatch.setattr(engine, "TRIAGE_RULES", slow_rules)
    now = datetime.now(UTC)
    from backpain_cds.replay import prefetch_from_resources

    definition = service.catalog.resolve("back-pain-after-chemo", "patient-view")
    body = hr.patient_view("sa1", prefetch=prefetch_from_resources(definition, scenarios.gcsf_bone_pain("sa1", now)))
    outcome = service.invoke("back-pain-after-chemo", body)
    assert outcome.response == {"cards": []}
    assert outcome.assessment.notes == ("deadline of 2.5 s passed during assessment",)
    assert len(evaluated) == 3  # rules 1-3 ran (0 -> 3 s); the 4th was never started
