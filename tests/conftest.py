"""Shared fixtures: settings on a temporary SQLite file, the app, its test client, a loopback
HTTP recorder, the sekmet FHIR server and PostgreSQL.

Fixtures used by more than one test module live here: a test module that imported a fixture
would shadow it with each test's parameter of the same name.
"""

from __future__ import annotations

import os
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest

from backpain_cds.settings import Settings
from tests.support.clock import FakeClock
from tests.support.http_recorder import HttpRecorder
from tools.harness.sekmet import fhir_server  # noqa: F401  (session fixture, for every test module)
from tools.harness.servers import unavailable


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_mapping(
        {
            "database_url": f"sqlite:///{tmp_path / 'test.sqlite3'}",
            "validate_responses": True,
            "fhir": {"allowed_servers": ["http://127.0.0.1:1/fhir"], "timeout_seconds": 2},
        }
    )


@pytest.fixture
def app(settings: Settings):
    from backpain_cds.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app):
    return app.extensions["backpain_cds"]["store"]


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock (seconds since the epoch) for code that takes ``clock=``."""
    return FakeClock()


@pytest.fixture
def http_recorder() -> Iterator[HttpRecorder]:
    """A started :class:`~tests.support.http_recorder.HttpRecorder`, stopped after the test."""
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL from BACKPAIN_CDS_TEST_POSTGRES_URL (.ci/run starts the server), its
    database migrated to this release's schema (as an operator's ``backpain-cds migrate`` would)."""
    url = os.environ.get("BACKPAIN_CDS_TEST_POSTGRES_URL")
    if not url:
        unavailable("PostgreSQL not configured: set BACKPAIN_CDS_TEST_POSTGRES_URL")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        unavailable(f"PostgreSQL at BACKPAIN_CDS_TEST_POSTGRES_URL is unreachable: {exc.__class__.__name__}")
    from backpain_cds.schema import upgrade

    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def make_any_db_app(request, tmp_path: Path):
    """Build the app on SQLite, and in a second run of the test on PostgreSQL: call it with
    settings (``make_any_db_app(auth={...})``). PostgreSQL's tables are emptied before and
    after the test; without a PostgreSQL server the second run is skipped with its reason, or
    fails when ``BACKPAIN_CDS_REQUIRE_SERVERS=1`` (the ``postgres_url`` fixture)."""
    from backpain_cds.app import create_app
    from backpain_cds.storage import metadata

    postgres = request.param == "postgresql"
    url = request.getfixturevalue("postgres_url") if postgres else f"sqlite:///{tmp_path / 'any.sqlite3'}"
    apps = []

    def wipe(app) -> None:
        with app.extensions["backpain_cds"]["store"].engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())

    def make(**overrides: t.Any):
        app = create_app(Settings.from_mapping({"database_url": url, "validate_responses": True, **overrides}))
        if postgres:
            wipe(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        if postgres:
            wipe(app)
        app.extensions["backpain_cds"]["store"].engine.dispose()


@pytest.fixture
def any_db_app(make_any_db_app):
    """The app with the default settings on SQLite and on PostgreSQL (see ``make_any_db_app``)."""
    return make_any_db_app()


@pytest.fixture
def fresh_postgres_url(postgres_url: str):
    """A URL on an empty PostgreSQL schema of its own (search_path), dropped afterwards: for
    tests that need an empty or pre-migration database beside the shared, migrated one."""
    import secrets

    import sqlalchemy as sa

    schema = f"test_{secrets.token_hex(6)}"
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
