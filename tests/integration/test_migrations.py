"""Schema migrations on SQLite and PostgreSQL: from empty, from the last release before
migrations (its rows survive), refusals (newer, not adoptable), ``migrate --sql``, concurrency.

Every PostgreSQL case runs in a schema of its own (``fresh_postgres_url``), so the shared test
database and other tests are never touched.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backpain_cds import schema
from backpain_cds.cli import main
from backpain_cds.schema import SchemaError, State
from backpain_cds.storage import SqlStore
from cds_hooks.ports import CardAuditRecord, FeedbackEntry
from tests.support import legacy_schema

HEAD = "0004_operations"
TABLES = {"feedback", "feedback_unmatched", "card_audit", "seen_jti", "smart_launch_state", "smart_session"}
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.sqlite3'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def store(db_url):
    store = SqlStore(db_url)
    yield store
    store.engine.dispose()


def _differences(engine: sa.Engine) -> list:
    """What Alembic's autogenerate finds between the database and the code's tables."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), schema.model_metadata())


def _tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def _rows(engine: sa.Engine, table: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]


def _seed_previous_release(engine: sa.Engine, *, smart: bool) -> dict[str, list[dict]]:
    """The previous release's schema with a row in each table; returns the rows as read back."""
    legacy_schema.create(engine, smart=smart)
    md = legacy_schema.metadata(smart=smart)
    future = datetime.now(UTC) + timedelta(hours=1)
    rows = {
        "card_audit": {"card_uuid": "card-legacy-1", "service_id": "back-pain-after-chemo",
                       "hook": "patient-view", "hook_instance": "hi-1", "rule_id": "gcsf-bone-pain",
                       "rule_version": "1.0.0", "indicator": "info", "patient_id": "p-1", "created_at": T0},
        "feedback": {"service_id": "back-pain-after-chemo", "card_uuid": "card-legacy-1", "outcome": "accepted",
                     "outcome_timestamp": T0, "accepted_suggestions": '["s1"]', "received_at": T0},
        "feedback_unmatched": {"service_id": "back-pain-after-chemo", "card_uuid": "forged", "outcome": "accepted",
                               "outcome_timestamp": T0, "accepted_suggestions": "[]", "received_at": T0},
        "seen_jti": {"iss": "https://ehr.example.org", "jti": "jti-legacy", "expires_at": future},
    }
    if smart:
        rows["smart_session"] = {"view_hash": "v" * 64, "browser_hash": "b" * 64, "iss": "https://ehr/fhir",
                                 "token_enc": "encrypted", "scope": "launch", "need_patient_banner": True,
                                 "created_at": 1000, "expires_at": 2000}
    with engine.begin() as conn:
        for table, row in rows.items():
            conn.execute(md.tables[table].insert(), row)
    return {table: _rows(engine, table) for table in rows}


def test_upgrade_from_an_empty_database_gives_the_code_its_tables(store):
    assert schema.status(store.engine).state is State.EMPTY
    before, after = schema.upgrade(store.engine)
    assert (before.state, after.state, after.revision) == (State.EMPTY, State.CURRENT, HEAD)
    assert _tables(store.engine) >= TABLES | {"alembic_version"}
    assert _differences(store.engine) == []  # the migrations make exactly what the code uses
    card = str(uuid.uuid4())
    store.record_cards([CardAuditRecord(card, "back-pain-after-chemo", "patient-view", "hi", "gcsf-bone-pain",
                                        "1", "info", "p1", T0)])
    assert store.save_feedback("back-pain-after-chemo", [FeedbackEntry(card, "accepted", T0)]).stored == 1
    assert schema.upgrade(store.engine)[0].state is State.CURRENT  # idempotent


@pytest.mark.parametrize("smart", [True, False], ids=["with-smart-tables", "core-tables-only"])
def test_a_database_of_the_previous_release_is_adopted_with_its_rows(store, smart):
    seeded = _seed_previous_release(store.engine, smart=smart)
    found = schema.status(store.engine)
    assert (found.state, found.problems) == (State.PRE_MIGRATION, ())
    with pytest.raises(SchemaError, match="before schema migrations.*backpain-cds migrate"):
        schema.require_current(store.engine)  # serve refuses it until migrated

    before, after = schema.upgrade(store.engine)

    assert (before.state, after.state) == (State.PRE_MIGRATION, State.CURRENT)
    # every old row is kept, value for value (later revisions may add nullable columns beside them)
    kept = {table: [{k: row[k] for k in seeded[table][0]} for row in _rows(store.engine, table)] for table in seeded}
    assert kept == seeded
    assert _tables(store.engine) >= TABLES  # the SMART tables are added when that release had none
    assert _differences(store.engine) == []
    # The service reads the old rows: feedback on the old card is matched, the old jti is a replay.
    saved = store.save_feedback("back-pain-after-chemo", [FeedbackEntry("card-legacy-1", "overridden", T0)])
    assert saved == (1, 0, (0,))
    assert store.remember("https://ehr.example.org", "jti-legacy", datetime.now(UTC) + timedelta(hours=1)) is False


def test_a_foreign_table_with_a_service_table_name_is_not_adopted(store):
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE feedback (id INTEGER PRIMARY KEY, note TEXT)"))
    found = schema.status(store.engine)
    assert found.state is State.PRE_MIGRATION
    with pytest.raises(SchemaError, match=r"not one this service can adopt: table feedback lacks column\(s\) "
                                          r"accepted_suggestions, card_uuid, outcome"):
        schema.upgrade(store.engine)
    assert _tables(store.engine) == {"feedback"}  # nothing created, nothing stamped


def test_a_newer_revision_is_refused_and_never_downgraded(store):
    schema.upgrade(store.engine)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    found = schema.status(store.engine)
    assert (found.state, found.revision) == (State.NEWER, "ffff_from_the_future")
    with pytest.raises(SchemaError, match="ffff_from_the_future, which this release does not know"):
        schema.upgrade(store.engine)
    with pytest.raises(SchemaError, match="never downgrades"):
        schema.require_current(store.engine)
    assert _rows(store.engine, "alembic_version") == [{"version_num": "ffff_from_the_future"}]


def test_only_a_brand_new_sqlite_database_gets_its_schema_without_migrate(tmp_path):
    new = SqlStore(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert schema.require_current(new.engine).state is State.CURRENT
    other = SqlStore(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    with other.engine.begin() as conn:  # someone else's file: not ours to write into
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaError, match="no backpain-cds tables yet: run `backpain-cds migrate` first"):
        schema.require_current(other.engine)
    assert _tables(other.engine) == {"notes"}


@pytest.mark.postgres
def test_postgresql_is_never_migrated_without_being_asked(fresh_postgres_url):
    engine = sa.create_engine(fresh_postgres_url, poolclass=sa.pool.NullPool)
    with pytest.raises(SchemaError, match="no backpain-cds tables yet: run `backpain-cds migrate` first"):
        schema.require_current(engine)
    assert _tables(engine) == set()


RACER = """
import sys, time
import sqlalchemy as sa
from backpain_cds import schema
engine = sa.create_engine(sys.argv[1], poolclass=sa.pool.NullPool)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(schema.upgrade(engine)[1].state.value)
"""


@pytest.mark.postgres
def test_instances_migrating_at_once_on_postgresql_migrate_once(fresh_postgres_url):
    """Several instances started with --migrate at the same moment (processes: Alembic's
    context is per process). Without the advisory lock in env.py the losers fail creating
    alembic_version."""
    start = time.time() + 4  # all imported by then, then all upgrade at once
    racers = [subprocess.Popen([sys.executable, "-c", RACER, fresh_postgres_url, str(start)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    outcomes = [racer.communicate(timeout=120) for racer in racers]
    assert [(r.returncode, out, err) for r, (out, err) in zip(racers, outcomes, strict=True)] == [(0, "current\n", "")] * 3
    engine = sa.create_engine(fresh_postgres_url, poolclass=sa.pool.NullPool)
    assert _rows(engine, "alembic_version") == [{"version_num": HEAD}]


# --- migrate --sql -------------------------------------------------------------------------

def _sql(url: str, monkeypatch, capsys, *extra: str) -> str:
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", url)
    assert main(["migrate", "--sql", *extra]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrate_sql_prints_the_schema_without_connecting(dialect, tmp_path, monkeypatch, capsys):
    db = tmp_path / "never-created.sqlite3"
    # PostgreSQL on port 1: nothing listens there, so any connection attempt would fail.
    url = f"sqlite:///{db}" if dialect == "sqlite" else "postgresql+psycopg://u:pw@127.0.0.1:1/none"
    out = _sql(url, monkeypatch, capsys)
    for table in sorted(TABLES):
        assert f"CREATE TABLE IF NOT EXISTS {table} (" in out
    assert "CREATE INDEX IF NOT EXISTS ix_seen_jti_expires_at ON seen_jti (expires_at);" in out
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001_baseline')" in out
    assert f"UPDATE alembic_version SET version_num='{HEAD}'" in out  # then every later revision
    assert ("TIMESTAMP WITH TIME ZONE" in out) == (dialect == "postgresql")
    assert not db.exists()


def _apply_script(url: str, script: str) -> None:
    """Run the printed SQL as a DBA would (psql / sqlite3), not through Alembic."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(script)
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(script)  # several statements, no parameters: one simple query
        conn.commit()


@pytest.mark.parametrize("previous_release", [False, True], ids=["empty", "previous-release"])
def test_the_printed_sql_migrates_a_database(store, db_url, previous_release, monkeypatch, capsys):
    seeded = _seed_previous_release(store.engine, smart=False) if previous_release else {}
    _apply_script(db_url, _sql(db_url, monkeypatch, capsys))
    assert schema.status(store.engine).state is State.CURRENT
    assert _differences(store.engine) == []
    expected = {table: [_with_shadow(table, row) for row in rows] for table, rows in seeded.items()}
    assert {table: _rows(store.engine, table) for table in seeded} == expected


def _with_shadow(table: str, row: dict) -> dict:
    """A row of the previous release as read at head: audit rows are not shadow (0003), were
    delivered, not suppressed, and name no evidence, user or encounter (0004)."""
    if table != "card_audit":
        return row
    return {**row, "shadow": False, "evidence": "[]", "suppressed": False, "suppress_reason": None,
            "user_id": None, "encounter_id": None}


def test_migrate_sql_from_a_revision_that_does_not_exist_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", "postgresql+psycopg://u:pw@127.0.0.1:1/none")
    assert main(["migrate", "--sql", "--from", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Can't locate revision identified by 'nope'" in err


# --- migrate, connected ----------------------------------------------------------------------

def test_migrate_command_reports_each_state(db_url, store, monkeypatch, capsys):
    with store.engine.connect():
        pass  # an empty database: on SQLite, a file with no table
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", db_url)
    assert main(["migrate", "--check"]) == 1
    assert capsys.readouterr().out == "the database has no backpain-cds tables yet\n"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"migrated the database from empty to revision {HEAD}\n"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"the database is already at revision {HEAD}; nothing to do\n"
    assert main(["migrate", "--check"]) == 0
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_newer'"))
    capsys.readouterr()
    assert main(["migrate", "--check"]) == 2
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to migrate it" in err


NO_FILE = "no such file (check database_url, or create the database with `backpain-cds migrate`)"


@pytest.mark.parametrize("form", ["absolute", "relative", "file-uri"])
def test_migrate_check_on_a_missing_sqlite_file_says_so_exits_1_and_creates_nothing(tmp_path, monkeypatch, capsys,
                                                                                    form):
    path = tmp_path / "absent.sqlite3"
    monkeypatch.chdir(tmp_path)
    url = {"absolute": f"sqlite:///{path}", "relative": "sqlite:///absent.sqlite3",
           "file-uri": f"sqlite:///file:{path}?uri=true"}[form]
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", url)
    assert main(["migrate", "--check"]) == 1
    assert capsys.readouterr() == (f"no database at {path}: {NO_FILE}\n", "")
    assert list(tmp_path.iterdir()) == []
    assert main(["migrate"]) == 0  # what the line says to do
    assert capsys.readouterr().out == f"migrated the database from empty to revision {HEAD}\n"
    assert main(["migrate", "--check"]) == 0
    assert capsys.readouterr() == (f"the database schema is at revision {HEAD} (current)\n", "")


def test_a_sqlite_path_migrate_cannot_create_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    absent = tmp_path / "nodir" / "cds.sqlite3"
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", f"sqlite:///{absent}")
    line = f"no database at {absent}: no such directory {absent.parent} (check database_url)"
    assert main(["migrate", "--check"]) == 2
    assert capsys.readouterr() == (line + "\n", "")
    assert main(["migrate"]) == 2
    assert capsys.readouterr() == ("", f"backpain-cds: error: {line}\n")
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", f"sqlite:///{tmp_path}")
    assert main(["migrate"]) == 2
    assert capsys.readouterr().err == f"backpain-cds: error: no database at {tmp_path}: that is a directory (check database_url)\n"
    assert list(tmp_path.iterdir()) == []


def test_migrate_adopts_a_previous_release_database(db_url, store, monkeypatch, capsys):
    _seed_previous_release(store.engine, smart=True)
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", db_url)
    assert main(["migrate"]) == 0
    assert "adopted a database made before migrations (its rows are kept)" in capsys.readouterr().out
    assert schema.status(store.engine).state is State.CURRENT


def test_migrate_on_an_unreachable_database_is_one_line_without_credentials(monkeypatch, capsys):
    monkeypatch.setenv("BACKPAIN_CDS_DATABASE_URL", "postgresql+psycopg://someone:s3cret@127.0.0.1:1/none")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err == "backpain-cds: error: cannot read the database schema: OperationalError\n"


# --- the next revision: how a later release upgrades ------------------------------------------

NEXT_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "0005_test_next"
down_revision = "0004_operations"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("card_audit", sa.Column("test_next", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade():
    op.drop_column("card_audit", "test_next")
'''


@pytest.fixture
def next_release(tmp_path) -> Path:
    """The packaged scripts plus one more revision, as the next release would ship them."""
    location = tmp_path / "migrations"
    shutil.copytree(schema.SCRIPT_LOCATION, location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "0005_test_next.py").write_text(NEXT_REVISION)
    return location


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_a_database_one_revision_behind_is_refused_then_upgraded(store, next_release):
    command.upgrade(schema.alembic_config(engine=store.engine, script_location=next_release), HEAD)
    found = schema.status(store.engine, script_location=next_release)
    assert (found.state, found.revision, found.head) == (State.BEHIND, HEAD, "0005_test_next")
    with pytest.raises(SchemaError, match=f"at revision {HEAD}, this release needs 0005_test_next: "
                                          "run `backpain-cds migrate` first"):
        schema.require_current(store.engine, script_location=next_release)
    _, after = schema.upgrade(store.engine, script_location=next_release)
    assert after.state is State.CURRENT and "test_next" in _columns(store.engine, "card_audit")


def test_a_previous_release_database_goes_through_every_revision(store, next_release):
    seeded = _seed_previous_release(store.engine, smart=False)
    schema.upgrade(store.engine, script_location=next_release)
    assert schema.status(store.engine, script_location=next_release).state is State.CURRENT
    assert [r["card_uuid"] for r in _rows(store.engine, "card_audit")] == ["card-legacy-1"]
    assert [r["shadow"] for r in _rows(store.engine, "card_audit")] in ([False], [0])
    assert [r["test_next"] for r in _rows(store.engine, "card_audit")] in ([False], [0])
    assert _rows(store.engine, "feedback") == seeded["feedback"]


def test_migrate_sql_from_a_revision_prints_only_what_follows(next_release):
    out = io.StringIO()
    schema.upgrade_sql("postgresql+psycopg://u:pw@127.0.0.1:1/none", out, from_revision=HEAD,
                       script_location=next_release)
    text = out.getvalue()
    assert "ALTER TABLE card_audit ADD COLUMN test_next BOOLEAN DEFAULT false NOT NULL;" in text
    assert "UPDATE alembic_version SET version_num='0005_test_next' WHERE alembic_version.version_num = " \
           f"'{HEAD}';" in text
    assert "CREATE TABLE" not in text
