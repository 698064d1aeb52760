"""The card audit as an informaticist reads it: ``backpain-cds audit``.

One row per card the service produced: delivered, held back by shadow mode, or suppressed (a
snooze, a duplicate in one ordering session), with the feedback stored on that card. Feedback
naming a card the service never issued or never showed is in ``feedback_unmatched``: it is
counted in the text summary and never joined to a row.

The output holds patient ids on purpose (it is the audit): it is written to stdout only, never
logged.
"""

from __future__ import annotations

import csv
import json
import typing as t
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlalchemy as sa

from backpain_cds.storage import card_audit, feedback, feedback_unmatched

FORMATS = ("text", "json", "csv")

#: the columns of the CSV output and the keys of each JSON object, in this order
FIELDS = ("time", "card_uuid", "patient_id", "service_id", "hook", "hook_instance", "rule_id",
          "rule_version", "indicator", "status", "shadow", "suppressed", "suppress_reason", "evidence",
          "user_id", "encounter_id", "feedback")


@dataclass(frozen=True)
class AuditFilter:
    patient_id: str | None = None
    rule_id: str | None = None
    since: datetime | None = None  #: inclusive
    until: datetime | None = None  #: exclusive


@dataclass(frozen=True)
class CardFeedback:
    outcome: str  #: accepted | overridden
    override_code: str | None
    time: datetime  #: the outcome's time as the EHR reported it (outcomeTimestamp)
    received_at: datetime  #: when the service stored it


@dataclass(frozen=True)
class AuditRow:
    time: datetime
    card_uuid: str
    patient_id: str
    service_id: str
    hook: str
    hook_instance: str
    rule_id: str
    rule_version: str
    indicator: str
    shadow: bool
    suppressed: bool
    suppress_reason: str | None
    evidence: tuple[str, ...]
    user_id: str | None
    encounter_id: str | None
    feedback: tuple[CardFeedback, ...]

    @property
    def status(self) -> str:
        """``delivered``, ``shadow``, ``suppressed:<reason>`` (both, comma-separated, if so)."""
        parts = ["shadow"] if self.shadow else []
        if self.suppressed:
            parts.append(f"suppressed:{self.suppress_reason or 'unknown'}")
        return ",".join(parts) or "delivered"


def read_audit(engine: sa.Engine, where: AuditFilter) -> list[AuditRow]:
    """The audit rows that match, by time then card uuid, each with its feedback."""
    c, f = card_audit.c, feedback.c
    query = (
        sa.select(card_audit, f.outcome.label("fb_outcome"), f.override_code.label("fb_code"),
                  f.outcome_timestamp.label("fb_time"), f.received_at.label("fb_received"))
        .select_from(card_audit.outerjoin(feedback, sa.and_(f.card_uuid == c.card_uuid,
                                                            f.service_id == c.service_id)))
        .where(*_card_conditions(where))
        .order_by(c.created_at, c.card_uuid, f.outcome_timestamp, f.outcome)
    )
    rows: list[AuditRow] = []
    with engine.connect() as conn:
        for r in conn.execute(query):
            entry = None if r.fb_outcome is None else CardFeedback(
                r.fb_outcome, r.fb_code, _utc(r.fb_time), _utc(r.fb_received))
            if rows and rows[-1].card_uuid == r.card_uuid:
                if entry is not None:
                    last = rows[-1]
                    rows[-1] = replace(last, feedback=(*last.feedback, entry))
                continue
            rows.append(AuditRow(
                time=_utc(r.created_at), card_uuid=r.card_uuid, patient_id=r.patient_id,
                service_id=r.service_id, hook=r.hook, hook_instance=r.hook_instance, rule_id=r.rule_id,
                rule_version=r.rule_version, indicator=r.indicator, shadow=bool(r.shadow),
                suppressed=bool(r.suppressed), suppress_reason=r.suppress_reason,
                evidence=_evidence(r.evidence), user_id=r.user_id, encounter_id=r.encounter_id,
                feedback=() if entry is None else (entry,),
            ))
    return rows


def rule_is_audited(engine: sa.Engine, rule_id: str) -> bool:
    """Whether an audit row names ``rule_id`` (so a rule a later release retires stays searchable)."""
    query = sa.select(sa.literal(1)).select_from(card_audit).where(card_audit.c.rule_id == rule_id).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def count_unmatched(engine: sa.Engine, where: AuditFilter) -> int:
    """Feedback entries kept apart (cards never issued or never shown) received in the period.

    They name no patient and no rule of ours, so ``--patient`` and ``--rule`` do not apply.
    """
    received = feedback_unmatched.c.received_at
    conditions = []
    if where.since is not None:
        conditions.append(received >= where.since.astimezone(UTC))
    if where.until is not None:
        conditions.append(received < where.until.astimezone(UTC))
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(feedback_unmatched)
                                .where(*conditions)).scalar_one())


def _card_conditions(where: AuditFilter) -> list[t.Any]:
    c = card_audit.c
    conditions = []
    if where.patient_id is not None:
        conditions.append(c.patient_id == where.patient_id)
    if where.rule_id is not None:
        conditions.append(c.rule_id == where.rule_id)
    if where.since is not None:
        conditions.append(c.created_at >= where.since.astimezone(UTC))
    if where.until is not None:
        conditions.append(c.created_at < where.until.astimezone(UTC))
    return conditions


def _evidence(value: str | None) -> tuple[str, ...]:
    try:
        refs = json.loads(value or "[]")
    except ValueError:
        return (value or "",)
    return tuple(str(ref) for ref in refs) if isinstance(refs, list) else (str(refs),)


def _utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC); PostgreSQL the session's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- output -------------------------------------------------------------------------------
def as_record(row: AuditRow) -> dict[str, t.Any]:
    """One row as a JSON object: :data:`FIELDS` in order, times RFC 3339 UTC."""
    return {
        "time": rfc3339(row.time), "card_uuid": row.card_uuid, "patient_id": row.patient_id,
        "service_id": row.service_id, "hook": row.hook, "hook_instance": row.hook_instance,
        "rule_id": row.rule_id, "rule_version": row.rule_version, "indicator": row.indicator,
        "status": row.status, "shadow": row.shadow, "suppressed": row.suppressed,
        "suppress_reason": row.suppress_reason, "evidence": list(row.evidence), "user_id": row.user_id,
        "encounter_id": row.encounter_id,
        "feedback": [{"outcome": e.outcome, "override_code": e.override_code, "time": rfc3339(e.time),
                      "received_at": rfc3339(e.received_at)} for e in row.feedback],
    }


def write_json(rows: t.Sequence[AuditRow], out: t.TextIO) -> None:
    json.dump([as_record(row) for row in rows], out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_csv(rows: t.Sequence[AuditRow], out: t.TextIO) -> None:
    """Header and one line per card; lists (evidence, feedback) joined with spaces."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in rows:
        record = as_record(row)
        record["evidence"] = " ".join(row.evidence)
        record["feedback"] = " ".join(_feedback_word(e) for e in row.feedback)
        writer.writerow("" if v is None else str(v).lower() if isinstance(v, bool) else v
                        for v in record.values())


def _feedback_word(entry: CardFeedback) -> str:
    """``overridden:snooze-cycle@2026-01-03T10:00:00Z`` (code only on an override with one)."""
    code = f":{entry.override_code}" if entry.override_code else ""
    return f"{entry.outcome}{code}@{rfc3339(entry.time)}"


TEXT_COLUMNS = ("TIME", "PATIENT", "RULE", "VERSION", "INDICATOR", "STATUS", "SERVICE", "HOOK",
                "HOOK INSTANCE", "CARD", "USER", "ENCOUNTER", "EVIDENCE", "FEEDBACK")


def write_text(rows: t.Sequence[AuditRow], unmatched: int, out: t.TextIO) -> None:
    """An aligned table (``-`` for none), then one summary line."""
    if rows:
        table = [TEXT_COLUMNS] + [
            (rfc3339(r.time), r.patient_id, r.rule_id, r.rule_version, r.indicator, r.status, r.service_id,
             r.hook, r.hook_instance, r.card_uuid, r.user_id or "-", r.encounter_id or "-",
             " ".join(r.evidence) or "-", " ".join(_feedback_word(e) for e in r.feedback) or "-")
            for r in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(TEXT_COLUMNS))]
        for line in table:
            out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n")
    out.write(summary(rows, unmatched) + "\n")


def summary(rows: t.Sequence[AuditRow], unmatched: int) -> str:
    delivered = sum(1 for r in rows if not r.shadow and not r.suppressed)
    shadow = sum(1 for r in rows if r.shadow)
    suppressed = sum(1 for r in rows if r.suppressed)
    answered = sum(1 for r in rows if r.feedback)
    return (f"{len(rows)} card(s): {delivered} delivered, {shadow} shadow, {suppressed} suppressed; "
            f"{answered} with feedback. {unmatched} feedback entr{'y' if unmatched == 1 else 'ies'} on cards "
            f"never issued or never shown kept apart in feedback_unmatched (not listed above)")
