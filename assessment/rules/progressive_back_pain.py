"""``progressive-back-pain`` (R2, R5): back pain that may come from spinal metastasis.

When: oncology context and back pain with any progressive feature: known bone or spinal
metastasis, thoracic or cervical site, scores rising by >= 2 points within 7 days, a score
>= 7 when the onset is outside every G-CSF window, pain for >= 14 days still scoring >= 4 in
the last 7 days, or back pain inside the G-CSF windows of >= 2 consecutive cycles.
Then: warning card: whole-spine MRI within 1 week (bone scan as the alternative), paracetamol,
and say whether spine imaging from the last 30 days is already on record.
"""

from __future__ import annotations

from assessment.rules import common
from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "progressive-back-pain"


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire on any progressive feature (ranked after ``mscc-red-flags``)."""
    settings = situation.config.rule(RULE_ID)
    if not situation.features:
        return Outcome(note=f"{RULE_ID}: no progressive feature")
    imaging = common.recent_imaging(situation.record, situation.now, situation.config.context)
    window_reason = situation.window_reason
    feature_refs = tuple(ref for f in situation.features for ref in f.refs)
    variables = situation.variables()
    variables["features"] = "; ".join(f.text for f in situation.features)
    texts = situation.config.texts
    variables["imaging_note"] = texts["imaging_note_existing" if imaging else "imaging_note_none"]
    parts = FindingParts(
        evidence=feature_refs + situation.base_refs(),
        reasons_for=situation.feature_reasons + situation.base_reasons(),
        reasons_against=(window_reason,) if window_reason else (),
        actions=settings.actions,
        variables=variables,
        existing_imaging=tuple(i.ref for i in imaging),
        nsaid=situation.nsaid,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
