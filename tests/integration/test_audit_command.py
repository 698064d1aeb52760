"""``backpain-cds audit`` on SQLite and PostgreSQL: exact output of every format on a seeded
database (delivered, shadow and suppressed cards, feedback, unmatched feedback), every filter,
bad dates, and the schema refusal.

Every PostgreSQL case runs in a schema of its own (``fresh_postgres_url``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from backpain_cds import schema
from backpain_cds.cli import main
from backpain_cds.schema import SchemaError, upgrade
from backpain_cds.storage import SqlStore, feedback, feedback_unmatched
from cds_hooks.ports import CardAuditRecord, FeedbackEntry

CHEMO, REVIEW = "back-pain-after-chemo", "gcsf-order-review"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch):
    """An empty database URL on each engine, named to the commands by the environment."""
    url = (f"sqlite:///{tmp_path / 'audit.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("fresh_postgres_url"))
    monkeypatch.delenv("BACKPAIN_CDS_CONFIG", raising=False)
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", url)
    return url


@pytest.fixture
def store(db_url):
    store = SqlStore(db_url)
    upgrade(store.engine)
    yield store
    store.engine.dispose()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def seeded(store):
    """Four cards (two delivered, one shadow, one suppressed), three feedback entries on
    delivered cards, two kept apart (one naming the shadow card, one a uuid never issued)."""
    store.record_cards([
        # card-4 is written first and has the same time as card-3: the order is time, then uuid
        CardAuditRecord("card-4", REVIEW, "order-sign", "hi-4", "gcsf-bone-pain", "1.0.0", "info", "p3",
                        at("2026-01-05T00:00:00Z"), evidence=("MedicationRequest/mr-1",),
                        user_id="Practitioner/7", encounter_id="Encounter/e-3"),
        CardAuditRecord("card-1", CHEMO, "patient-view", "hi-1", "gcsf-bone-pain", "1.0.0", "info", "p1",
                        at("2026-01-02T03:04:05Z"),
                        evidence=("MedicationAdministration/ma-1", "Observation/pain-1"),
                        user_id="Practitioner/9", encounter_id="Encounter/e-1"),
        CardAuditRecord("card-2", CHEMO, "patient-view", "hi-2", "mscc-red-flags", "2.1.0", "critical", "p2",
                        at("2026-01-02T04:00:00Z"), shadow=True, evidence=("Condition/c-9",)),
        CardAuditRecord("card-3", CHEMO, "patient-view", "hi-3", "gcsf-bone-pain", "1.0.0", "info", "p1",
                        at("2026-01-05T00:00:00Z"), suppress_reason="snooze",
                        evidence=("MedicationAdministration/ma-1", "Observation/pain-1")),
    ])
    assert store.save_feedback(CHEMO, [
        FeedbackEntry("card-1", "overridden", at("2026-01-02T05:00:00Z"), override_code="snooze-cycle"),
        FeedbackEntry("card-2", "accepted", at("2026-01-02T05:00:00Z")),  # a shadow card: kept apart
    ]) == (1, 1, (0,))
    assert store.save_feedback(REVIEW, [
        FeedbackEntry("card-4", "overridden", at("2026-01-05T00:20:00Z"), override_code="not-relevant"),
        FeedbackEntry("card-4", "accepted", at("2026-01-05T00:10:00Z"), accepted_suggestions=("s-1",)),
        FeedbackEntry("never-issued", "accepted", at("2026-01-06T00:00:00Z")),
    ]) == (2, 1, (0, 1))
    # received one minute after the outcome (the service stamps its own clock: fixed here)
    with store.engine.begin() as conn:
        for table in (feedback, feedback_unmatched):
            for row in conn.execute(sa.select(table.c.id, table.c.outcome_timestamp)).all():
                conn.execute(table.update().where(table.c.id == row.id)
                             .values(received_at=row.outcome_timestamp + timedelta(minutes=1)))
    return store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TEXT = """\
TIME                  PATIENT  RULE            VERSION  INDICATOR  STATUS             SERVICE                HOOK          HOOK INSTANCE  CARD    USER            ENCOUNTER      EVIDENCE                                          FEEDBACK
2026-01-02T03:04:05Z  p1       gcsf-bone-pain  1.0.0    info       delivered          back-pain-after-chemo  patient-view  hi-1           card-1  Practitioner/9  Encounter/e-1  MedicationAdministration/ma-1 Observation/pain-1  overridden:snooze-cycle@2026-01-02T05:00:00Z
2026-01-02T04:00:00Z  p2       mscc-red-flags  2.1.0    critical   shadow             back-pain-after-chemo  patient-view  hi-2           card-2  -               -              Condition/c-9                                     -
2026-01-05T00:00:00Z  p1       gcsf-bone-pain  1.0.0    info       suppressed:snooze  back-pain-after-chemo  patient-view  hi-3           card-3  -               -              MedicationAdministration/ma-1 Observation/pain-1  -
2026-01-05T00:00:00Z  p3       gcsf-bone-pain  1.0.0    info       delivered          gcsf-order-review      order-sign    hi-4           card-4  Practitioner/7  Encounter/e-3  MedicationRequest/mr-1                            accepted@2026-01-05T00:10:00Z overridden:not-relevant@2026-01-05T00:20:00Z
4 card(s): 2 delivered, 1 shadow, 1 suppressed; 2 with feedback. 2 feedback entries on cards never issued or never shown kept apart in feedback_unmatched (not listed above)
"""

CSV = """\
time,card_uuid,patient_id,service_id,hook,hook_instance,rule_id,rule_version,indicator,status,shadow,suppressed,suppress_reason,evidence,user_id,encounter_id,feedback
2026-01-02T03:04:05Z,card-1,p1,back-pain-after-chemo,patient-view,hi-1,gcsf-bone-pain,1.0.0,info,delivered,false,false,,MedicationAdministration/ma-1 Observation/pain-1,Practitioner/9,Encounter/e-1,overridden:snooze-cycle@2026-01-02T05:00:00Z
2026-01-02T04:00:00Z,card-2,p2,back-pain-after-chemo,patient-view,hi-2,mscc-red-flags,2.1.0,critical,shadow,true,false,,Condition/c-9,,,
2026-01-05T00:00:00Z,card-3,p1,back-pain-after-chemo,patient-view,hi-3,gcsf-bone-pain,1.0.0,info,suppressed:snooze,false,true,snooze,MedicationAdministration/ma-1 Observation/pain-1,,,
2026-01-05T00:00:00Z,card-4,p3,gcsf-order-review,order-sign,hi-4,gcsf-bone-pain,1.0.0,info,delivered,false,false,,MedicationRequest/mr-1,Practitioner/7,Encounter/e-3,accepted@2026-01-05T00:10:00Z overridden:not-relevant@2026-01-05T00:20:00Z
"""

CARD_1 = {
    "time": "2026-01-02T03:04:05Z", "card_uuid": "card-1", "patient_id": "p1", "service_id": CHEMO,
    "hook": "patient-view", "hook_instance": "hi-1", "rule_id": "gcsf-bone-pain", "rule_version": "1.0.0",
    "indicator": "info", "status": "delivered", "shadow": False, "suppressed": False, "suppress_reason": None,
    "evidence": ["MedicationAdministration/ma-1", "Observation/pain-1"], "user_id": "Practitioner/9",
    "encounter_id": "Encounter/e-1",
    "feedback": [{"outcome": "overridden", "override_code": "snooze-cycle", "time": "2026-01-02T05:00:00Z",
                  "received_at": "2026-01-02T05:01:00Z"}],
}
CARD_2 = {
    "time": "2026-01-02T04:00:00Z", "card_uuid": "card-2", "patient_id": "p2", "service_id": CHEMO,
    "hook": "patient-view", "hook_instance": "hi-2", "rule_id": "mscc-red-flags", "rule_version": "2.1.0",
    "indicator": "critical", "status": "shadow", "shadow": True, "suppressed": False, "suppress_reason": None,
    "evidence": ["Condition/c-9"], "user_id": None, "encounter_id": None, "feedback": [],
}
CARD_3 = {
    "time": "2026-01-05T00:00:00Z", "card_uuid": "card-3", "patient_id": "p1", "service_id": CHEMO,
    "hook": "patient-view", "hook_instance": "hi-3", "rule_id": "gcsf-bone-pain", "rule_version": "1.0.0",
    "indicator": "info", "status": "suppressed:snooze", "shadow": False, "suppressed": True,
    "suppress_reason": "snooze", "evidence": ["MedicationAdministration/ma-1", "Observation/pain-1"],
    "user_id": None, "encounter_id": None, "feedback": [],
}
CARD_4 = {
    "time": "2026-01-05T00:00:00Z", "card_uuid": "card-4", "patient_id": "p3", "service_id": REVIEW,
    "hook": "order-sign", "hook_instance": "hi-4", "rule_id": "gcsf-bone-pain", "rule_version": "1.0.0",
    "indicator": "info", "status": "delivered", "shadow": False, "suppressed": False, "suppress_reason": None,
    "evidence": ["MedicationRequest/mr-1"], "user_id": "Practitioner/7", "encounter_id": "Encounter/e-3",
    "feedback": [
        {"outcome": "accepted", "override_code": None, "time": "2026-01-05T00:10:00Z",
         "received_at": "2026-01-05T00:11:00Z"},
        {"outcome": "overridden", "override_code": "not-relevant", "time": "2026-01-05T00:20:00Z",
         "received_at": "2026-01-05T00:21:00Z"},
    ],
}


def test_text_is_an_aligned_table_and_a_summary_line(seeded, capsys):
    assert run(capsys) == (0, TEXT, "")


def test_csv_is_a_header_and_one_line_per_card(seeded, capsys):
    assert run(capsys, "--format", "csv") == (0, CSV, "")


def test_json_is_an_array_with_stable_keys(seeded, capsys):
    code, out, err = run(capsys, "--format", "json")
    assert (code, err) == (0, "")
    records = json.loads(out)
    assert records == [CARD_1, CARD_2, CARD_3, CARD_4]
    assert [list(r) for r in records] == [list(CARD_1)] * 4  # key order too


def _uuids(capsys, *argv: str) -> list[str]:
    code, out, err = run(capsys, "--format", "json", *argv)
    assert (code, err) == (0, "")
    return [r["card_uuid"] for r in json.loads(out)]


@pytest.mark.parametrize(("argv", "expected"), [
    (["--patient", "p1"], ["card-1", "card-3"]),
    (["--patient", "nobody"], []),
    (["--rule", "mscc-red-flags"], ["card-2"]),
    (["--rule", "gcsf-bone-pain", "--patient", "p3"], ["card-4"]),
    (["--since", "2026-01-02T04:00:00Z"], ["card-2", "card-3", "card-4"]),  # inclusive
    (["--since", "2026-01-02T05:00:00+01:00"], ["card-2", "card-3", "card-4"]),  # the same instant
    (["--since", "2026-01-02T04:00:00.001Z"], ["card-3", "card-4"]),
    (["--until", "2026-01-05"], ["card-1", "card-2"]),  # exclusive: midnight UTC
    (["--until", "2026-01-05T00:00:00.000001Z"], ["card-1", "card-2", "card-3", "card-4"]),
    (["--since", "2026-01-03", "--until", "2026-01-06"], ["card-3", "card-4"]),
    (["--since", "2026-01-02", "--until", "2026-01-03", "--rule", "gcsf-bone-pain"], ["card-1"]),
])
def test_every_filter(seeded, capsys, argv, expected):
    assert _uuids(capsys, *argv) == expected


KNOWN_RULES = ("back-pain-supportive-care, gcsf-bone-pain, gcsf-order-dose-review, mscc-red-flags, "
               "nsaid-caution-post-chemo, progressive-back-pain")


@pytest.mark.parametrize("rule", ["gcsf-bone-pian", "GCSF-BONE-PAIN", ""])
def test_an_unknown_rule_id_is_one_line_listing_the_known_ones(seeded, capsys, rule):
    assert run(capsys, "--rule", rule) == (
        2, "", f"backpain-cds: error: unknown rule id {rule!r} (known: {KNOWN_RULES})\n")


def test_a_rule_of_the_engine_with_no_card_is_an_empty_audit_and_a_retired_rule_found_in_it_is_listed(seeded, capsys):
    assert _uuids(capsys, "--rule", "nsaid-caution-post-chemo") == []
    seeded.record_cards([CardAuditRecord("card-5", CHEMO, "patient-view", "hi-5", "retired-rule", "0.9.0", "info",
                                         "p4", at("2026-01-06T00:00:00Z"))])
    assert _uuids(capsys, "--rule", "retired-rule") == ["card-5"]


def test_the_text_summary_counts_the_filtered_rows_and_the_unmatched_feedback_of_the_period(seeded, capsys):
    code, out, _ = run(capsys, "--patient", "p1", "--since", "2026-01-02", "--until", "2026-01-03")
    assert code == 0
    assert out.splitlines()[-1] == (
        "1 card(s): 1 delivered, 0 shadow, 0 suppressed; 1 with feedback. 1 feedback entry on cards never "
        "issued or never shown kept apart in feedback_unmatched (not listed above)")
    code, out, _ = run(capsys, "--since", "2026-01-07")
    assert (code, out) == (0, "0 card(s): 0 delivered, 0 shadow, 0 suppressed; 0 with feedback. 0 feedback "
                              "entries on cards never issued or never shown kept apart in feedback_unmatched "
                              "(not listed above)\n")


def test_an_empty_audit_is_a_header_or_an_empty_array(store, capsys):
    assert run(capsys, "--format", "csv")[1] == CSV.splitlines()[0] + "\n"
    assert run(capsys, "--format", "json")[1] == "[]\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--since", "2026-02-30"], "--since '2026-02-30' is not a date (YYYY-MM-DD) or an RFC 3339 date-time "
                                "with a zone (e.g. 2026-03-01T09:00:00Z)"),
    (["--until", "yesterday"], "--until 'yesterday' is not a date"),
    (["--since", "2026-01-02T03:04:05"], "--since '2026-01-02T03:04:05' is not a date"),  # no zone
    (["--since", "2026-01-02T25:00:00Z"], "is not a date"),
    (["--since", "20260102"], "is not a date"),
    (["--since", "2026-01-03", "--until", "2026-01-03"], "--since must be before --until"),
])
def test_a_bad_date_is_one_line_and_exit_2(seeded, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("backpain-cds: error: ") and message in err
    assert err.count("\n") == 1


def test_a_bad_format_is_refused_by_the_parser(seeded, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--format", "xml"])
    assert exit_.value.code == 2


def test_the_help_says_the_output_holds_patient_ids(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert "contains patient ids" in " ".join(capsys.readouterr().out.split())


def _refusal(engine: sa.Engine) -> str:
    """The line ``serve`` (create_app) refuses this database with."""
    with pytest.raises(SchemaError) as refused:
        schema.require_current(engine)
    return str(refused.value)


@pytest.mark.parametrize("subcommand", ["audit", "purge"])
def test_a_database_behind_this_release_is_refused_with_the_line_serve_uses(db_url, capsys, subcommand):
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    command.upgrade(schema.alembic_config(engine=engine), "0003_card_audit_shadow")
    expected = _refusal(engine)
    assert "0003_card_audit_shadow" in expected and "backpain-cds migrate" in expected
    assert main([subcommand]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"backpain-cds: error: {expected}\n")
    engine.dispose()


@pytest.mark.parametrize("subcommand", ["audit", "purge"])
def test_a_newer_database_is_refused_with_the_line_serve_uses(store, capsys, subcommand):
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    expected = _refusal(store.engine)
    assert main([subcommand]) == 2
    assert capsys.readouterr().err == f"backpain-cds: error: {expected}\n"


@pytest.mark.postgres
def test_an_empty_postgresql_database_is_refused_and_left_empty(fresh_postgres_url, monkeypatch, capsys):
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", fresh_postgres_url)
    engine = sa.create_engine(fresh_postgres_url, poolclass=sa.pool.NullPool)
    expected = _refusal(engine)
    assert main(["audit"]) == 2
    assert capsys.readouterr().err == f"backpain-cds: error: {expected}\n"
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()


NO_FILE = "no such file (check database_url, or create the database with `backpain-cds migrate`)"


@pytest.mark.parametrize("argv", [["audit"], ["audit", "--format", "json"], ["purge"], ["purge", "--dry-run"]])
@pytest.mark.parametrize("form", ["absolute", "relative", "file-uri"])
def test_a_missing_sqlite_file_is_named_in_one_line_and_not_created(tmp_path, monkeypatch, capsys, argv, form):
    path = tmp_path / "absent.sqlite3"
    monkeypatch.chdir(tmp_path)
    url = {"absolute": f"sqlite:///{path}", "relative": "sqlite:///absent.sqlite3",
           "file-uri": f"sqlite:///file:{path}?uri=true"}[form]
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", url)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"backpain-cds: error: no database at {path}: {NO_FILE}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("subcommand", ["audit", "purge"])
def test_a_sqlite_path_in_a_missing_directory_or_naming_a_directory_is_one_line(tmp_path, monkeypatch, capsys,
                                                                                 subcommand):
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'nodir' / 'cds.sqlite3'}")
    assert main([subcommand]) == 2
    assert capsys.readouterr().err == (f"backpain-cds: error: no database at {tmp_path / 'nodir' / 'cds.sqlite3'}: "
                                       f"no such directory {tmp_path / 'nodir'} (check database_url)\n")
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", f"sqlite:///{tmp_path}")
    assert main([subcommand]) == 2
    assert capsys.readouterr().err == (f"backpain-cds: error: no database at {tmp_path}: that is a directory "
                                       "(check database_url)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a file: URI is a SQLite form
def test_a_file_uri_database_that_exists_is_read(seeded, db_url, monkeypatch, capsys):
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", db_url.replace("sqlite:///", "sqlite:///file:") + "?uri=true")
    assert run(capsys) == (0, TEXT, "")


def test_the_audit_logs_nothing_about_patients(seeded, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    for fmt in ("text", "json", "csv"):
        assert run(capsys, "--format", fmt)[0] == 0
    assert [r for r in caplog.records if r.name.startswith("backpain_cds")] == []
    assert not [r for r in caplog.records if any(p in r.getMessage() for p in ("p1", "p2", "p3", "card-"))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("fmt", "first_line"), [
    ("text", "TIME                  PATIENT         RULE            VERSION"), ("json", "["), ("csv", CSV.splitlines()[0])])
def test_a_reader_that_stops_early_ends_the_command_quietly_with_141(store, db_url, fmt, first_line):
    """``backpain-cds audit | head -1``: the real command in a subprocess, its stdout read by a
    reader that closes the pipe after one line, long before the output (far more than a pipe
    holds) is written: no traceback, exit status 141 (128 + SIGPIPE)."""
    start = at("2026-01-01T00:00:00Z")
    store.record_cards([
        CardAuditRecord(f"card-{i:04d}", CHEMO, "patient-view", f"hi-{i}", "gcsf-bone-pain", "1.0.0", "info",
                        f"synthetic-{i:04d}", start + timedelta(seconds=i)) for i in range(3000)])
    script = Path(sys.executable).with_name("backpain-cds")  # the console script, as an operator runs it
    command = [str(script)] if script.exists() else [sys.executable, "-m", "backpain_cds.cli"]
    reader = subprocess.Popen([*command, "audit", "--format", fmt], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=os.environ.copy())
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline().decode()
    reader.stdout.close()
    err = reader.stderr.read().decode()
    reader.stderr.close()
    assert (reader.wait(timeout=120), err) == (141, "")
    assert first.startswith(first_line)
