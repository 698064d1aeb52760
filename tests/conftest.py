"""Shared fixtures: settings on a temporary SQLite file, the app, its test client, a loopback
HTTP recorder, the sekmet FHIR server and PostgreSQL.

Fixtures used by more than one test module live here: a test module that imported a fixture
would shadow it with each test's parameter of the same name.
"""

from __future__ import annotations

import os
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
    """A PostgreSQL URL from BACKPAIN_CDS_TEST_POSTGRES_URL (.ci/run starts the server)."""
    url = os.environ.get("BACKPAIN_CDS_TEST_POSTGRES_URL")
    if not url:
        unavailable("PostgreSQL not configured: set BACKPAIN_CDS_TEST_POSTGRES_URL")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        unavailable(f"PostgreSQL at BACKPAIN_CDS_TEST_POSTGRES_URL is unreachable: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return url
