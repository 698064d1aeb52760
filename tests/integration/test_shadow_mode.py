"""Shadow mode (issue 12 deliverable 4) on SQLite and PostgreSQL: cards are produced, audited
with ``shadow = true`` and counted as suppressed (reason ``shadow``), never returned; feedback
on a shadow card is kept apart like any unknown uuid; check-config warns about critical rules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from backpain_cds.cli import main
from backpain_cds.replay import prefetch_from_resources
from tests.support import hook_requests as hr
from tests.support.metrics_text import by_label, samples
from tools.harness import scenarios

PV = "back-pain-after-chemo"
TS = "2026-01-02T03:04:05Z"


def _call(app, patient_id: str, resources: list) -> list[dict]:
    service = app.extensions["backpain_cds"]["service"].catalog.resolve(PV, "patient-view")
    response = app.test_client().post(
        f"/cds-services/{PV}", json=hr.patient_view(patient_id, prefetch=prefetch_from_resources(service, resources)))
    assert response.status_code == 200
    return response.get_json()["cards"]


def _metrics(app) -> dict:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def _overlay(tmp_path: Path, rules: str) -> str:
    """A site knowledge directory whose rules.toml overlay is ``rules``."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "rules.toml").write_text(rules)
    return str(site)


def test_global_shadow_returns_no_card_but_audits_and_counts_them(make_any_db_app):
    app = make_any_db_app(shadow=True)
    store = app.extensions["backpain_cds"]["store"]
    now = datetime.now(UTC)
    assert _call(app, "g1", scenarios.gcsf_bone_pain("g1", now)) == []
    assert _call(app, "m1", scenarios.mscc("m1", now)) == []

    rows = store.audit_rows()
    assert sorted((r["rule_id"], r["patient_id"], r["shadow"]) for r in rows) == [
        ("gcsf-bone-pain", "g1", True), ("mscc-red-flags", "m1", True)]
    found = _metrics(app)
    assert by_label(found, "backpain_cds_cards_suppressed_total", "rule", "reason") == {
        ("gcsf-bone-pain", "shadow"): 1, ("mscc-red-flags", "shadow"): 1}
    assert by_label(found, "backpain_cds_cards_total", "rule", "indicator") == {}

    # never shown, so no feedback can name it: it goes apart like a uuid never issued
    shadow_uuid = next(r["card_uuid"] for r in rows if r["rule_id"] == "gcsf-bone-pain")
    response = app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": [
        {"card": shadow_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": TS}]})
    assert response.status_code == 200
    assert store.feedback_rows() == []
    assert [r["card_uuid"] for r in store.unmatched_feedback_rows()] == [shadow_uuid]


def test_per_rule_shadow_hides_that_rule_only(make_any_db_app, tmp_path):
    app = make_any_db_app(knowledge={"path": _overlay(tmp_path, "[rules.gcsf-bone-pain]\nshadow = true\n")})
    store = app.extensions["backpain_cds"]["store"]
    now = datetime.now(UTC)
    assert _call(app, "g1", scenarios.gcsf_bone_pain("g1", now)) == []
    shown = _call(app, "m1", scenarios.mscc("m1", now))
    assert [c["extension"]["backpain-cds"]["rule"] for c in shown] == ["mscc-red-flags"]

    rows = {r["rule_id"]: r for r in store.audit_rows()}
    assert {rule: bool(r["shadow"]) for rule, r in rows.items()} == {"gcsf-bone-pain": True, "mscc-red-flags": False}
    assert rows["mscc-red-flags"]["card_uuid"] == shown[0]["uuid"]
    found = _metrics(app)
    assert by_label(found, "backpain_cds_cards_suppressed_total", "rule", "reason") == {("gcsf-bone-pain", "shadow"): 1}
    assert by_label(found, "backpain_cds_cards_total", "rule", "indicator") == {("mscc-red-flags", "critical"): 1}

    feedback = [{"card": c, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": TS}
                for c in (shown[0]["uuid"], rows["gcsf-bone-pain"]["card_uuid"])]
    assert app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": feedback}).status_code == 200
    assert [r["card_uuid"] for r in store.feedback_rows()] == [shown[0]["uuid"]]
    assert [r["card_uuid"] for r in store.unmatched_feedback_rows()] == [rows["gcsf-bone-pain"]["card_uuid"]]


def _warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning:")]


def test_check_config_warns_in_one_line_about_a_critical_rule_in_shadow_mode(tmp_path, capsys):
    site = _overlay(tmp_path, "[rules.mscc-red-flags]\nshadow = true\n[rules.gcsf-bone-pain]\nshadow = true\n")
    config = tmp_path / "service.toml"
    config.write_text(f'[knowledge]\npath = "{site}"\n')
    assert main(["check-config", "--config", str(config)]) == 0
    assert _warnings(capsys.readouterr().out) == [
        "warning: SHADOW MODE for the critical rule mscc-red-flags (rules.mscc-red-flags.shadow = true): "
        "its cards are audited but never shown to clinicians",
        "warning: shadow mode for rule(s) gcsf-bone-pain: their cards are audited, not returned",
    ]


def test_check_config_warns_about_global_shadow_and_refuses_a_non_boolean(tmp_path, capsys):
    config = tmp_path / "service.toml"
    config.write_text("shadow = true\n")
    assert main(["check-config", "--config", str(config)]) == 0
    assert _warnings(capsys.readouterr().out) == [
        "warning: SHADOW MODE for every rule (shadow = true): no card is returned to the EHR, "
        "including the critical rule(s) mscc-red-flags"]
    config.write_text('shadow = "yes"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    assert "config: shadow must be true or false" in capsys.readouterr().out
    site = _overlay(tmp_path, "[rules.gcsf-bone-pain]\nshadow = 1\n")
    config.write_text(f'[knowledge]\npath = "{site}"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    assert "rules.gcsf-bone-pain.shadow" in capsys.readouterr().out


def test_no_shadow_configured_no_warning(tmp_path, capsys):
    config = tmp_path / "service.toml"
    config.write_text("")
    assert main(["check-config", "--config", str(config)]) == 0
    assert _warnings(capsys.readouterr().out) == []


def test_start_up_logs_the_critical_shadow_warning(make_any_db_app, tmp_path, caplog):
    site = _overlay(tmp_path, "[rules.mscc-red-flags]\nshadow = true\n")
    with caplog.at_level("WARNING", logger="backpain_cds.app"):
        make_any_db_app(knowledge={"path": site})
    assert [r.getMessage() for r in caplog.records if "SHADOW" in r.getMessage()] == [
        "configuration: SHADOW MODE for the critical rule mscc-red-flags (rules.mscc-red-flags.shadow = true): "
        "its cards are audited but never shown to clinicians"]
