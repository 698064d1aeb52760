"""SQL storage through SQLAlchemy Core: feedback, card audit, seen JWT ids.

Feedback naming a card uuid this service never issued (no ``card_audit`` row for that uuid
and service id, or only a shadow-mode row: that card was never shown) is kept apart in ``feedback_unmatched``, so it cannot poison the governance
statistics read from ``feedback`` and is still there to investigate.

SQLite file by default; a PostgreSQL URL (``postgresql+psycopg://...``) works the same, which
is how several instances share replay protection and feedback. The tables below are what the
code reads and writes; the database gets them from the Alembic migrations in
``backpain_cds/migrations`` (``backpain_cds.schema``), never from ``create_all``.
"""

from __future__ import annotations

import json
import typing as t
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cds_hooks.ports import CardAuditRecord, EarlierCard, FeedbackEntry, FeedbackSaved, HookCallRecord, Snooze

metadata = sa.MetaData()

feedback = sa.Table(
    "feedback",
    metadata,
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
    sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_card_outcome"),
    sa.Index("ix_feedback_received", "received_at"),
)

#: the same columns as ``feedback``, for entries naming a card uuid we never issued
feedback_unmatched = sa.Table(
    "feedback_unmatched",
    metadata,
    *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                autoincrement=c.autoincrement, default=c.default)
      for c in feedback.columns),
    sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_unmatched_card_outcome"),
    sa.Index("ix_feedback_unmatched_received", "received_at"),
)

card_audit = sa.Table(
    "card_audit",
    metadata,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("hook", sa.String(64), nullable=False),
    sa.Column("hook_instance", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("rule_version", sa.String(32), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    #: produced and audited but not returned to the EHR (shadow mode, README "Shadow mode")
    sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()),
    #: the FHIR references (``Type/id``) that made the rule fire, a JSON list
    sa.Column("evidence", sa.Text, nullable=False, server_default="[]"),
    #: produced and audited but held back: ``suppress_reason`` is ``snooze`` or ``duplicate``
    sa.Column("suppressed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("suppress_reason", sa.String(16), nullable=True),
    #: hook context: who ordered, in which encounter (an ordering session's key)
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("encounter_id", sa.String(128), nullable=True),
    sa.Index("ix_card_audit_patient_rule_created", "patient_id", "rule_id", "created_at"),
    sa.Index("ix_card_audit_created", "created_at"),
)

#: an override with a snooze reason: the rule's card for the patient is held back until
#: ``expires_at`` unless its evidence set grows (README "Snooze and de-duplication")
snooze = sa.Table(
    "snooze",
    metadata,
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
    sa.Index("ix_snooze_patient_rule_expires", "patient_id", "rule_id", "expires_at"),
)

#: one row per answered hook call: the per-service half of the governance report
hook_call = sa.Table(
    "hook_call",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("hook", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("deadline_exceeded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cards", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_hook_call_received", "received_at"),
)

seen_jti = sa.Table(
    "seen_jti",
    metadata,
    sa.Column("iss", sa.String(512), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


#: the hot statements, built once (a statement built per call costs more than running it)
_ACTIVE_SNOOZES = sa.select(snooze.c.rule_id, snooze.c.indicator, snooze.c.evidence, snooze.c.expires_at).where(
    snooze.c.patient_id == sa.bindparam("patient_id"), snooze.c.expires_at > sa.bindparam("now"))
_INSERT_CALL = hook_call.insert()


class StorageError(RuntimeError):
    """The database could not be reached or refused the write."""


#: rule id -> override reason code -> how long an override with that reason snoozes the rule
SnoozePeriods = t.Mapping[str, t.Mapping[str, timedelta]]


class SqlStore:
    """Implements the protocol layer's ports (FeedbackStore, CardAuditLog, SuppressionLookup,
    CallLog, JtiStore).

    ``snooze_periods`` (from ``knowledge/actions.toml``: override reasons with ``snooze_days``)
    says which overrides snooze a rule: feedback overriding a shown card with such a reason
    writes a ``snooze`` row in the same transaction as the feedback.
    """

    def __init__(self, database_url: str, *, engine: sa.Engine | None = None,
                 snooze_periods: SnoozePeriods | None = None, override_system: str | None = None) -> None:
        self.engine = engine or _make_engine(database_url)
        self._dialect = self.engine.dialect.name
        self.snooze_periods: SnoozePeriods = snooze_periods or {}
        #: the system of the service's own override reasons (feedback may omit it; another
        #: system's code of the same spelling is not ours and snoozes nothing)
        self.override_system = override_system

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def warm(self) -> None:
        """Open a connection and compile the hot statements, writing nothing (warm start).

        Runs the card-audit insert, the feedback lookup and the JWT-id statements of
        :meth:`remember` in a transaction that is rolled back.
        """
        now = datetime.now(UTC)
        row = {"card_uuid": "warm-up", "service_id": "warm-up", "hook": "warm-up",
               "hook_instance": "warm-up", "rule_id": "warm-up", "rule_version": "0",
               "indicator": "info", "patient_id": "warm-up", "created_at": now, "shadow": False,
               "evidence": "[]", "suppressed": False, "suppress_reason": None, "user_id": None,
               "encounter_id": None}
        with self.engine.connect() as conn:
            conn.execute(card_audit.insert(), [row])
            conn.execute(self._issued_query("warm-up", ["warm-up"]))
            conn.execute(_ACTIVE_SNOOZES, {"patient_id": "warm-up", "now": now})
            conn.execute(seen_jti.delete().where(seen_jti.c.iss == "warm-up", seen_jti.c.jti == "warm-up",
                                                 seen_jti.c.expires_at < now))
            conn.execute(self._insert_ignore(seen_jti, ["iss", "jti"]),
                         {"iss": "warm-up", "jti": "warm-up", "expires_at": now}).all()
            epoch = datetime(1970, 1, 1, tzinfo=UTC)  # same statement as the sweep, no row touched
            conn.execute(seen_jti.delete().where(seen_jti.c.expires_at < epoch))
            conn.rollback()

    # --- FeedbackStore ---------------------------------------------------------------------
    def save_feedback(self, service_id: str, entries: t.Sequence[FeedbackEntry]) -> FeedbackSaved:
        """Store all entries in one transaction; entries for cards never issued go apart."""
        now = datetime.now(UTC)
        if not entries:
            return FeedbackSaved(0, 0)
        uuids = sorted({e.card_uuid for e in entries})
        try:
            with self.engine.begin() as conn:
                issued = {row.card_uuid: row for row in conn.execute(self._issued_query(service_id, uuids))}
                known = self._insert_ignore(feedback, ["card_uuid", "outcome"])
                unknown = self._insert_ignore(feedback_unmatched, ["card_uuid", "outcome"])
                unmatched = 0
                stored_entries: list[int] = []
                for position, e in enumerate(entries):
                    row = {
                        "service_id": service_id,
                        "card_uuid": e.card_uuid,
                        "outcome": e.outcome,
                        "outcome_timestamp": e.outcome_timestamp,
                        "accepted_suggestions": json.dumps(list(e.accepted_suggestions)),
                        "override_code": e.override_code,
                        "override_system": e.override_system,
                        "override_comment": e.override_comment,
                        "received_at": now,
                    }
                    card = issued.get(e.card_uuid)
                    if card is not None:
                        if conn.execute(known, row).all():
                            stored_entries.append(position)
                            self._maybe_snooze(conn, card, e, service_id, now)
                    else:
                        unmatched += len(conn.execute(unknown, row).all())
                return FeedbackSaved(len(stored_entries), unmatched, tuple(stored_entries))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot store feedback: {exc.__class__.__name__}") from exc

    def _issued_query(self, service_id: str, uuids: t.Sequence[str]) -> t.Any:
        """The cards among ``uuids`` this service issued and showed (feedback on a card held
        back, by shadow mode or a suppression, names a card the clinician never saw)."""
        c = card_audit.c
        return sa.select(c.card_uuid, c.patient_id, c.rule_id, c.indicator, c.evidence).where(
            c.service_id == service_id, c.card_uuid.in_(uuids), c.shadow == sa.false(),
            c.suppressed == sa.false())

    def _maybe_snooze(self, conn: sa.Connection, card: t.Any, entry: FeedbackEntry, service_id: str,
                      now: datetime) -> None:
        """An override with a snooze reason of the card's rule writes its snooze row."""
        if entry.outcome != "overridden" or entry.override_code is None:
            return
        if entry.override_system is not None and entry.override_system != self.override_system:
            return
        period = self.snooze_periods.get(card.rule_id, {}).get(entry.override_code)
        if period is None:
            return
        # From when the clinician overrode, never later than now: an EHR clock ahead of ours
        # cannot stretch a snooze.
        start = min(entry.outcome_timestamp, now)
        conn.execute(self._insert_ignore(snooze, ["card_uuid"]), {
            "patient_id": card.patient_id, "rule_id": card.rule_id, "indicator": card.indicator,
            "card_uuid": entry.card_uuid, "service_id": service_id, "reason_code": entry.override_code,
            "evidence": card.evidence, "created_at": now, "expires_at": start + period,
        }).all()

    def feedback_rows(self) -> list[dict[str, t.Any]]:
        """All stored feedback on cards we issued (for tests and exports), oldest first."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(feedback).order_by(feedback.c.id))
            return [dict(row._mapping) for row in result]

    def unmatched_feedback_rows(self) -> list[dict[str, t.Any]]:
        """Feedback naming card uuids this service never issued, oldest first."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(feedback_unmatched).order_by(feedback_unmatched.c.id))
            return [dict(row._mapping) for row in result]

    # --- CardAuditLog ----------------------------------------------------------------------
    def record_cards(self, records: t.Sequence[CardAuditRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "card_uuid": r.card_uuid,
                "service_id": r.service_id,
                "hook": r.hook,
                "hook_instance": r.hook_instance,
                "rule_id": r.rule_id,
                "rule_version": r.rule_version,
                "indicator": r.indicator,
                "patient_id": r.patient_id,
                "created_at": r.created_at,
                "shadow": r.shadow,
                "evidence": json.dumps(list(r.evidence)),
                "suppressed": r.suppressed,
                "suppress_reason": r.suppress_reason,
                "user_id": r.user_id,
                "encounter_id": r.encounter_id,
            }
            for r in records
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(card_audit.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot write the card audit: {exc.__class__.__name__}") from exc

    def audit_rows(self) -> list[dict[str, t.Any]]:
        """All card audit rows, oldest first."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(card_audit).order_by(card_audit.c.created_at))
            return [dict(row._mapping) for row in result]

    # --- SuppressionLookup -----------------------------------------------------------------
    def active_snoozes(self, patient_id: str, rule_ids: t.Collection[str], now: datetime) -> list[Snooze]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(_ACTIVE_SNOOZES, {"patient_id": patient_id, "now": now}).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the snoozes: {exc.__class__.__name__}") from exc
        return [Snooze(r.rule_id, r.indicator, frozenset(json.loads(r.evidence)), _aware(r.expires_at))
                for r in rows if r.rule_id in rule_ids]

    def earlier_cards(
        self, patient_id: str, rule_ids: t.Collection[str], *, hook: str, since: datetime,
        user_id: str | None, encounter_id: str | None,
    ) -> list[EarlierCard]:
        c = card_audit.c
        query = sa.select(c.rule_id, c.indicator, c.evidence, c.created_at).where(
            c.patient_id == patient_id, c.rule_id.in_(list(rule_ids)), c.created_at >= since,
            c.hook == hook, c.shadow == sa.false(), c.suppressed == sa.false(),
            c.user_id.is_(None) if user_id is None else c.user_id == user_id,
            c.encounter_id.is_(None) if encounter_id is None else c.encounter_id == encounter_id,
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the earlier cards: {exc.__class__.__name__}") from exc
        return [EarlierCard(r.rule_id, r.indicator, frozenset(json.loads(r.evidence)), _aware(r.created_at))
                for r in rows]

    def snooze_rows(self) -> list[dict[str, t.Any]]:
        """All snooze rows, oldest first."""
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.select(snooze).order_by(snooze.c.id))]

    # --- CallLog ---------------------------------------------------------------------------
    def record_call(self, record: HookCallRecord) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_CALL, {
                    "received_at": record.received_at, "service_id": record.service_id, "hook": record.hook,
                    "status": record.status, "duration_ms": record.duration_ms,
                    "deadline_exceeded": record.deadline_exceeded, "cards": record.cards,
                })
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot write the call log: {exc.__class__.__name__}") from exc

    # --- JtiStore --------------------------------------------------------------------------
    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record a JWT id; False if it was already seen and has not expired (a replay)."""
        now = datetime.now(UTC)
        stmt = self._insert_ignore(seen_jti, ["iss", "jti"])
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    seen_jti.delete().where(
                        seen_jti.c.iss == iss, seen_jti.c.jti == jti, seen_jti.c.expires_at < now
                    )
                )
                inserted = conn.execute(stmt, {"iss": iss, "jti": jti, "expires_at": expires_at}).all()
                if inserted:
                    # Sweep expired ids now and then; cheap with the index on expires_at.
                    conn.execute(seen_jti.delete().where(seen_jti.c.expires_at < now))
                    return True
                return False
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot record the JWT id: {exc.__class__.__name__}") from exc

    # --- helpers ---------------------------------------------------------------------------
    def _insert_ignore(self, table: sa.Table, keys: list[str]) -> t.Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING the key: a returned row means "new"."""
        returning = [table.c[k] for k in keys]
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys).returning(*returning)
        if self._dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys).returning(*returning)
        raise StorageError(f"unsupported database dialect {self._dialect!r}")


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC): make them aware."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _make_engine(url: str) -> sa.Engine:
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 15})

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: t.Any, _record: t.Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: durable across an application crash; only an OS crash or power
                # loss can drop the last commits. FULL syncs every audit write and halves
                # throughput under load (bench/README.md). Use PostgreSQL for stronger needs.
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=15000")
                cursor.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise StorageError(f"database_url is not usable: {exc}") from exc
