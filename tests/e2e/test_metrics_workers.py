"""/metrics over a real gunicorn with 2 workers: one scrape shows the sums over both workers.

A known sequence of calls goes out on fresh connections (several at once, so both workers
serve some; the log's pid of each "hook call answered" line shows which worker did); then
every scrape, whichever worker answers it, must show the exact totals. Before prometheus_client's
multiprocess mode each scrape showed the counters of the one worker that answered it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests

from backpain_cds.replay import prefetch_from_resources
from tests.support import hook_requests as hr
from tests.support.http_recorder import CannedResponse, HttpRecorder
from tests.support.metrics_text import by_label, label_problems, samples, total
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e

PV = "back-pain-after-chemo"
TS = "2026-01-02T03:04:05Z"
SECRET = "s3cr3t-5521"
FHIR_KINDS = ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Condition", "Observation",
              "QuestionnaireResponse", "Procedure", "ServiceRequest", "CarePlan", "ImagingStudy", "DiagnosticReport")


@pytest.fixture(scope="module")
def catalog():
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    knowledge = load_knowledge()
    return load_service_catalog(knowledge), knowledge


@pytest.fixture(scope="module")
def fhir():
    with HttpRecorder() as recorder:
        for kind in FHIR_KINDS:
            recorder.route(f"/fhir/{kind}", CannedResponse(body=hr.searchset()))
        yield recorder


@pytest.fixture(scope="module")
def live(tmp_path_factory, fhir):
    workdir = tmp_path_factory.mktemp("metrics-workers")
    tmpdir = workdir / "tmp"  # the service's TMPDIR: its metrics directory is made in here
    tmpdir.mkdir()
    config = (f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
              f'[fhir]\nallowed_servers = ["{fhir.url("/fhir")}"]\ntimeout_seconds = 5\n')
    service = start_service(config, workdir, workers=2, env={"TMPDIR": str(tmpdir)})
    service.tmpdir = tmpdir
    yield service
    stop_service(service)


def _post(live, path, body=None, data=None):
    """One call on a connection of its own (requests.post opens a new one each time)."""
    headers = {"Connection": "close", "Content-Type": "application/json"}
    payload = json.dumps(body).encode() if data is None else data
    return requests.post(live.url(path), data=payload, headers=headers, timeout=30)


def _answering_pids(live) -> Counter[int]:
    """How many hook calls each worker answered, from the log (one JSON line per 200)."""
    pids: Counter[int] = Counter()
    for line in live.log().splitlines():
        if line.startswith("{") and '"hook call answered"' in line:
            pids[json.loads(line)["pid"]] += 1
    return pids


def _expected_prefetch(catalog, bodies) -> Counter[tuple[str, str]]:
    keys = catalog.resolve(PV, "patient-view").prefetch
    expected: Counter[tuple[str, str]] = Counter()
    for body in bodies:
        for key in keys:
            if key in body.get("prefetch", {}):
                expected[(key, "null" if body["prefetch"][key] is None else "supplied")] += 1
    return expected


def test_one_scrape_shows_the_sums_over_both_workers(live, fhir, catalog):
    catalog, knowledge = catalog
    service = catalog.resolve(PV, "patient-view")
    now = datetime.now(UTC)
    # 20 patient-view calls with cards: 12 G-CSF bone pain (info), 8 red flags (critical)
    bodies = []
    for i in range(20):
        pid = f"{SECRET}-{i}"
        resources = scenarios.gcsf_bone_pain(pid, now) if i % 5 < 3 else scenarios.mscc(pid, now)
        bodies.append(hr.patient_view(pid, prefetch=prefetch_from_resources(service, resources)))
    with ThreadPoolExecutor(4) as pool:  # four at a time, each on a new connection
        responses = list(pool.map(lambda b: _post(live, f"/cds-services/{PV}", b), bodies))
    assert [r.status_code for r in responses] == [200] * 20
    cards = [c for r in responses for c in r.json()["cards"]]
    returned = Counter((c["extension"]["backpain-cds"]["rule"], c["indicator"]) for c in cards)
    assert returned == {("gcsf-bone-pain", "info"): 12, ("mscc-red-flags", "critical"): 8}
    # both workers must have served some; on the rare run where one took them all, more
    # calls (no cards) go out until the other has served too, and are counted
    extra = []
    while len(_answering_pids(live)) < 2 and len(extra) < 200:
        batch = [hr.patient_view(f"{SECRET}-x{len(extra) + j}", prefetch=hr.nothing_found_prefetch(
            scenarios.patient(f"{SECRET}-x"))) for j in range(4)]
        with ThreadPoolExecutor(4) as pool:
            assert [r.status_code for r in pool.map(lambda b: _post(live, f"/cds-services/{PV}", b), batch)] == [200] * 4
        extra += batch
    fetched = hr.patient_view(f"{SECRET}-f", prefetch={"patient": scenarios.patient(f"{SECRET}-f")},
                              fhir_server=fhir.url("/fhir"))
    assert _post(live, f"/cds-services/{PV}", fetched).json() == {"cards": []}
    answered = 20 + len(extra) + 1

    # refusals: 3 x 400, a 404, a 412 (missing prefetch, no fhirServer)
    assert _post(live, f"/cds-services/{PV}", data=b"{not json").status_code == 400
    assert _post(live, f"/cds-services/{PV}", {"hook": "patient-view", "hookInstance": str(uuid.uuid4())}).status_code == 400
    assert _post(live, f"/cds-services/{PV}", hr.order_sign(SECRET)).status_code == 400  # a hook it is not on
    assert _post(live, f"/cds-services/{SECRET}", hr.patient_view(SECRET)).status_code == 404
    missing = hr.patient_view(SECRET, prefetch={"patient": scenarios.patient(SECRET)})
    assert _post(live, f"/cds-services/{PV}", missing).status_code == 412

    # feedback: 3 accepted, 2 overridden "snooze-cycle", 1 with an unknown code, 1 comment only
    def overridden(card, reason):
        return {"card": card, "outcome": "overridden", "outcomeTimestamp": TS, "overrideReason": reason}

    gcsf = [c["uuid"] for c in cards if c["indicator"] == "info"]
    posts = [[{"card": c["uuid"], "outcome": "accepted", "outcomeTimestamp": TS,
               "acceptedSuggestions": [{"id": c["suggestions"][0]["uuid"]}]}] for c in cards[:3]]
    posts += [[overridden(gcsf[5], {"reason": {"code": "snooze-cycle"}})],
              [overridden(gcsf[6], {"reason": {"code": "snooze-cycle"}}),
               overridden(gcsf[7], {"reason": {"code": f"code-{SECRET}"}})],
              [overridden(gcsf[8], {"userComment": f"note {SECRET}"})]]
    posts += [[posts[0][0], {**posts[0][0], "card": f"card-{SECRET}"}]]  # a repeat and a uuid never issued
    for entries in posts:
        assert _post(live, f"/cds-services/{PV}/feedback", {"feedback": entries}).status_code == 200

    # Every scrape, on a new connection (whichever worker answers), shows the same sums.
    texts = [requests.get(live.url("/metrics"), headers={"Connection": "close"}, timeout=10).text for _ in range(6)]
    found = samples(texts[0])
    assert all(samples(t) == found for t in texts[1:])
    assert len(_answering_pids(live)) == 2 and sum(_answering_pids(live).values()) == answered

    assert by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status") == {
        (PV, "patient-view", "200"): answered, (PV, "unknown", "400"): 1, (PV, "patient-view", "400"): 1,
        (PV, "order-sign", "400"): 1, ("unknown", "unknown", "404"): 1, (PV, "patient-view", "412"): 1}
    assert by_label(found, "backpain_cds_cards_total", "rule", "indicator") == {
        ("gcsf-bone-pain", "info"): 12, ("mscc-red-flags", "critical"): 8}
    assert by_label(found, "backpain_cds_feedback_total", "outcome", "override_reason") == {
        ("accepted", "none"): 3, ("overridden", "snooze-cycle"): 2, ("overridden", "other"): 1,
        ("overridden", "none"): 1}
    assert by_label(found, "backpain_cds_feedback_set_apart_total", "reason") == {("unmatched",): 1, ("repeat",): 1}
    prefetch = Counter(_expected_prefetch(catalog, bodies + extra + [fetched, missing]))
    for key in service.prefetch:
        if key != "patient":
            prefetch[(key, "fetched")] += 1  # the call with fhirServer
            prefetch[(key, "failed")] += 1  # the 412
    assert by_label(found, "backpain_cds_prefetch_total", "key", "outcome") == {k: float(v) for k, v in prefetch.items()}
    # histograms: one observation per call, by the same labels
    assert by_label(found, "backpain_cds_hook_call_seconds_count", "service", "hook", "status") == \
        by_label(found, "backpain_cds_hook_calls_total", "service", "hook", "status")
    assert total(found, "backpain_cds_hook_call_seconds_bucket", le="+Inf") == answered + 5
    assert by_label(found, "backpain_cds_stage_seconds_count", "stage") == {
        ("parse",): answered + 1, ("prefetch",): answered + 1, ("fetch",): 1, ("mapping",): answered,
        ("assessment",): answered, ("render",): answered, ("storage",): 20}
    assert by_label(found, "backpain_cds_errors_total", "status") == {("400",): 3, ("404",): 1, ("412",): 1}
    assert total(found, "backpain_cds_cards_suppressed_total") == 0
    assert ("backpain_cds_cards_suppressed_total", frozenset({("rule", "mscc-red-flags"), ("reason", "snooze")})) in found

    # no patient data, hookInstance, URL or free text in any label
    sets = {"services": {s.id for s in catalog.services},
            "prefetch_keys": {k for s in catalog.services for k in s.prefetch},
            "override_codes": {c.code for rows in knowledge.actions.override_reasons.values() for c in rows}}
    assert label_problems(texts[0], **sets) == []
    for leaked in (SECRET, bodies[0]["hookInstance"], cards[0]["uuid"], "127.0.0.1"):
        assert leaked not in texts[0]

    # A worker that dies takes nothing with it: gunicorn replaces it, the sums stay.
    victim = next(iter(_answering_pids(live)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Booting worker" not in live.log().rsplit(f"({victim})", 1)[-1]:
        time.sleep(0.2)
    after = samples(requests.get(live.url("/metrics"), headers={"Connection": "close"}, timeout=10).text)
    assert by_label(after, "backpain_cds_hook_calls_total", "status") == by_label(found, "backpain_cds_hook_calls_total", "status")
    assert by_label(after, "backpain_cds_cards_total", "rule") == by_label(found, "backpain_cds_cards_total", "rule")


def test_the_metrics_directory_is_private_and_removed_at_stop(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    service = start_service(f'database_url = "sqlite:///{tmp_path / "d.sqlite3"}"\n', tmp_path, workers=2,
                            env={"TMPDIR": str(tmpdir)})
    try:
        assert _post(service, f"/cds-services/{PV}", hr.patient_view(
            prefetch=hr.nothing_found_prefetch(scenarios.patient("p1")))).status_code == 200
        dirs = [p for p in tmpdir.iterdir() if p.name.startswith("backpain-cds-metrics-")]
        assert len(dirs) == 1
        assert stat.S_IMODE(dirs[0].stat().st_mode) == 0o700
        assert any(p.name.startswith("counter_") and p.suffix == ".db" for p in dirs[0].iterdir())
    finally:
        stop_service(service)
    assert not [p for p in tmpdir.iterdir() if p.name.startswith("backpain-cds-metrics-")]
    assert "Traceback" not in service.log()
