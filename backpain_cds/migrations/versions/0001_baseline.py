"""Baseline: the schema release 0.1.0 created with ``create_all`` before migrations existed.

Feedback (matched and unmatched), card audit, seen JWT ids, SMART launch states and view
sessions. Every table and index is created ``IF NOT EXISTS``: on a database that release made
(no ``alembic_version`` table; ``backpain_cds.schema`` first checks that its tables have the
expected columns) this revision keeps the existing tables and their rows, adds the ones that
release created only on demand (the SMART tables), and stamps the database. The same holds for
the SQL ``backpain-cds migrate --sql`` prints.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _feedback_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("override_code", sa.String(256)),
        sa.Column("override_system", sa.String(512)),
        sa.Column("override_comment", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "feedback",
        *_feedback_columns(),
        sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_card_outcome"),
        if_not_exists=True,
    )
    op.create_table(
        "feedback_unmatched",
        *_feedback_columns(),
        sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_unmatched_card_outcome"),
        if_not_exists=True,
    )
    op.create_table(
        "card_audit",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("rule_version", sa.String(32), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "seen_jti",
        sa.Column("iss", sa.String(512), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_seen_jti_expires_at", "seen_jti", ["expires_at"], if_not_exists=True)
    op.create_table(
        "smart_launch_state",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("iss", sa.String(1024), nullable=False),
        sa.Column("launch_enc", sa.Text, nullable=False),
        sa.Column("verifier_enc", sa.Text, nullable=False),
        sa.Column("issuer", sa.String(1024)),
        sa.Column("token_endpoint", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger),
        if_not_exists=True,
    )
    op.create_index("ix_smart_launch_state_expires_at", "smart_launch_state", ["expires_at"],
                    if_not_exists=True)
    op.create_table(
        "smart_session",
        sa.Column("view_hash", sa.String(64), primary_key=True),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("iss", sa.String(1024), nullable=False),
        sa.Column("patient", sa.String(256)),
        sa.Column("encounter", sa.String(256)),
        sa.Column("token_enc", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("need_patient_banner", sa.Boolean, nullable=False),
        sa.Column("smart_style_url", sa.Text),
        sa.Column("app_context", sa.Text),
        sa.Column("fhir_context", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_smart_session_expires_at", "smart_session", ["expires_at"], if_not_exists=True)


def downgrade() -> None:
    # Only the ``alembic`` command can run this (a developer's tool): it drops every table.
    for index, table in (("ix_smart_session_expires_at", "smart_session"),
                         ("ix_smart_launch_state_expires_at", "smart_launch_state"),
                         ("ix_seen_jti_expires_at", "seen_jti")):
        op.drop_index(index, table_name=table)
    for table in ("smart_session", "smart_launch_state", "seen_jti", "card_audit",
                  "feedback_unmatched", "feedback"):
        op.drop_table(table)
