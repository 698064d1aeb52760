"""Shadow mode: ``card_audit.shadow`` marks a card that was produced, rendered and audited but
not returned to the EHR (the site or rule is in shadow mode). NOT NULL with a server default of
false, so every row written before (all shown) reads as not shadow.

Revision ID: 0003_card_audit_shadow
Revises: 0002_smart_openid
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_card_audit_shadow"
down_revision = "0002_smart_openid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "card_audit",
        sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:  # pragma: no cover - the service never downgrades; for a DBA
    op.drop_column("card_audit", "shadow")
