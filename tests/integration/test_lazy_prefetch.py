"""The HTTP path decodes prefetch Bundles lazily; it must give exactly what a full parse gives.

For every scenario fixture, for hostile requests (hypothesis) and for a large mixed record,
the same bytes go through ``CdsService.invoke`` twice: once parsed in full (``orjson``, as
``backpain-cds replay`` and the tests do) and once as the HTTP layer parses them
(``decode_hook_body``). The patient record, the assessment and the cards must be identical;
when one is refused, the other must be refused with the same error class (only which of two
malformed resources is named first may differ, and the wording of invalid-UTF-8 errors).
"""

from __future__ import annotations

import copy
import random
import typing as t
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

import cds_hooks.service as service_module
from backpain_cds.app import build_service, load_service_catalog
from backpain_cds.replay import ReplayInputError, build_call, prefetch_from_resources
from backpain_cds.settings import Settings
from cds_hooks.json_body import decode_hook_body
from fhir_mapping.knowledge import load_knowledge
from tests.support import hook_requests as hr
from tests.support.hostile_requests import mutated_requests, requests_with_random_prefetch
from tools.harness import scenarios

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOOKS = ("patient-view", "encounter-start", "order-select", "order-sign")


@pytest.fixture(scope="module")
def knowledge():
    return load_knowledge()


@pytest.fixture(scope="module")
def service(knowledge):
    return build_service(Settings(), knowledge)


@pytest.fixture(scope="module")
def catalog(knowledge):
    return load_service_catalog(knowledge)


@pytest.fixture
def records(monkeypatch) -> list[t.Any]:
    """Every PatientRecord the service builds, in order."""
    seen: list[t.Any] = []
    real = service_module.extract_record

    def spy(*args: t.Any, **kwargs: t.Any) -> t.Any:
        record = real(*args, **kwargs)
        seen.append(record)
        return record

    monkeypatch.setattr(service_module, "extract_record", spy)
    return seen


def _without_uuids(value: t.Any) -> t.Any:
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


def _run(service, records: list[t.Any], service_id: str, body: t.Any) -> tuple[t.Any, ...]:
    records.clear()
    try:
        outcome = service.invoke(service_id, body, now=NOW)
    except Exception as exc:  # noqa: BLE001 - the error class is what is compared
        return ("refused", type(exc).__name__)
    record = records[0] if records else None
    return ("answered", record, outcome.assessment, _without_uuids(outcome.response))


def _assert_same(service, records, service_id: str, raw: bytes) -> tuple[t.Any, ...]:
    full = _run(service, records, service_id, orjson.loads(raw))
    lazy = _run(service, records, service_id, decode_hook_body(raw))
    assert lazy == full
    return full


def _fixture_calls(catalog) -> t.Iterator[tuple[str, str, bytes]]:
    for path in sorted(FIXTURES.glob("*-*.json")):
        if path.name.endswith(".expected.json"):
            continue
        document = orjson.loads(path.read_bytes())
        for hook in HOOKS:
            try:
                call = build_call(copy.deepcopy(document), catalog, service_id=None, hook=hook)
            except ReplayInputError:
                continue
            yield f"{path.stem}:{hook}", call.service_id, orjson.dumps(call.body)


def test_every_fixture_gives_the_same_record_assessment_and_cards(service, catalog, records):
    answered = 0
    calls = list(_fixture_calls(catalog))
    assert len(calls) >= 67
    for _name, service_id, raw in calls:
        result = _assert_same(service, records, service_id, raw)
        answered += result[0] == "answered"
    assert answered >= 67  # each fixture answers at least on its main hook


def test_a_large_shuffled_record_with_medications_after_their_requests(service, catalog, records):
    """Medication resources after the requests naming them, drafts also in the prefetch."""
    rng = random.Random(7)
    resources = scenarios.gcsf_bone_pain("p1", NOW, score=6) + scenarios.mscc("p1", NOW)
    for i in range(1500):
        resources.append({"resourceType": "Observation", "id": f"hr{i}", "status": "final",
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01T10:00:00Z",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}})
    for i in range(40):
        resources.append({"resourceType": "Medication", "id": f"med{i}",
                          "code": {"text": "pegfilgrastim 6 mg" if i % 2 else "ondansetron 8 mg"}})
        resources.append({"resourceType": "MedicationRequest", "id": f"mr{i}", "status": "active",
                          "intent": "order", "subject": {"reference": "Patient/p1"},
                          "authoredOn": f"2026-11-1{i % 10}T09:00:00Z",
                          "medicationReference": {"reference": f"Medication/med{i}"}})
        resources.append({"resourceType": "MedicationAdministration", "id": f"ma{i}", "status": "completed",
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": f"2026-11-1{i % 10}T09:00:00Z",
                          "medicationCodeableConcept": {"text": "filgrastim 300 mcg" if i % 3 else "paracetamol"}})
    for kind, service_id in (("patient-view", "back-pain-after-chemo"), ("order-sign", "gcsf-order-review")):
        body = hr.patient_view("p1") if kind == "patient-view" else hr.order_sign(
            "p1", [hr.draft_medication_request("mr3", "pegfilgrastim 6 mg")])
        prefetch = prefetch_from_resources(catalog.resolve(service_id, kind), resources)
        for value in prefetch.values():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                rng.shuffle(value["entry"])
                value["entry"].sort(key=lambda e: e["resource"]["resourceType"] == "Medication")
        body["prefetch"] = prefetch
        result = _assert_same(service, records, service_id, orjson.dumps(body))
        assert result[0] == "answered"
        record = result[1]
        # the 20 pegfilgrastim requests resolved through their Medication; mr3 is the draft
        expected = 20 - (kind == "order-sign")
        assert sum(1 for m in record.medications if m.ref.startswith("MedicationRequest/")) == expected


EQUIVALENCE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)


@EQUIVALENCE
@given(case=mutated_requests(load_service_catalog(load_knowledge()), where="prefetch"))
def test_hostile_prefetch_mutations_give_the_same_outcome(service, records, case):
    service_id, body = case
    _assert_same(service, records, service_id, orjson.dumps(body))


@EQUIVALENCE
@given(case=requests_with_random_prefetch(load_service_catalog(load_knowledge())))
def test_random_prefetch_values_give_the_same_outcome(service, records, case):
    service_id, body = case
    _assert_same(service, records, service_id, orjson.dumps(body))
