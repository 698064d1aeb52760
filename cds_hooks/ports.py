"""Ports: the storage the protocol layer needs, as Protocols.

``backpain_cds.storage`` implements them with SQLAlchemy; tests may pass fakes.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One validated feedback entry (CDS Hooks 2.0 §Feedback)."""

    card_uuid: str
    outcome: str  #: accepted | overridden
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_code: str | None = None
    override_system: str | None = None
    override_comment: str | None = None


@dataclass(frozen=True, slots=True)
class CardAuditRecord:
    """What we told whom: one row per card issued (ids only, no clinical values)."""

    card_uuid: str
    service_id: str
    hook: str
    hook_instance: str
    rule_id: str
    rule_version: str
    indicator: str
    patient_id: str
    created_at: datetime
    shadow: bool = False  #: produced and audited, not returned (shadow mode)


class FeedbackSaved(t.NamedTuple):
    """What one feedback call stored (new rows only: repeats are kept once)."""

    stored: int  #: new rows about cards this service issued
    unmatched: int  #: new rows naming card uuids it never issued (kept apart)


class FeedbackStore(t.Protocol):
    """Stores feedback idempotently: the same card uuid + outcome is kept once.

    Feedback naming a card uuid the service never issued is kept apart (``unmatched``), never
    mixed with feedback on real cards.
    """

    def save_feedback(self, service_id: str, entries: t.Sequence[FeedbackEntry]) -> FeedbackSaved:
        """Store all entries in one transaction; say how many were new, and where."""
        ...


class CardAuditLog(t.Protocol):
    """Keeps the card audit trail."""

    def record_cards(self, records: t.Sequence[CardAuditRecord]) -> None:
        """Append audit rows for the cards of one response."""
        ...
