"""``back-pain-supportive-care``: back pain after cancer treatment that nothing else explains.

When: oncology context and back pain in the last 60 days (the engine shows this card only when
no red flag, no progressive feature and no G-CSF window explains the pain; when they exist
they are listed here as reasons against).
Then: info card: paracetamol first, heat or cold, gentle stretching and physiotherapy,
posture; NSAIDs or opioids only under supervision (NSAIDs only when R4 allows).
"""

from __future__ import annotations

from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "back-pain-supportive-care"


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire for any back pain with oncology context (ranked last by the engine)."""
    settings = situation.config.rule(RULE_ID)
    window_reason = situation.window_reason
    against = situation.red_flag_reasons + situation.feature_reasons
    if window_reason:
        against += (window_reason,)
    parts = FindingParts(
        evidence=situation.base_refs(),
        reasons_for=situation.base_reasons(),
        reasons_against=against,
        actions=settings.actions,
        variables=situation.variables(),
        nsaid=situation.nsaid,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
