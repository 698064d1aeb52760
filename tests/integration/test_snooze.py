"""Snooze and order-session de-duplication enforced by the service (issue 12 deliverable 5), on
SQLite and PostgreSQL: an override with a snooze reason holds the rule's card back for that
patient until the snooze expires or the card's evidence grows; a critical card re-fires on a new
red flag; a card shown on order-select is not shown again on order-sign of the same session.
Every card held back is audited (``suppressed``, ``suppress_reason``) and counted.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backpain_cds.replay import prefetch_from_resources
from tests.support import hook_requests as hr
from tests.support.metrics_text import by_label, samples
from tools.harness import scenarios
from tools.harness.scenarios import SyntheticPatient, concept

PV = "back-pain-after-chemo"
SELECT, SIGN = "gcsf-order-select", "gcsf-order-review"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SCT = "http://snomed.info/sct"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _app(make_any_db_app, **settings: t.Any):
    app = make_any_db_app(**settings)
    clock = Clock(NOW)
    app.extensions["backpain_cds"]["service"].clock = clock
    return app, clock, app.extensions["backpain_cds"]["store"]


def _post(app, service_id: str, body: dict) -> list[dict]:
    response = app.test_client().post(f"/cds-services/{service_id}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def _patient_view(app, pid: str, resources: list) -> list[dict]:
    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    return _post(app, PV, hr.patient_view(pid, prefetch=prefetch_from_resources(service, resources)))


def _rules(cards: list[dict]) -> list[str]:
    return [c["extension"]["backpain-cds"]["rule"] for c in cards]


def _feedback(app, service_id: str, card: str, code: str | None, at: datetime = NOW) -> None:
    entry: dict[str, t.Any] = {"card": card, "outcomeTimestamp": at.isoformat().replace("+00:00", "Z")}
    if code is None:
        entry |= {"outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}]}
    else:
        entry |= {"outcome": "overridden", "overrideReason": {"reason": {"code": code}}}
    response = app.test_client().post(f"/cds-services/{service_id}/feedback", json={"feedback": [entry]})
    assert response.status_code == 200, response.get_data(as_text=True)


def _suppressed_metric(app) -> dict:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return by_label(samples(text), "backpain_cds_cards_suppressed_total", "rule", "reason")


def _last_audit(store) -> dict:
    return store.audit_rows()[-1]


def _gcsf(pid: str, at: datetime, *, new_score: bool = False) -> list:
    p = SyntheticPatient(pid, at)
    resources = scenarios._gcsf_bone_pain(p, 5).resources
    if new_score:
        p.score(0.1, 6, rid="pain-new")
    return resources


# --- snooze ----------------------------------------------------------------------------------

def test_a_snooze_holds_the_card_back_for_that_patient_until_new_evidence(make_any_db_app):
    app, _, store = _app(make_any_db_app)
    first = _patient_view(app, "g1", _gcsf("g1", NOW))
    assert _rules(first) == ["gcsf-bone-pain"]
    _feedback(app, PV, first[0]["uuid"], "snooze-cycle")
    [snooze] = store.snooze_rows()
    assert (snooze["patient_id"], snooze["rule_id"], snooze["reason_code"]) == ("g1", "gcsf-bone-pain", "snooze-cycle")
    assert snooze["expires_at"].replace(tzinfo=UTC) == NOW + timedelta(days=14)

    assert _patient_view(app, "g1", _gcsf("g1", NOW)) == []  # same evidence: held back
    held = _last_audit(store)
    assert (held["rule_id"], held["suppressed"], held["suppress_reason"], held["shadow"]) == \
        ("gcsf-bone-pain", True, "snooze", False)
    assert held["evidence"] == _last_shown_evidence(store)
    assert _suppressed_metric(app) == {("gcsf-bone-pain", "snooze"): 1}

    assert _rules(_patient_view(app, "g2", _gcsf("g2", NOW))) == ["gcsf-bone-pain"]  # another patient

    # feedback naming the card held back names a card nobody saw: kept apart
    _feedback(app, PV, held["card_uuid"], None)
    assert held["card_uuid"] in {r["card_uuid"] for r in store.unmatched_feedback_rows()}
    assert held["card_uuid"] not in {r["card_uuid"] for r in store.feedback_rows()}

    # a new pain score is new evidence: the card is back at once
    again = _patient_view(app, "g1", _gcsf("g1", NOW, new_score=True))
    assert _rules(again) == ["gcsf-bone-pain"]
    assert "Observation/g1-pain-new" in again[0]["extension"]["backpain-cds"]["evidence"]


def _last_shown_evidence(store) -> str:
    return next(r["evidence"] for r in store.audit_rows() if not r["suppressed"])


def test_a_snooze_expires(make_any_db_app):
    app, clock, store = _app(make_any_db_app)
    first = _patient_view(app, "g1", _gcsf("g1", NOW))
    _feedback(app, PV, first[0]["uuid"], "snooze-cycle", at=NOW)
    # the same record (same resource ids, dates moved with the clock) 13 days on: still snoozed
    clock.now = NOW + timedelta(days=13, hours=23)
    assert _patient_view(app, "g1", _gcsf("g1", clock.now)) == []
    clock.now = NOW + timedelta(days=14, minutes=1)
    assert _rules(_patient_view(app, "g1", _gcsf("g1", clock.now))) == ["gcsf-bone-pain"]
    assert [r["suppress_reason"] for r in store.audit_rows()] == [None, "snooze", None]


def test_an_ehr_clock_ahead_cannot_stretch_a_snooze(make_any_db_app):
    app, clock, store = _app(make_any_db_app)
    first = _patient_view(app, "g1", _gcsf("g1", NOW))
    _feedback(app, PV, first[0]["uuid"], "snooze-cycle", at=datetime.now(UTC) + timedelta(days=30))
    [snooze] = store.snooze_rows()
    assert snooze["expires_at"].replace(tzinfo=UTC) <= datetime.now(UTC) + timedelta(days=14, minutes=1)


def test_only_a_snooze_reason_snoozes(make_any_db_app):
    app, _, store = _app(make_any_db_app)
    a = _patient_view(app, "g1", _gcsf("g1", NOW))
    _feedback(app, PV, a[0]["uuid"], "analgesia-in-place")
    b = _patient_view(app, "g2", _gcsf("g2", NOW))
    _feedback(app, PV, b[0]["uuid"], None)
    assert store.snooze_rows() == []
    assert _rules(_patient_view(app, "g1", _gcsf("g1", NOW))) == ["gcsf-bone-pain"]
    assert _rules(_patient_view(app, "g2", _gcsf("g2", NOW))) == ["gcsf-bone-pain"]
    # another system's code of the same spelling is not ours
    response = app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": [
        {"card": b[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T09:00:00Z",
         "overrideReason": {"reason": {"code": "snooze-cycle", "system": "urn:other"}}}]})
    assert response.status_code == 200
    assert store.snooze_rows() == []


def test_suppression_can_be_switched_off(make_any_db_app):
    app, _, store = _app(make_any_db_app, suppression={"enabled": False})
    first = _patient_view(app, "g1", _gcsf("g1", NOW))
    _feedback(app, PV, first[0]["uuid"], "snooze-cycle")
    assert len(store.snooze_rows()) == 1  # recorded, for when it is switched on
    assert _rules(_patient_view(app, "g1", _gcsf("g1", NOW))) == ["gcsf-bone-pain"]


def _mscc_overlay(tmp_path: Path) -> str:
    """A site that lets an override of the critical card snooze it for 7 days."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "actions.toml").write_text(
        '[[override_reasons.mscc-red-flags]]\ncode = "red-flag-known-assessed"\n'
        'display = "Red flag is chronic or known and already assessed"\nsnooze_days = 7\n'
        '[[override_reasons.mscc-red-flags]]\ncode = "managed-by-oncology"\n'
        'display = "Already managed by the oncology or MSCC team"\n')
    return str(site)


def _mscc(pid: str, *, new_red_flag: bool = False) -> list:
    p = SyntheticPatient(pid, NOW)
    scenarios._gcsf_bone_pain(p, 5)
    p.condition("retention", concept(SCT, "267064002", "Retention of urine"), onset=1, verification=None)
    if new_red_flag:
        p.condition("incontinence", concept(SCT, "165232002", "Urinary incontinence"), onset=0.2, verification=None)
    return p.resources


def test_a_critical_card_is_never_snoozed_past_a_new_red_flag(make_any_db_app, tmp_path):
    app, _, store = _app(make_any_db_app, knowledge={"path": _mscc_overlay(tmp_path)})
    first = _patient_view(app, "m1", _mscc("m1"))
    assert [(c["indicator"], r) for c, r in zip(first, _rules(first), strict=True)] == [("critical", "mscc-red-flags")]
    _feedback(app, PV, first[0]["uuid"], "red-flag-known-assessed")
    assert _patient_view(app, "m1", _mscc("m1")) == []  # the site's choice: the same, known red flag
    again = _patient_view(app, "m1", _mscc("m1", new_red_flag=True))
    assert _rules(again) == ["mscc-red-flags"] and again[0]["indicator"] == "critical"
    assert [r["suppress_reason"] for r in store.audit_rows()] == [None, "snooze", None]


# --- order-select -> order-sign ----------------------------------------------------------------

def _ordering(pid: str, *, draft: str = "draft-peg") -> tuple[list, dict]:
    p = SyntheticPatient(pid, NOW)
    p.breast_cancer()
    p.chemo(41, rid="chemo-prev")
    p.chemo(1)
    p.peg(40, rid="peg-prev")
    p.back_pain(38, rid="backpain-prev", clinical="resolved")
    p.safe_labs()
    peg = p.draft_peg(draft)
    return [r for r in p.resources if r is not peg], peg


def _order(app, hook: str, pid: str, *, draft: str = "draft-peg", user: str | None = None,
           encounter: str | None = "enc-1") -> list[dict]:
    service_id = SELECT if hook == "order-select" else SIGN
    resources, peg = _ordering(pid, draft=draft)
    definition = app.extensions["backpain_cds"]["service"].catalog.resolve(service_id, hook)
    prefetch = prefetch_from_resources(definition, resources)
    body = (hr.order_select(pid, [peg], selections=[f"MedicationRequest/{peg['id']}"], prefetch=prefetch)
            if hook == "order-select" else hr.order_sign(pid, [peg], prefetch=prefetch))
    if user:
        body["context"]["userId"] = user
    if encounter:
        body["context"]["encounterId"] = encounter
    return _post(app, service_id, body)


def test_a_card_seen_on_order_select_is_not_shown_again_on_order_sign(make_any_db_app):
    app, clock, store = _app(make_any_db_app)
    selected = _order(app, "order-select", "d1")
    assert _rules(selected) == ["gcsf-order-dose-review"]
    clock.now = NOW + timedelta(minutes=3)
    assert _order(app, "order-sign", "d1") == []
    held = _last_audit(store)
    assert (held["hook"], held["rule_id"], held["suppress_reason"]) == ("order-sign", "gcsf-order-dose-review", "duplicate")
    assert (held["user_id"], held["encounter_id"]) == (hr.DEFAULT_USER, "enc-1")
    assert _suppressed_metric(app) == {("gcsf-order-dose-review", "duplicate"): 1}

    # not the same session: another clinician, another encounter, another draft, or later
    assert _rules(_order(app, "order-sign", "d1", user="Practitioner/other")) == ["gcsf-order-dose-review"]
    assert _rules(_order(app, "order-sign", "d1", encounter="enc-2")) == ["gcsf-order-dose-review"]
    assert _rules(_order(app, "order-sign", "d1", draft="draft-peg-2")) == ["gcsf-order-dose-review"]
    clock.now = NOW + timedelta(minutes=61)
    assert _rules(_order(app, "order-sign", "d1")) == ["gcsf-order-dose-review"]


def test_order_sign_alone_shows_the_card(make_any_db_app):
    app, _, _ = _app(make_any_db_app)
    assert _rules(_order(app, "order-sign", "d2")) == ["gcsf-order-dose-review"]
    assert _rules(_order(app, "order-sign", "d2")) == ["gcsf-order-dose-review"]  # sign twice: no select


def test_the_session_window_is_configurable(make_any_db_app):
    app, clock, _ = _app(make_any_db_app, suppression={"order_session_minutes": 5})
    _order(app, "order-select", "d3")
    clock.now = NOW + timedelta(minutes=6)
    assert _rules(_order(app, "order-sign", "d3")) == ["gcsf-order-dose-review"]


def test_check_config_warns_when_a_critical_rule_can_be_snoozed(tmp_path, capsys):
    from backpain_cds.cli import main

    config = tmp_path / "config.toml"
    config.write_text(f'[knowledge]\npath = "{_mscc_overlay(tmp_path)}"\n')
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert ("warning: an override of the critical rule mscc-red-flags with reason(s) red-flag-known-assessed "
            "snoozes it for the patient (snooze_days in actions.toml); a new red flag still re-fires it") in out
    config.write_text("")
    assert main(["check-config", "--config", str(config)]) == 0
    assert "snoozes it" not in capsys.readouterr().out  # gcsf-bone-pain's snooze is no critical rule's
