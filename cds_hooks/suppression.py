"""Which cards the service holds back: snoozes, and repeats within one ordering session.

A card held back is still rendered and audited (``card_audit.suppressed``, with the reason) and
counted (``backpain_cds_cards_suppressed_total``); feedback naming it is kept apart, as it was
never shown. The rules (README "Snooze and de-duplication"):

- **Snooze.** An override with a reason that has ``snooze_days`` (knowledge/actions.toml) snoozes
  that rule for that patient until the snooze expires. A card of the rule is held back while a
  snooze covers it: every piece of its evidence was in the overridden card (nothing new: no new
  G-CSF dose, pain score or red flag) and it is no more urgent than the card that was overridden.
  Any new evidence re-fires the card at once, so a ``critical`` card is never held back past a
  new red flag, whatever the snooze.
- **De-duplication.** On ``order-sign``, a card the same user already saw on ``order-select`` for
  the same patient and encounter within the ordering session (``order_session_minutes``), with
  the same rule, indicator and evidence (its draft orders included), is not shown again.
  ``critical`` cards are never de-duplicated: signing is the last chance to see one.

If the look-up fails (database unreachable) nothing is held back: an extra card costs a click, a
missing one can cost a patient.
"""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.findings import Finding, Indicator
from cds_hooks.ports import EarlierCard, Snooze, SuppressionLookup

log = logging.getLogger("backpain_cds.suppression")

SNOOZE = "snooze"
DUPLICATE = "duplicate"

#: the hooks between which a card is not repeated: (earlier hook, later hook)
ORDER_SESSION_HOOKS = ("order-select", "order-sign")


@dataclass(frozen=True)
class SuppressionPolicy:
    """What the service holds back (service configuration ``[suppression]``)."""

    enabled: bool = True
    order_session: timedelta = timedelta(minutes=60)


def snoozed(finding: Finding, snoozes: t.Iterable[Snooze]) -> bool:
    """True when a snooze of the finding's rule covers it: no new evidence, no more urgent."""
    evidence = set(finding.evidence)
    rank = finding.indicator.rank
    return any(
        s.rule_id == finding.rule_id and evidence <= s.evidence and rank <= Indicator(s.indicator).rank
        for s in snoozes
    )


def repeated(finding: Finding, earlier: t.Iterable[EarlierCard]) -> bool:
    """True when the same card (rule, indicator, evidence) was shown earlier in the session."""
    if finding.indicator is Indicator.CRITICAL:
        return False
    evidence = frozenset(finding.evidence)
    return any(
        e.rule_id == finding.rule_id and e.indicator == finding.indicator.value and e.evidence == evidence
        for e in earlier
    )


def suppression_reasons(
    findings: t.Sequence[Finding],
    hidden: t.Sequence[bool],
    *,
    lookup: SuppressionLookup | None,
    policy: SuppressionPolicy,
    patient_id: str,
    hook: str,
    user_id: str | None,
    encounter_id: str | None,
    now: datetime,
) -> list[str | None]:
    """Per finding: why it is held back (:data:`SNOOZE`, :data:`DUPLICATE`) or None.

    Findings already ``hidden`` (shadow mode) are not looked up. At most two queries: the
    active snoozes of the rules that fired, and on ``order-sign`` the cards shown on
    ``order-select`` in the session.
    """
    reasons: list[str | None] = [None] * len(findings)
    candidates = [i for i, h in enumerate(hidden) if not h]
    if lookup is None or not policy.enabled or not candidates:
        return reasons
    rule_ids = {findings[i].rule_id for i in candidates}
    try:
        snoozes = lookup.active_snoozes(patient_id, rule_ids, now)
        earlier: list[EarlierCard] = []
        if hook == ORDER_SESSION_HOOKS[1]:
            earlier = lookup.earlier_cards(
                patient_id, rule_ids, hook=ORDER_SESSION_HOOKS[0], since=now - policy.order_session,
                user_id=user_id, encounter_id=encounter_id,
            )
    except Exception as exc:  # noqa: BLE001 - any failure: show every card (see module doc)
        log.warning("suppression look-up failed; no card held back", extra={"error": exc.__class__.__name__})
        return reasons
    for i in candidates:
        if snoozed(findings[i], snoozes):
            reasons[i] = SNOOZE
        elif repeated(findings[i], earlier):
            reasons[i] = DUPLICATE
    return reasons
