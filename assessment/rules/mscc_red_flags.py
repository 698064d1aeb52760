"""``mscc-red-flags`` (R1): possible metastatic spinal cord compression.

When: oncology context, back pain, and a neurological or bladder/bowel red flag present in the
last 14 days (or an active cord-compression / cauda equina diagnosis).
Then: critical card: same-day assessment and whole-spine MRI within 24 hours; nothing about
NSAIDs or G-CSF. Spine MRI recorded after the red flag is reported as existing imaging.

The red flags (:func:`find_red_flags`) and their wording (:func:`red_flag_reason`) live here;
the engine puts them in the triage situation, where the other triage rules list them as
reasons against.
"""

from __future__ import annotations

from datetime import datetime

from assessment.config import RuleConfig
from assessment.facts import ClinicalFact, ClinicalKind, ImagingKind, PatientRecord
from assessment.findings import Reason
from assessment.rules import concepts
from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "mscc-red-flags"


def find_red_flags(record: PatientRecord, now: datetime, config: RuleConfig) -> tuple[ClinicalFact, ...]:
    """Return neurological / bladder-bowel findings present in the lookback, and active MSCC
    diagnoses (any date), most recent first."""
    settings = config.context
    flags = [
        f
        for f in record.clinical
        if (
            f.kind in (ClinicalKind.RED_FLAG_NEURO, ClinicalKind.RED_FLAG_SPHINCTER)
            and f.status in settings.present_statuses
            and concepts.within(concepts.fact_time(f), now, settings.red_flag_lookback)
        )
        or (f.kind is ClinicalKind.MSCC and f.status in settings.active_statuses)
    ]
    return tuple(sorted(flags, key=_newest_first))


def _newest_first(fact: ClinicalFact) -> float:
    time = concepts.fact_time(fact)
    return -time.timestamp() if time else 0.0


def red_flag_reason(fact: ClinicalFact) -> Reason:
    """Describe a red flag in words (this card's reasons, and the other triage cards' reasons
    against)."""
    kind = {
        ClinicalKind.RED_FLAG_NEURO: "Neurological red flag",
        ClinicalKind.RED_FLAG_SPHINCTER: "Bladder or bowel red flag",
        ClinicalKind.MSCC: "Spinal cord or cauda equina compression diagnosis",
    }[fact.kind]
    time = concepts.fact_time(fact)
    when = f" on {concepts.day_text(time)}" if time else ""
    return Reason(f"{kind}: {fact.label or fact.kind.value}{when}", fact.ref)


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire on any red flag; the engine ranks this rule first."""
    settings = situation.config.rule(RULE_ID)
    if not situation.red_flags:
        days = concepts.whole_days(situation.config.context.red_flag_lookback)
        return Outcome(note=f"{RULE_ID}: no neurological or bladder/bowel red flag in the last {days} days")
    latest = situation.red_flags[0]
    latest_time = concepts.fact_time(latest)
    oldest_time = min(
        (t for t in map(concepts.fact_time, situation.red_flags) if t is not None), default=None
    )
    against: list[Reason] = []
    if all(f.kind is ClinicalKind.RED_FLAG_NEURO for f in situation.red_flags):
        against.append(Reason(
            "Numbness or tingling can also come from chemotherapy-induced neuropathy: "
            "check that the neurological symptom is new"
        ))
    imaging = concepts.recent_imaging(
        situation.record, situation.now, situation.config.context,
        kinds=(ImagingKind.SPINE_MRI,), since=oldest_time,
    )
    variables = situation.variables()
    variables["red_flag"] = latest.label or "red flag"
    variables["red_flag_date"] = concepts.day_text(latest_time) if latest_time else "date not recorded"
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
