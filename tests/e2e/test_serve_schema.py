"""``backpain-cds serve`` and the database schema, as real processes on SQLite and PostgreSQL.

serve refuses a database that is not at this release's revision with one line (exit 2) before it
listens; ``serve --migrate`` adopts a previous release's database and serves its rows; a
brand-new SQLite file (the README's first command) gets its schema without asking.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from backpain_cds import schema
from backpain_cds.schema import State
from backpain_cds.storage import SqlStore
from tests.support import legacy_schema
from tools.harness.live_service import start_service, stop_service
from tools.harness.servers import free_port

pytestmark = pytest.mark.e2e

SERVICE = "back-pain-after-chemo"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    return request.getfixturevalue("fresh_postgres_url")


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _previous_release_with_a_card(url: str) -> str:
    """A database as the release before migrations left it, with one issued card."""
    engine = _engine(url)
    legacy_schema.create(engine, smart=False)
    card = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(legacy_schema.metadata(smart=False).tables["card_audit"].insert(), {
            "card_uuid": card, "service_id": SERVICE, "hook": "patient-view", "hook_instance": "hi-old",
            "rule_id": "gcsf-bone-pain", "rule_version": "1.0.0", "indicator": "info", "patient_id": "p-old",
            "created_at": datetime(2026, 1, 2, tzinfo=UTC)})
    return card


def _serve_refused(url: str, workdir: Path) -> str:
    """Run serve on ``url``; it must exit 2 at once. Returns its stderr."""
    config = workdir / "config.toml"
    config.write_text(f'database_url = "{url}"\n')
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "backpain_cds.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port)],
        check=False, capture_output=True, text=True, timeout=60, cwd=workdir)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    return done.stderr


def test_serve_refuses_a_previous_release_database_with_one_line(db_url, tmp_path):
    _previous_release_with_a_card(db_url)
    err = _serve_refused(db_url, tmp_path)
    assert err == ("backpain-cds: error: the database was made by a release before schema migrations "
                   "(backpain-cds tables without an alembic_version row): run `backpain-cds migrate` first "
                   "(or `backpain-cds serve --migrate`)\n")
    assert schema.status(_engine(db_url)).state is State.PRE_MIGRATION  # untouched


def test_serve_refuses_a_newer_database_with_one_line(db_url, tmp_path):
    engine = _engine(db_url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_newer_release'"))
    err = _serve_refused(db_url, tmp_path)
    assert err.count("\n") == 1
    assert err.startswith("backpain-cds: error: the database schema is at revision ffff_newer_release, "
                          "which this release does not know")


@pytest.mark.postgres
def test_serve_never_creates_a_postgresql_schema_by_itself(fresh_postgres_url, tmp_path):
    err = _serve_refused(fresh_postgres_url, tmp_path)
    assert err == ("backpain-cds: error: the database has no backpain-cds tables yet: run `backpain-cds "
                   "migrate` first (or `backpain-cds serve --migrate`)\n")
    with _engine(fresh_postgres_url).connect() as conn:
        assert sa.inspect(conn).get_table_names() == []


def test_serve_migrate_adopts_a_previous_release_database_and_serves_its_rows(db_url, tmp_path):
    card = _previous_release_with_a_card(db_url)
    service = start_service(f'database_url = "{db_url}"\n', tmp_path, serve_args=("--migrate",))
    try:
        assert requests.get(service.url("/readyz"), timeout=10).status_code == 200
        body = {"feedback": [{"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
                              "outcomeTimestamp": "2026-01-02T03:04:05Z"}]}
        response = requests.post(service.url(f"/cds-services/{SERVICE}/feedback"), json=body, timeout=10)
        # the card was issued by the previous release: its feedback is matched, not kept apart
        assert response.json() == {"received": 1, "stored": 1, "unmatched": 0}
    finally:
        stop_service(service)
    assert f'"database migrated to revision {schema.head()} (it was pre-migration)"' in service.log()
    assert schema.status(_engine(db_url)).state is State.CURRENT
    store = SqlStore(db_url)
    assert [r["card_uuid"] for r in store.feedback_rows()] == [card]
    store.engine.dispose()


def test_a_fresh_machine_serve_creates_its_sqlite_database(tmp_path):
    """README: `pip install . && backpain-cds serve` (default database_url, a file in the cwd)."""
    service = start_service("", tmp_path)
    try:
        assert requests.get(service.url("/readyz"), timeout=10).json()["database"] == "ok"
    finally:
        stop_service(service)
    assert f"created the database schema (revision {schema.head()}) in a new SQLite database" in service.log()
    store = SqlStore(f"sqlite:///{tmp_path / 'backpain-cds.sqlite3'}")
    assert schema.status(store.engine).state is State.CURRENT
    store.engine.dispose()
