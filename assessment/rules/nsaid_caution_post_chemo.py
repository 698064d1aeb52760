"""``nsaid-caution-post-chemo`` (R4 on order hooks): an NSAID order that may be unsafe.

When: a draft NSAID order (the selected drafts on order-select), oncology context, and the
latest platelet count or eGFR (recorded, else computed from creatinine) below the configured
cut-offs within the lab lookback, or an active anticoagulant.
Then: warning card naming the concerns that apply; a suggestion deleting the draft NSAID
order; paracetamol instead, other analgesia with the team.
"""

from __future__ import annotations

from collections.abc import Mapping

from assessment.facts import DrugClass
from assessment.findings import Reason
from assessment.rules.situation import FindingParts, OrderSituation, Outcome, build_finding

RULE_ID = "nsaid-caution-post-chemo"


def evaluate(situation: OrderSituation) -> Outcome:
    """Fire on a draft NSAID order when R4 says NSAIDs are unsafe."""
    settings = situation.config.rule(RULE_ID)
    drafts = tuple(d for d in situation.drafts if d.drug_class is DrugClass.NSAID)
    if not drafts:
        return Outcome(note=f"{RULE_ID}: no draft NSAID order")
    if not situation.context.present:
        return Outcome(note=f"{RULE_ID}: no oncology context")
    safety = situation.nsaid
    if safety.safe:
        return Outcome(note=f"{RULE_ID}: no low platelets, low eGFR or active anticoagulant on record")
    parts = FindingParts(
        evidence=tuple(d.ref for d in drafts) + safety.refs + situation.context.refs,
        reasons_for=tuple(Reason(f"Draft order: {d.label or 'NSAID'}", d.ref) for d in drafts)
        + safety.concerns
        + situation.context.reasons,
        actions=settings.actions,
        variables={
            "nsaid": drafts[0].label or "NSAID",
            "concerns": "; ".join(c.text for c in safety.concerns),
            "concern_names": _names(safety.kinds, situation.config.texts),
        },
        nsaid=safety,
        draft_refs=tuple(d.ref for d in drafts),
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))


def _names(kinds: tuple[str, ...], texts: Mapping[str, str]) -> str:
    """The concerns that apply, by name ("low platelets and an active anticoagulant")."""
    names = [texts[f"concern_{kind}"] for kind in kinds]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
