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
    evidence: tuple[str, ...] = ()  #: FHIR refs (``Type/id``) that made the rule fire
    #: why a card produced and audited was held back (``snooze``, ``duplicate``); None: shown
    suppress_reason: str | None = None
    user_id: str | None = None  #: the hook context's userId (e.g. ``Practitioner/123``)
    encounter_id: str | None = None  #: the hook context's encounterId

    @property
    def suppressed(self) -> bool:
        return self.suppress_reason is not None


@dataclass(frozen=True, slots=True)
class Snooze:
    """An active snooze of one rule for one patient (an override with a snooze reason)."""

    rule_id: str
    indicator: str  #: of the card that was overridden
    evidence: frozenset[str]  #: the overridden card's evidence set
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class EarlierCard:
    """A card shown (not shadow, not suppressed) earlier in an ordering session."""

    rule_id: str
    indicator: str
    evidence: frozenset[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HookCallRecord:
    """One answered hook call, for the governance report (enums and durations only)."""

    received_at: datetime
    service_id: str
    hook: str
    status: int
    duration_ms: float
    deadline_exceeded: bool = False
    cards: int = 0


class FeedbackSaved(t.NamedTuple):
    """What one feedback call stored (new rows only: repeats are kept once)."""

    stored: int  #: new rows about cards this service issued
    unmatched: int  #: new rows naming card uuids it never issued (kept apart)
    #: positions (in the entries given) of the entries stored as new rows about issued cards:
    #: the only feedback the statistics count
    stored_entries: tuple[int, ...] = ()


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


class SuppressionLookup(t.Protocol):
    """What may hold a card back: snoozes, and cards already shown in an ordering session."""

    def active_snoozes(self, patient_id: str, rule_ids: t.Collection[str], now: datetime) -> list[Snooze]:
        """The snoozes of these rules for this patient that have not expired at ``now``."""
        ...

    def earlier_cards(
        self, patient_id: str, rule_ids: t.Collection[str], *, hook: str, since: datetime,
        user_id: str | None, encounter_id: str | None,
    ) -> list[EarlierCard]:
        """Cards of these rules shown to this patient's chart on ``hook`` since ``since``, by the
        same user in the same encounter (None matches only None)."""
        ...


class CallLog(t.Protocol):
    """Keeps one row per answered hook call."""

    def record_call(self, record: HookCallRecord) -> None: ...
