"""backpain_cds.metrics on its own: bounded label values, the pause, the service's report
(prefetch outcome per key, stage names)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backpain_cds.metrics import Metrics
from cds_hooks.catalog import ServiceCatalog, ServiceDefinition
from cds_hooks.hook_request import parse_hook_request
from cds_hooks.ports import FeedbackEntry
from cds_hooks.prefetch import ResolvedData
from cds_hooks.service import CallReport, _stages, prefetch_outcomes
from fhir_mapping.suggestions import OVERRIDE_REASON_SYSTEM, Coding
from tests.support import hook_requests as hr
from tests.support.metrics_text import by_label, label_problems, samples, total

SERVICE = ServiceDefinition(
    id="svc", hook="patient-view", title="t", description="d", usage_requirements="",
    prefetch={"patient": "Patient/{{context.patientId}}", "conditions": "Condition?patient={{context.patientId}}",
              "observations": "Observation?patient={{context.patientId}}",
              "encounter": "Encounter/{{context.encounterId}}"},
)
REASONS = {"gcsf-bone-pain": (Coding(OVERRIDE_REASON_SYSTEM, "snooze-cycle", "Snooze"),)}
TS = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(ServiceCatalog([SERVICE]), REASONS)


def _text(metrics: Metrics) -> str:
    return metrics.render().decode()


def _problems(text: str) -> list[str]:
    return label_problems(text, services={"svc"}, prefetch_keys=SERVICE.prefetch, override_codes={"snooze-cycle"})


def test_a_fresh_registry_shows_the_known_series_at_zero(metrics):
    found = samples(_text(metrics))
    assert found[("backpain_cds_hook_calls_total", frozenset({("service", "svc"), ("hook", "patient-view"),
                                                              ("status", "200")}))] == 0
    assert found[("backpain_cds_cards_suppressed_total", frozenset({("rule", "gcsf-bone-pain"), ("reason", "snooze")}))] == 0
    assert found[("backpain_cds_deadline_exceeded_total", frozenset({("service", "svc")}))] == 0
    assert not any(name.endswith("_created") for name, _ in found)


def test_values_outside_the_bounded_sets_are_counted_as_unknown_or_other(metrics):
    metrics.hook_answered(service_id="Patient-123", hook="evil-hook", status=404, seconds=0.01)
    metrics.hook_answered(service_id="svc", hook=None, status=999, seconds=0.01)
    metrics.card_suppressed("rule-of-patient-123", "because-patient-123")
    metrics.call_finished(CallReport("Patient-123", "x", {"parse": 0.1, "made-up-stage": 1.0},
                                     cards=(("rule-x", "urgent"),),
                                     prefetch={"Patient/123": "supplied", "patient": "stolen"},
                                     deadline_exceeded=True))
    metrics.feedback([
        FeedbackEntry("c1", "overridden", TS, override_code="patient-123", override_system=OVERRIDE_REASON_SYSTEM),
        FeedbackEntry("c2", "overridden", TS, override_code="snooze-cycle", override_system="urn:other-system"),
        FeedbackEntry("c3", "overridden", TS, override_code="snooze-cycle"),  # the sandbox sends no system
        FeedbackEntry("c4", "overridden", TS, override_comment="free text only"),
        FeedbackEntry("c5", "accepted", TS, accepted_suggestions=("s1",)),
    ])
    metrics.error(418)
    text = _text(metrics)
    assert _problems(text) == []
    assert "123" not in text and "evil" not in text and "stolen" not in text and "urgent" not in text
    found = samples(text)
    assert by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status") == {
        ("unknown", "unknown", "404"): 1, ("svc", "unknown", "other"): 1}
    assert by_label(found, "backpain_cds_feedback_total", "outcome", "override_reason") == {
        ("overridden", "other"): 2, ("overridden", "snooze-cycle"): 1, ("overridden", "none"): 1, ("accepted", "none"): 1}
    assert by_label(found, "backpain_cds_cards_total", "rule", "indicator") == {("other", "other"): 1}
    assert by_label(found, "backpain_cds_cards_suppressed_total", "rule", "reason") == {("other", "other"): 1}
    assert by_label(found, "backpain_cds_prefetch_total", "key", "outcome") == {}
    assert by_label(found, "backpain_cds_deadline_exceeded_total", "service") == {("unknown",): 1}
    assert total(found, "backpain_cds_stage_seconds_count") == 1  # parse only; the made-up stage is dropped


def test_suppressed_cards_reported_by_the_service_are_counted(metrics):
    metrics.call_finished(CallReport("svc", "patient-view", {}, suppressed=(
        ("gcsf-bone-pain", "snooze"), ("gcsf-bone-pain", "snooze"), ("mscc-red-flags", "shadow"))))
    found = samples(_text(metrics))
    assert by_label(found, "backpain_cds_cards_suppressed_total", "rule", "reason") == {
        ("gcsf-bone-pain", "snooze"): 2, ("mscc-red-flags", "shadow"): 1}
    assert by_label(found, "backpain_cds_cards_total", "rule") == {}  # not shown, so not cards


def test_paused_metrics_record_nothing(metrics):
    before = _text(metrics)
    with metrics.paused():
        metrics.hook_answered(service_id="svc", hook="patient-view", status=200, seconds=0.01)
        metrics.call_finished(CallReport("svc", "patient-view", {"parse": 0.1}, cards=(("gcsf-bone-pain", "info"),)))
        metrics.stage("auth", 0.001)
        metrics.feedback([FeedbackEntry("c5", "accepted", TS, accepted_suggestions=("s1",))])
        metrics.card_suppressed("gcsf-bone-pain", "snooze")
        metrics.error(400)
    assert _text(metrics) == before
    metrics.error(400)  # and counting resumes after
    assert total(_text(metrics), "backpain_cds_errors_total", status="400") == 1


def test_histogram_buckets_span_a_millisecond_to_ten_seconds(metrics):
    for seconds in (0.0005, 0.003, 0.2, 7.0, 30.0):
        metrics.hook_answered(service_id="svc", hook="patient-view", status=200, seconds=seconds)
    found = samples(_text(metrics))
    buckets = by_label(found, "backpain_cds_hook_call_seconds_bucket", "le")
    assert buckets[("0.001",)] == 1 and buckets[("0.005",)] == 2 and buckets[("0.25",)] == 3
    assert buckets[("10.0",)] == 4 and buckets[("+Inf",)] == 5
    assert total(found, "backpain_cds_hook_call_seconds_count") == 5


# -- the service's report ---------------------------------------------------------------------

def _request(prefetch):
    return parse_hook_request(hr.patient_view("p1", prefetch=prefetch))


def test_prefetch_outcome_per_key():
    request = _request({"patient": {"resourceType": "Patient", "id": "p1"}, "conditions": None,
                        "observations": hr.operation_outcome()})
    data = ResolvedData([], from_prefetch=("patient", "conditions"), fetched=("observations",))
    # no encounterId: the encounter key cannot be filled and is not counted
    assert prefetch_outcomes(SERVICE, request, data) == {
        "patient": "supplied", "conditions": "null", "observations": "fetched"}


def test_prefetch_outcome_when_the_data_cannot_be_had():
    request = _request({"patient": {"resourceType": "Patient", "id": "p1"}, "conditions": None,
                        "observations": hr.operation_outcome()})
    assert prefetch_outcomes(SERVICE, request, None, failed=("prefetch.observations",)) == {
        "patient": "supplied", "conditions": "null", "observations": "failed"}
    # a 412 for another reason: an OperationOutcome key is neither supplied nor fetched
    assert prefetch_outcomes(SERVICE, request, None, failed=("context.patientId",)) == {
        "patient": "supplied", "conditions": "null"}


def test_stage_names_of_the_report():
    timings = {"validate": 0.001, "prefetch": 0.05, "mapping": 0.002, "assessment": 0.0005,
               "cards": 0.0002, "audit": 0.003}
    stages = _stages(timings, decode_seconds=0.004, fetch_seconds=0.045)
    assert stages == pytest.approx({"parse": 0.005, "prefetch": 0.005, "fetch": 0.045, "mapping": 0.002,
                                    "assessment": 0.0005, "render": 0.0002, "storage": 0.003})
    assert "fetch" not in _stages(timings, decode_seconds=0.0, fetch_seconds=None)
