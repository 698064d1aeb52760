"""The figures of the governance report, from the rows of one window (README "Governance report").

Per rule, about the cards *created* in the window: fired (cards produced), returned (to the EHR,
for the clinician), shadow, suppressed (by reason), the feedback on the returned ones (whenever
it arrived), the acceptance rate and the median time to feedback. Per service, about the hook calls *received* in the window:
calls, latency percentiles, the 412 rate and the calls past their deadline. Feedback naming a
card the service never showed is counted apart (received in the window), never in the figures.
"""

from __future__ import annotations

import statistics
import typing as t
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: why a card was held back (``card_audit.suppress_reason``); the report's fixed columns
SUPPRESS_REASONS = ("snooze", "duplicate")
#: the override of a feedback entry without a reason code
NO_REASON = "(none)"


@dataclass(frozen=True)
class OfferedReason:
    """An override reason a rule's card offers (``[[override_reasons.<rule>]]`` of the knowledge's
    ``actions.toml``, site overlay included): its code and the display the clinician reads."""

    code: str
    display: str
    #: an override with it snoozes the rule for the patient (``snooze_days``)
    snoozes: bool = False


def percentile(values: t.Sequence[float], percent: int) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``percent`` % of the values at
    or below it (the value of rank ceil(percent/100 * n), 1-based, in ascending order); always one
    of the values. None for no values; the one value for one; for two, p50 is the lower, p95 the
    higher."""
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: no float rounding at the edges
    return ordered[rank - 1]


def median(values: t.Sequence[float]) -> float | None:
    """The median (the mean of the two middle values for an even count); None for no values."""
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Window:
    """``since`` inclusive, ``until`` exclusive, both UTC."""

    since: datetime
    until: datetime

    def weeks(self) -> list[str]:
        """The ISO weeks (``2026-W10``) the window overlaps, in order."""
        out: list[str] = []
        day = self.since.date()
        last = (self.until - timedelta(microseconds=1)).date()
        while day <= last:
            label = iso_week(day)
            if not out or out[-1] != label:
                out.append(label)
            day += timedelta(days=1)
        return out


def iso_week(moment: t.Any) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class RuleFigures:
    rule: str
    fired: int = 0  #: cards produced (returned + shadow + suppressed)
    returned: int = 0  #: returned to the EHR: not shadow, not suppressed
    shadow: int = 0
    suppressed: int = 0
    suppressed_by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUPPRESS_REASONS, 0))
    accepted: int = 0
    overridden: int = 0
    #: overrides per reason code (only the codes received; ``(none)`` without a code)
    overridden_by_reason: dict[str, int] = field(default_factory=dict)
    #: the reasons the rule's card offers, in the card's order (empty: unknown or none)
    offered_reasons: tuple[OfferedReason, ...] = ()
    #: overrides that snoozed the rule (a ``snooze`` row was written for the overridden card)
    overridden_with_snooze: int = 0
    #: seconds from card created_at to feedback outcomeTimestamp, one per feedback entry
    feedback_seconds: list[float] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        """accepted / (accepted + overridden): over the feedback entries on returned cards (a
        returned card without feedback is not in it); None without feedback."""
        answered = self.accepted + self.overridden
        return self.accepted / answered if answered else None

    @property
    def median_seconds_to_feedback(self) -> float | None:
        return median(self.feedback_seconds)

    @property
    def snooze_reasons(self) -> tuple[OfferedReason, ...]:
        return tuple(r for r in self.offered_reasons if r.snoozes)

    @property
    def snoozed(self) -> int | None:
        """Overrides that snoozed the rule; None when its card offers no snooze reason (and none did)."""
        return self.overridden_with_snooze if self.overridden_with_snooze or self.snooze_reasons else None

    def offers(self, code: str) -> bool:
        """Whether the rule's card offers the reason (an override without one is always possible)."""
        return code == NO_REASON or any(r.code == code for r in self.offered_reasons)

    def display(self, code: str) -> str | None:
        """The rule's display of the reason; None for a code it does not offer."""
        return next((r.display for r in self.offered_reasons if r.code == code), None)

    def overrides_with(self, code: str) -> int | None:
        """Overrides with the reason; None when the card does not offer it (and none came)."""
        count = self.overridden_by_reason.get(code, 0)
        return count if count or self.offers(code) else None

    def reason_rows(self) -> list[tuple[str, str | None, bool, int]]:
        """(code, display, offered, overrides): every reason the card offers in its order, then
        any other code received (sorted), then ``(none)`` if some override had no code."""
        rows: list[tuple[str, str | None, bool, int]] = [
            (r.code, r.display, True, self.overridden_by_reason.get(r.code, 0)) for r in self.offered_reasons]
        rows += [(code, None, False, n) for code, n in self.overridden_by_reason.items()
                 if code != NO_REASON and not self.offers(code)]
        if NO_REASON in self.overridden_by_reason:
            rows.append((NO_REASON, None, True, self.overridden_by_reason[NO_REASON]))
        return rows


@dataclass
class ServiceFigures:
    service: str
    calls: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    deadline_exceeded: int = 0
    cards: int = 0  #: cards returned
    durations_ms: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.durations_ms, 50)

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.durations_ms, 95)

    @property
    def rate_412(self) -> float | None:
        return self.by_status.get(412, 0) / self.calls if self.calls else None


@dataclass
class Report:
    window: Window
    generated_at: datetime
    rules: list[RuleFigures]
    #: (rule, ISO week, cards fired), only where cards > 0, by rule then week
    weekly: list[tuple[str, str, int]]
    services: list[ServiceFigures]
    #: feedback naming cards the service never showed, received in the window, per service id
    unmatched: dict[str, int]
    #: the rule ids of this release (listed even when they fired nothing), sorted
    known_rules: tuple[str, ...] = ()

    @property
    def unmatched_total(self) -> int:
        return sum(self.unmatched.values())

    @property
    def reason_codes(self) -> list[str]:
        """Every override reason code of the report: those any rule offers and those received,
        sorted, ``(none)`` last when some override had no code."""
        codes = {r.code for rule in self.rules for r in rule.offered_reasons}
        codes |= {code for rule in self.rules for code in rule.overridden_by_reason}
        return sorted(codes - {NO_REASON}) + ([NO_REASON] if NO_REASON in codes else [])


class CardRow(t.NamedTuple):
    rule_id: str
    created_at: datetime
    shadow: bool
    suppressed: bool
    suppress_reason: str | None


class FeedbackRow(t.NamedTuple):
    rule_id: str
    outcome: str
    override_code: str | None
    override_system: str | None
    outcome_timestamp: datetime
    created_at: datetime  #: of the card


class CallRow(t.NamedTuple):
    service_id: str
    status: int
    duration_ms: float
    deadline_exceeded: bool
    cards: int


def build_report(
    window: Window,
    cards: t.Iterable[CardRow],
    feedback: t.Iterable[FeedbackRow],
    calls: t.Iterable[CallRow],
    unmatched: t.Mapping[str, int],
    *,
    known_rules: t.Iterable[str] = (),
    offered: t.Mapping[str, t.Sequence[OfferedReason]] | None = None,
    snoozes: t.Mapping[str, int] | None = None,
    reason_system: str | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """The report's figures. ``known_rules`` are listed even when they produced nothing;
    ``offered`` are the override reasons of each rule's card; ``snoozes`` the snoozes written by
    overrides of the window's cards, per rule.

    A card both in shadow mode and suppressed counts as shadow (it would not have been returned
    either way); feedback counts only on returned cards. An override code in a system other than
    ``reason_system`` (the service's, when given; none is taken as ours, as the snooze does) is
    not one of our reasons: it is counted as ``system|code``.
    """
    offered = offered or {}
    known_rules = tuple(sorted(known_rules))
    rules = {rule: RuleFigures(rule) for rule in known_rules}
    weekly: dict[tuple[str, str], int] = {}
    for card in cards:
        figures = rules.setdefault(card.rule_id, RuleFigures(card.rule_id))
        figures.fired += 1
        if card.shadow:
            figures.shadow += 1
        elif card.suppressed:
            figures.suppressed += 1
            reason = card.suppress_reason or "other"
            figures.suppressed_by_reason[reason] = figures.suppressed_by_reason.get(reason, 0) + 1
        else:
            figures.returned += 1
        key = (card.rule_id, iso_week(_utc(card.created_at)))
        weekly[key] = weekly.get(key, 0) + 1
    for entry in feedback:
        figures = rules.setdefault(entry.rule_id, RuleFigures(entry.rule_id))
        if entry.outcome == "accepted":
            figures.accepted += 1
        elif entry.outcome == "overridden":
            figures.overridden += 1
            code = entry.override_code or NO_REASON
            if entry.override_code and reason_system and entry.override_system not in (None, reason_system):
                code = f"{entry.override_system}|{entry.override_code}"
            figures.overridden_by_reason[code] = figures.overridden_by_reason.get(code, 0) + 1
        else:
            continue
        delta = _utc(entry.outcome_timestamp) - _utc(entry.created_at)
        figures.feedback_seconds.append(delta.total_seconds())
    services: dict[str, ServiceFigures] = {}
    for call in calls:
        s = services.setdefault(call.service_id, ServiceFigures(call.service_id))
        s.calls += 1
        s.by_status[call.status] = s.by_status.get(call.status, 0) + 1
        s.deadline_exceeded += bool(call.deadline_exceeded)
        s.cards += call.cards
        s.durations_ms.append(float(call.duration_ms))
    for s in services.values():
        s.by_status = dict(sorted(s.by_status.items()))
    for r in rules.values():
        r.overridden_by_reason = dict(sorted(r.overridden_by_reason.items()))
        r.offered_reasons = tuple(offered.get(r.rule, ()))
    for rule, n in (snoozes or {}).items():
        figures = rules.setdefault(rule, RuleFigures(rule, offered_reasons=tuple(offered.get(rule, ()))))
        figures.overridden_with_snooze = n
    return Report(
        window=window,
        generated_at=generated_at or datetime.now(UTC),
        rules=[rules[k] for k in sorted(rules)],
        weekly=[(rule, week, n) for (rule, week), n in sorted(weekly.items())],
        services=[services[k] for k in sorted(services)],
        unmatched=dict(sorted(unmatched.items())),
        known_rules=known_rules,
    )


def _utc(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def human_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.1 d``; ``n/a`` for None."""
    if seconds is None:
        return "n/a"
    sign, value = ("-" if seconds < 0 else ""), abs(seconds)
    if value < 120:
        return f"{sign}{value:.0f} s"
    if value < 120 * 60:
        return f"{sign}{value / 60:.0f} min"
    if value < 48 * 3600:
        return f"{sign}{value / 3600:.1f} h"
    return f"{sign}{value / 86400:.1f} d"
