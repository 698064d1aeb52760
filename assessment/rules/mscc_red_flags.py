"""``mscc-red-flags`` (R1): possible metastatic spinal cord compression.

When: oncology context, back pain, and a neurological or bladder/bowel red flag present in the
last 14 days (or an active cord-compression / cauda equina diagnosis).
Then: critical card: same-day assessment and whole-spine MRI within 24 hours; nothing about
NSAIDs or G-CSF. Spine MRI recorded after the red flag is reported as existing imaging.
"""

from __future__ import annotations

from assessment.facts import ClinicalKind, ImagingKind
from assessment.findings import Reason
from assessment.rules import common
from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "mscc-red-flags"


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire on any red flag; the engine ranks this rule first."""
    settings = situation.config.rule(RULE_ID)
    if not situation.red_flags:
        days = common.whole_days(situation.config.context.red_flag_lookback)
        return Outcome(note=f"{RULE_ID}: no neurological or bladder/bowel red flag in the last {days} days")
    latest = situation.red_flags[0]
    latest_time = common.fact_time(latest)
    oldest_time = min(
        (t for t in map(common.fact_time, situation.red_flags) if t is not None), default=None
    )
    against: list[Reason] = []
    if all(f.kind is ClinicalKind.RED_FLAG_NEURO for f in situation.red_flags):
        against.append(Reason(
            "Numbness or tingling can also come from chemotherapy-induced neuropathy: "
            "check that the neurological symptom is new"
        ))
    imaging = common.recent_imaging(
        situation.record, situation.now, situation.config.context,
        kinds=(ImagingKind.SPINE_MRI,), since=oldest_time,
    )
    variables = situation.variables()
    variables["red_flag"] = latest.label or "red flag"
    variables["red_flag_date"] = common.day_text(latest_time) if latest_time else "date not recorded"
    parts = FindingParts(
        evidence=tuple(f.ref for f in situation.red_flags) + situation.base_refs(),
        reasons_for=situation.red_flag_reasons + situation.base_reasons(),
        reasons_against=tuple(against),
        actions=settings.actions,
        variables=variables,
        existing_imaging=tuple(i.ref for i in imaging),
        nsaid=situation.nsaid,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
