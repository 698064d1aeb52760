"""The schema of release 0.1.0, the last before migrations, as its code created it.

A frozen copy of the ``sa.Table`` definitions of ``backpain_cds/storage.py`` and
``smart_launch/session_store.py`` at that release: ``create_all`` made the first four at start,
the SMART tables only when ``[[smart.ehrs]]`` was configured. Never edit it to follow the code:
the migration tests upgrade databases made by exactly this.
"""

from __future__ import annotations

import sqlalchemy as sa


def metadata(*, smart: bool = True) -> sa.MetaData:
    """The release's tables (without the SMART ones when ``smart`` is False)."""
    md = sa.MetaData()

    def feedback_columns() -> list[sa.Column]:
        return [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("service_id", sa.String(64), nullable=False),
            sa.Column("card_uuid", sa.String(128), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
            sa.Column("accepted_suggestions", sa.Text, nullable=False, default="[]"),
            sa.Column("override_code", sa.String(256)),
            sa.Column("override_system", sa.String(512)),
            sa.Column("override_comment", sa.Text),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        ]

    sa.Table("feedback", md, *feedback_columns(),
             sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_card_outcome"))
    sa.Table("feedback_unmatched", md, *feedback_columns(),
             sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_unmatched_card_outcome"))
    sa.Table(
        "card_audit", md,
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("rule_version", sa.String(32), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "seen_jti", md,
        sa.Column("iss", sa.String(512), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    if smart:
        sa.Table(
            "smart_launch_state", md,
            sa.Column("state_hash", sa.String(64), primary_key=True),
            sa.Column("browser_hash", sa.String(64), nullable=False),
            sa.Column("iss", sa.String(1024), nullable=False),
            sa.Column("launch_enc", sa.Text, nullable=False),
            sa.Column("verifier_enc", sa.Text, nullable=False),
            sa.Column("issuer", sa.String(1024)),
            sa.Column("token_endpoint", sa.String(2048), nullable=False),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
            sa.Column("used_at", sa.BigInteger),
        )
        sa.Table(
            "smart_session", md,
            sa.Column("view_hash", sa.String(64), primary_key=True),
            sa.Column("browser_hash", sa.String(64), nullable=False),
            sa.Column("iss", sa.String(1024), nullable=False),
            sa.Column("patient", sa.String(256)),
            sa.Column("encounter", sa.String(256)),
            sa.Column("token_enc", sa.Text, nullable=False),
            sa.Column("scope", sa.Text, nullable=False, default=""),
            sa.Column("need_patient_banner", sa.Boolean, nullable=False, default=False),
            sa.Column("smart_style_url", sa.Text),
            sa.Column("app_context", sa.Text),
            sa.Column("fhir_context", sa.Text),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        )
    return md


def create(engine: sa.Engine, *, smart: bool = True) -> None:
    """Make the database that release made: ``create_all``, no ``alembic_version``."""
    metadata(smart=smart).create_all(engine)
