"""Operations: suppression, snooze, and the call log the governance report reads.

- ``card_audit`` gains what an audit of one card needs beyond its ids: ``evidence`` (the FHIR
  references, ``Type/id``, that made the rule fire, as a JSON list), ``suppressed`` and
  ``suppress_reason`` (``snooze`` or ``duplicate``: produced and audited but not shown), and
  ``user_id`` / ``encounter_id`` from the hook context (an ordering session is one user, one
  patient, one encounter). Rows written before read as delivered, with no evidence recorded.
- ``snooze``: one row per override with a snooze reason; it holds back that rule's card for
  that patient until ``expires_at`` unless the card's evidence set grows.
- ``hook_call``: one row per answered hook call (service, hook, status, duration, deadline), the
  per-service half of ``backpain-cds report``.

Revision ID: 0004_operations
Revises: 0003_card_audit_shadow
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_operations"
down_revision = "0003_card_audit_shadow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card_audit", sa.Column("evidence", sa.Text, nullable=False, server_default="[]"))
    op.add_column("card_audit", sa.Column("suppressed", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("card_audit", sa.Column("suppress_reason", sa.String(16), nullable=True))
    op.add_column("card_audit", sa.Column("user_id", sa.String(256), nullable=True))
    op.add_column("card_audit", sa.Column("encounter_id", sa.String(128), nullable=True))
    op.create_index("ix_card_audit_patient_rule_created", "card_audit",
                    ["patient_id", "rule_id", "created_at"])
    op.create_index("ix_card_audit_created", "card_audit", ["created_at"])
    op.create_table(
        "snooze",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.String(256), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("card_uuid", name="uq_snooze_card"),
    )
    op.create_index("ix_snooze_patient_rule_expires", "snooze", ["patient_id", "rule_id", "expires_at"])
    op.create_table(
        "hook_call",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("deadline_exceeded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cards", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_hook_call_received", "hook_call", ["received_at"])
    op.create_index("ix_feedback_received", "feedback", ["received_at"])
    op.create_index("ix_feedback_unmatched_received", "feedback_unmatched", ["received_at"])


def downgrade() -> None:  # pragma: no cover - the service never downgrades; for a DBA
    op.drop_index("ix_feedback_unmatched_received", "feedback_unmatched")
    op.drop_index("ix_feedback_received", "feedback")
    op.drop_index("ix_hook_call_received", "hook_call")
    op.drop_table("hook_call")
    op.drop_index("ix_snooze_patient_rule_expires", "snooze")
    op.drop_table("snooze")
    op.drop_index("ix_card_audit_created", "card_audit")
    op.drop_index("ix_card_audit_patient_rule_created", "card_audit")
    for column in ("encounter_id", "user_id", "suppress_reason", "suppressed", "evidence"):
        op.drop_column("card_audit", column)
