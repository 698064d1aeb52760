"""Retention: the ``[retention]`` setting and what ``backpain-cds purge`` deletes.

Rows older than the cut-off (now minus ``[retention] days``) are deleted, in one transaction:

- ``card_audit`` rows created before it, together with the feedback on them: a card's row goes
  only once every feedback entry on it was received before the cut-off too, and never while an
  unexpired ``snooze`` row refers to it (the card a snooze holds back stays explainable);
- ``feedback`` received before it, unless its card's audit row is kept (feedback stays with its
  card); ``feedback_unmatched`` and ``hook_call`` rows received before it;
- ``snooze`` rows that have expired and were created before it;
- every expired ``seen_jti`` (replay protection needs none of them);
- SMART view sessions past their expiry, and launch states expired for more than a day (the
  store's own sweep keeps them that long, so a late redirect is logged as "state expired").

The minimum retention is one day longer than the longest snooze an override reason may set
(:data:`fhir_mapping.suggestions.MAX_SNOOZE_DAYS`): the feedback that snoozed a rule, and the
card it overrode, are then always younger than the cut-off while the snooze is active.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from backpain_cds.storage import card_audit, feedback, feedback_unmatched, hook_call, seen_jti, snooze
from fhir_mapping.suggestions import MAX_SNOOZE_DAYS
from smart_launch.session_store import launch_state, view_session

DEFAULT_RETENTION_DAYS = 365
#: longer than the longest snooze, so no active snooze's card or feedback is past the cut-off
MIN_RETENTION_DAYS = MAX_SNOOZE_DAYS + 1
MAX_RETENTION_DAYS = 36_500
#: expired SMART launch states are kept this long (``SessionStore.save_launch`` sweeps the same)
LAUNCH_STATE_GRACE_SECONDS = 86_400

#: the tables purge deletes from, in the order it reports them
TABLES = ("card_audit", "feedback", "feedback_unmatched", "snooze", "hook_call", "seen_jti",
          "smart_launch_state", "smart_session")


@dataclass(frozen=True)
class RetentionSettings:
    """``[retention]``: how long audit, feedback and the call log are kept (README "Audit and
    retention")."""

    days: int = DEFAULT_RETENTION_DAYS


class _Parser(t.Protocol):
    problems: list[str]

    def unknown_keys(self, data: t.Mapping[str, t.Any], allowed: set[str], prefix: str) -> None: ...


def parse_retention(parser: _Parser, data: t.Mapping[str, t.Any]) -> RetentionSettings:
    """The ``[retention]`` table, its problems added to ``parser.problems``."""
    parser.unknown_keys(data, {"days"}, "retention.")
    days = data.get("days", DEFAULT_RETENTION_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        parser.problems.append(
            f"retention.days must be an integer from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS} "
            f"(at least one day longer than the longest snooze, {MAX_SNOOZE_DAYS} days)")
        return RetentionSettings()
    return RetentionSettings(days=days)


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    counts: dict[str, int]  #: table -> rows deleted (or, in a dry run, rows it would delete)
    kept_cards: int  #: card_audit rows older than the cut-off kept for a snooze or newer feedback
    dry_run: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def purge(engine: sa.Engine, *, days: int, now: datetime, dry_run: bool = False) -> PurgeResult:
    """Delete (or, with ``dry_run``, count) what is past retention, in one transaction."""
    cutoff = now - timedelta(days=days)
    conditions = _conditions(cutoff, now)
    tables = {table.name: table for table in (card_audit, feedback, feedback_unmatched, snooze, hook_call,
                                              seen_jti, launch_state, view_session)}
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(card_audit).where(
            card_audit.c.created_at < cutoff, sa.not_(conditions["card_audit"]))).scalar_one()
        # feedback first: whether its card is kept reads card_audit as it stands; the card
        # conditions read only feedback within retention, which is never deleted
        for name in ("feedback", *[n for n in TABLES if n != "feedback"]):
            table, condition = tables[name], conditions[name]
            if dry_run:
                counts[name] = conn.execute(sa.select(sa.func.count()).select_from(table).where(condition)).scalar_one()
            else:
                counts[name] = conn.execute(table.delete().where(condition)).rowcount
    return PurgeResult(cutoff, {name: counts[name] for name in TABLES}, kept, dry_run)


def _conditions(cutoff: datetime, now: datetime) -> dict[str, t.Any]:
    c, f = card_audit.c, feedback.c
    active_snooze = sa.exists().where(snooze.c.card_uuid == c.card_uuid, snooze.c.expires_at > now)
    recent = feedback.alias("recent_feedback")
    recent_feedback = sa.exists().where(recent.c.card_uuid == c.card_uuid, recent.c.received_at >= cutoff)
    card_goes = sa.and_(c.created_at < cutoff, sa.not_(active_snooze), sa.not_(recent_feedback))
    card_kept = sa.exists().where(c.card_uuid == f.card_uuid, sa.not_(card_goes))
    epoch_now = int(now.timestamp())
    return {
        "card_audit": card_goes,
        "feedback": sa.and_(f.received_at < cutoff, sa.not_(card_kept)),
        "feedback_unmatched": feedback_unmatched.c.received_at < cutoff,
        "snooze": sa.and_(snooze.c.expires_at <= now, snooze.c.created_at < cutoff),
        "hook_call": hook_call.c.received_at < cutoff,
        "seen_jti": seen_jti.c.expires_at < now,
        "smart_launch_state": launch_state.c.expires_at < epoch_now - LAUNCH_STATE_GRACE_SECONDS,
        "smart_session": view_session.c.expires_at < epoch_now,
    }
