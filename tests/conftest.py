"""Shared fixtures: settings on a temporary SQLite file, the app, its test client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backpain_cds.settings import Settings
from tools.harness.sekmet import fhir_server  # noqa: F401  (session fixture)
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
