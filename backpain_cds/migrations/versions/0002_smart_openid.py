"""SMART sign-in (OpenID Connect): the launch state keeps the nonce digest, the EHR's JWKS URL
and its advertised id_token algorithms; the view session keeps the validated ``fhirUser``
(encrypted). All four columns are nullable: launches and sessions made before stay valid.

Revision ID: 0002_smart_openid
Revises: 0001_baseline
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002_smart_openid"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


_COLUMNS = (
    ("smart_launch_state", lambda: sa.Column("nonce_hash", sa.String(64))),
    ("smart_launch_state", lambda: sa.Column("jwks_uri", sa.String(2048))),
    ("smart_launch_state", lambda: sa.Column("id_token_algs", sa.String(256))),
    ("smart_session", lambda: sa.Column("fhir_user_enc", sa.Text)),
)


def upgrade() -> None:
    # Online, a column that is already there is left alone (a development build added these
    # columns at start-up before migrations existed); offline (--sql) every column is added.
    present: dict[str, set[str]] = {}
    if not context.is_offline_mode():
        inspector = sa.inspect(op.get_bind())
        present = {table: {c["name"] for c in inspector.get_columns(table)} for table, _ in _COLUMNS}
    for table, column in _COLUMNS:
        new = column()
        if new.name not in present.get(table, set()):
            op.add_column(table, new)


def downgrade() -> None:  # pragma: no cover - the service never downgrades; for a DBA
    op.drop_column("smart_session", "fhir_user_enc")
    op.drop_column("smart_launch_state", "id_token_algs")
    op.drop_column("smart_launch_state", "jwks_uri")
    op.drop_column("smart_launch_state", "nonce_hash")
