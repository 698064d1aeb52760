"""Alembic environment: run by every ``alembic.command`` call on this script directory.

Online, it uses the engine ``backpain_cds.schema`` put in ``config.attributes["engine"]`` (or,
for the ``alembic`` command a developer runs, an engine made from ``sqlalchemy.url`` or
``$BACKPAIN_CDS_DATABASE_URL``). On PostgreSQL the whole upgrade is one transaction that first
takes an advisory lock, so several instances started with ``--migrate`` at once migrate once.
Offline (``--sql``) it only needs the URL's dialect and never connects.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from backpain_cds.schema import model_metadata

#: pg_advisory_xact_lock key: any fixed 64-bit number this service alone uses
MIGRATION_LOCK_KEY = 0x6270635F6D696772  # "bpc_migr"

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or os.environ.get("BACKPAIN_CDS_DATABASE_URL")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or BACKPAIN_CDS_DATABASE_URL")
    return url


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"},
                      target_metadata=model_metadata())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given: sa.Engine | None = config.attributes.get("engine")
    engine = given or sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=model_metadata())
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": MIGRATION_LOCK_KEY})
                context.run_migrations()
    finally:
        if given is None:
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
