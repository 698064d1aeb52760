"""The reads of the governance report: one window of the audit, feedback, snooze and call log tables.

Rows are streamed (``yield_per``) so that a month of a busy site does not sit in memory twice.
Windows are compared in UTC (SQLite stores the timestamps as naive UTC).
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime

import sqlalchemy as sa

from backpain_cds.report.figures import CallRow, CardRow, FeedbackRow, Window
from backpain_cds.storage import card_audit, feedback, feedback_unmatched, hook_call, snooze

_BATCH = 5000


def _bounds(window: Window) -> tuple[datetime, datetime]:
    return window.since.astimezone(UTC), window.until.astimezone(UTC)


def cards(conn: sa.Connection, window: Window) -> t.Iterator[CardRow]:
    """Every card produced in the window (returned, shadow or suppressed)."""
    since, until = _bounds(window)
    c = card_audit.c
    query = sa.select(c.rule_id, c.created_at, c.shadow, c.suppressed, c.suppress_reason).where(
        c.created_at >= since, c.created_at < until)
    for row in conn.execution_options(yield_per=_BATCH).execute(query):
        yield CardRow(row.rule_id, row.created_at, bool(row.shadow), bool(row.suppressed), row.suppress_reason)


def feedback_on_returned_cards(conn: sa.Connection, window: Window) -> t.Iterator[FeedbackRow]:
    """Feedback on the cards returned to the EHR (not shadow, not suppressed) that were created in the window,
    whenever the feedback arrived."""
    since, until = _bounds(window)
    c, f = card_audit.c, feedback.c
    query = (
        sa.select(c.rule_id, f.outcome, f.override_code, f.override_system, f.outcome_timestamp, c.created_at)
        .select_from(feedback.join(card_audit, sa.and_(f.card_uuid == c.card_uuid, f.service_id == c.service_id)))
        .where(c.created_at >= since, c.created_at < until, c.shadow == sa.false(), c.suppressed == sa.false())
    )
    for row in conn.execution_options(yield_per=_BATCH).execute(query):
        yield FeedbackRow(row.rule_id, row.outcome, row.override_code, row.override_system, row.outcome_timestamp,
                          row.created_at)


def snoozes_started(conn: sa.Connection, window: Window) -> dict[str, int]:
    """The snoozes written by overrides of the cards created in the window (one per overridden
    card, whenever the override arrived), per rule."""
    since, until = _bounds(window)
    c, s = card_audit.c, snooze.c
    query = (
        sa.select(c.rule_id, sa.func.count())
        .select_from(snooze.join(card_audit, sa.and_(s.card_uuid == c.card_uuid, s.service_id == c.service_id)))
        .where(c.created_at >= since, c.created_at < until)
        .group_by(c.rule_id)
    )
    return {rule: int(n) for rule, n in conn.execute(query)}


def calls(conn: sa.Connection, window: Window) -> t.Iterator[CallRow]:
    """The hook calls received in the window."""
    since, until = _bounds(window)
    h = hook_call.c
    query = sa.select(h.service_id, h.status, h.duration_ms, h.deadline_exceeded, h.cards).where(
        h.received_at >= since, h.received_at < until)
    for row in conn.execution_options(yield_per=_BATCH).execute(query):
        yield CallRow(row.service_id, int(row.status), float(row.duration_ms), bool(row.deadline_exceeded),
                      int(row.cards))


def unmatched_feedback(conn: sa.Connection, window: Window) -> dict[str, int]:
    """Entries naming a card the service never showed, received in the window, per service id."""
    since, until = _bounds(window)
    u = feedback_unmatched.c
    query = (sa.select(u.service_id, sa.func.count()).where(u.received_at >= since, u.received_at < until)
             .group_by(u.service_id))
    return {service: int(n) for service, n in conn.execute(query)}
