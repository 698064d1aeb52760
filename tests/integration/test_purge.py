"""``[retention] days`` and ``backpain-cds purge`` on SQLite and PostgreSQL: what is deleted and
what remains (a card kept with its feedback, a card an unexpired snooze refers to), the dry run,
idempotence, and the setting's validation in ``check-config``.

Every PostgreSQL case runs in a schema of its own (``fresh_postgres_url``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from backpain_cds import audit_commands
from backpain_cds.cli import main
from backpain_cds.retention import MIN_RETENTION_DAYS, TABLES, purge
from backpain_cds.schema import upgrade
from backpain_cds.settings import ConfigError, Settings
from backpain_cds.storage import SqlStore, card_audit, feedback, feedback_unmatched, hook_call, seen_jti, snooze
from cds_hooks.ports import CardAuditRecord, FeedbackEntry
from fhir_mapping.suggestions import MAX_SNOOZE_DAYS
from smart_launch.session_store import launch_state, view_session

CHEMO = "back-pain-after-chemo"
NOW = datetime(2027, 1, 1, tzinfo=UTC)  # with 365 days: the cut-off is 2026-01-01T00:00:00Z
OLD, NEW = datetime(2025, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path, monkeypatch):
    url = (f"sqlite:///{tmp_path / 'purge.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("fresh_postgres_url"))
    monkeypatch.delenv("BACKPAIN_CDS_CONFIG", raising=False)
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", url)
    store = SqlStore(url)
    upgrade(store.engine)
    yield store
    store.engine.dispose()


def _set_received(store: SqlStore, card_uuid: str, outcome: str, when: datetime) -> None:
    for table in (feedback, feedback_unmatched):
        with store.engine.begin() as conn:
            conn.execute(table.update().where(table.c.card_uuid == card_uuid, table.c.outcome == outcome)
                         .values(received_at=when))


def _card(uuid: str, created: datetime) -> CardAuditRecord:
    return CardAuditRecord(uuid, CHEMO, "patient-view", f"hi-{uuid}", "gcsf-bone-pain", "1.0.0", "info", "p1",
                           created, evidence=("Observation/o-1",))


@pytest.fixture
def seeded(store):
    """What a year and a half of service leaves, as of NOW (cut-off 2026-01-01)."""
    store.record_cards([
        _card("old-bare", OLD),                # no feedback: goes
        _card("old-answered", OLD),            # with old feedback: goes with it
        _card("old-late-feedback", OLD),       # feedback within retention: both stay
        _card("old-snoozed", OLD),             # old feedback, but an unexpired snooze refers to it: stays
        _card("old-two-feedback", OLD),        # one old, one recent feedback entry: all stay
        _card("new", NEW),                     # within retention: stays
    ])
    store.save_feedback(CHEMO, [
        FeedbackEntry("old-answered", "accepted", OLD),
        FeedbackEntry("old-late-feedback", "accepted", OLD),
        FeedbackEntry("old-snoozed", "overridden", OLD, override_code="snooze-cycle"),
        FeedbackEntry("old-two-feedback", "accepted", OLD),
        FeedbackEntry("old-two-feedback", "overridden", OLD, override_code="not-relevant"),
        FeedbackEntry("never-issued-old", "accepted", OLD),
        FeedbackEntry("never-issued-new", "accepted", NEW),
    ])
    for card, outcome, when in [
        ("old-answered", "accepted", OLD + timedelta(days=1)),
        ("old-late-feedback", "accepted", datetime(2026, 3, 1, tzinfo=UTC)),
        ("old-snoozed", "overridden", OLD + timedelta(days=1)),
        ("old-two-feedback", "accepted", OLD + timedelta(days=1)),
        ("old-two-feedback", "overridden", datetime(2026, 2, 1, tzinfo=UTC)),
        ("never-issued-old", "accepted", OLD),
        ("never-issued-new", "accepted", NEW),
    ]:
        _set_received(store, card, outcome, when)
    snooze_row = {"patient_id": "p1", "rule_id": "gcsf-bone-pain", "indicator": "info", "service_id": CHEMO,
                  "reason_code": "snooze-cycle", "evidence": '["Observation/o-1"]'}
    with store.engine.begin() as conn:
        conn.execute(snooze.insert(), [
            {**snooze_row, "card_uuid": "old-snoozed", "created_at": OLD, "expires_at": NOW + timedelta(days=9)},
            {**snooze_row, "card_uuid": "gone-long-ago", "created_at": OLD, "expires_at": OLD + timedelta(days=14)},
            {**snooze_row, "card_uuid": "expired-lately", "created_at": datetime(2026, 12, 1, tzinfo=UTC),
             "expires_at": datetime(2026, 12, 15, tzinfo=UTC)},
        ])
        conn.execute(hook_call.insert(), [
            {"received_at": when, "service_id": CHEMO, "hook": "patient-view", "status": 200, "duration_ms": 12.5,
             "deadline_exceeded": False, "cards": 1} for when in (OLD, NEW)])
        conn.execute(seen_jti.insert(), [
            {"iss": "https://ehr.example.org", "jti": "spent", "expires_at": NOW - timedelta(minutes=1)},
            {"iss": "https://ehr.example.org", "jti": "live", "expires_at": NOW + timedelta(minutes=5)},
        ])
        epoch = int(NOW.timestamp())
        conn.execute(launch_state.insert(), [
            {"state_hash": name, "browser_hash": "b", "iss": "https://ehr.example.org/fhir", "launch_enc": "x",
             "verifier_enc": "x", "token_endpoint": "https://ehr.example.org/token", "created_at": expires - 600,
             "expires_at": expires}
            for name, expires in (("expired-2-days", epoch - 2 * 86400), ("expired-1-hour", epoch - 3600))])
        conn.execute(view_session.insert(), [
            {"view_hash": name, "browser_hash": "b", "iss": "https://ehr.example.org/fhir", "token_enc": "x",
             "scope": "", "need_patient_banner": False, "created_at": expires - 3600, "expires_at": expires}
            for name, expires in (("expired", epoch - 1), ("live", epoch + 600))])
    return store


def _remaining(store: SqlStore) -> dict[str, list]:
    with store.engine.connect() as conn:
        def keys(query):
            return sorted(tuple(r) if len(r) > 1 else r[0] for r in conn.execute(query))
        return {
            "card_audit": keys(sa.select(card_audit.c.card_uuid)),
            "feedback": keys(sa.select(feedback.c.card_uuid, feedback.c.outcome)),
            "feedback_unmatched": keys(sa.select(feedback_unmatched.c.card_uuid)),
            "snooze": keys(sa.select(snooze.c.card_uuid)),
            "hook_call": [_aware(t) for t in keys(sa.select(hook_call.c.received_at))],
            "seen_jti": keys(sa.select(seen_jti.c.jti)),
            "smart_launch_state": keys(sa.select(launch_state.c.state_hash)),
            "smart_session": keys(sa.select(view_session.c.view_hash)),
        }


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EXPECTED_COUNTS = {"card_audit": 2, "feedback": 1, "feedback_unmatched": 1, "snooze": 1, "hook_call": 1,
                   "seen_jti": 1, "smart_launch_state": 1, "smart_session": 1}
REMAINING = {
    "card_audit": ["new", "old-late-feedback", "old-snoozed", "old-two-feedback"],
    "feedback": [("old-late-feedback", "accepted"), ("old-snoozed", "overridden"),
                 ("old-two-feedback", "accepted"), ("old-two-feedback", "overridden")],
    "feedback_unmatched": ["never-issued-new"],
    "snooze": ["expired-lately", "old-snoozed"],
    "hook_call": [NEW],
    "seen_jti": ["live"],
    "smart_launch_state": ["expired-1-hour"],
    "smart_session": ["live"],
}


def test_purge_deletes_what_is_past_retention_and_keeps_cards_with_their_feedback(seeded):
    before = _remaining(seeded)
    result = purge(seeded.engine, days=365, now=NOW)
    assert result.cutoff == datetime(2026, 1, 1, tzinfo=UTC)
    assert (result.counts, result.total, result.kept_cards) == (EXPECTED_COUNTS, 9, 3)
    assert list(result.counts) == list(TABLES)
    remaining = _remaining(seeded)
    assert remaining == REMAINING
    # what went is exactly what was counted
    assert {name: len(before[name]) - len(remaining[name]) for name in TABLES} == EXPECTED_COUNTS


def test_a_dry_run_counts_the_same_rows_and_deletes_nothing(seeded):
    before = _remaining(seeded)
    dry = purge(seeded.engine, days=365, now=NOW, dry_run=True)
    assert (dry.counts, dry.kept_cards, dry.dry_run) == (EXPECTED_COUNTS, 3, True)
    assert _remaining(seeded) == before
    assert purge(seeded.engine, days=365, now=NOW).counts == dry.counts


def test_purge_is_idempotent(seeded):
    purge(seeded.engine, days=365, now=NOW)
    again = purge(seeded.engine, days=365, now=NOW)
    assert again.counts == dict.fromkeys(TABLES, 0)
    assert _remaining(seeded) == REMAINING


def test_the_snoozed_card_goes_once_its_snooze_has_expired(seeded):
    purge(seeded.engine, days=365, now=NOW)
    later = purge(seeded.engine, days=365, now=NOW + timedelta(days=10))  # the snooze expired a day ago
    # old-snoozed goes with its feedback and its snooze
    assert (later.counts["card_audit"], later.counts["feedback"], later.counts["snooze"]) == (1, 1, 1)
    remaining = _remaining(seeded)
    assert remaining["card_audit"] == ["new", "old-late-feedback", "old-two-feedback"]
    assert ("old-snoozed", "overridden") not in remaining["feedback"]
    assert remaining["snooze"] == ["expired-lately"]  # created after that cut-off


def test_the_purge_command_prints_the_counts_per_table(seeded, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(audit_commands, "now", lambda: NOW)
    config = tmp_path / "c.toml"
    config.write_text("[retention]\ndays = 365\n")
    assert main(["purge", "--config", str(config), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry == """\
retention 365 days, cut-off 2026-01-01T00:00:00Z; dry run, nothing deleted; rows it would delete:
  card_audit                 2
  feedback                   1
  feedback_unmatched         1
  snooze                     1
  hook_call                  1
  seen_jti                   1
  smart_launch_state         1
  smart_session              1
  total                      9
kept past the cut-off: 3 card_audit row(s) that an unexpired snooze or feedback within retention refers to
"""
    assert main(["purge", "--config", str(config)]) == 0
    assert capsys.readouterr().out == dry.replace("dry run, nothing deleted; rows it would delete", "rows deleted")
    assert main(["purge", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "  total                      0\n" in out and "kept past the cut-off: 3 " in out
    assert _remaining(seeded) == REMAINING


def test_the_default_retention_is_a_year(seeded, capsys, monkeypatch):
    monkeypatch.setattr(audit_commands, "now", lambda: NOW)
    assert main(["purge", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("retention 365 days, cut-off 2026-01-01T00:00:00Z;")


# --- the setting ------------------------------------------------------------------------------
def test_the_minimum_retention_outlasts_the_longest_snooze():
    assert MIN_RETENTION_DAYS == MAX_SNOOZE_DAYS + 1 == 43
    assert Settings.from_mapping({}).retention.days == 365
    assert Settings.from_mapping({"retention": {"days": 43}}).retention.days == 43


@pytest.mark.parametrize("days", [42, 0, -1, 36_501, "365", 365.0, True])
def test_a_bad_retention_is_a_config_problem(days):
    with pytest.raises(ConfigError) as error:
        Settings.from_mapping({"retention": {"days": days}})
    assert error.value.problems == [
        "retention.days must be an integer from 43 to 36500 (at least one day longer than the longest "
        "snooze, 42 days)"]


def test_check_config_lists_the_retention_problems(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[retention]\ndays = 30\nkeep_forever = true\n")
    assert main(["check-config", "--config", str(config)]) == 1
    assert capsys.readouterr().out == (
        "config: retention.keep_forever is not a known setting\n"
        "config: retention.days must be an integer from 43 to 36500 (at least one day longer than the "
        "longest snooze, 42 days)\n"
        "2 problem(s) found\n")
    config.write_text('retention = "1y"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    assert "config: retention must be a table\n" in capsys.readouterr().out


def test_purge_refuses_a_bad_retention_in_one_line(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[retention]\ndays = 7\n")
    assert main(["purge", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        "backpain-cds: error: invalid configuration: retention.days must be an integer from 43 to 36500 "
        "(at least one day longer than the longest snooze, 42 days)\n")
