"""``gcsf-bone-pain`` (R3): back pain that fits G-CSF bone pain.

When: oncology context and back pain whose onset falls in a G-CSF window, with no red flag
and no progressive feature (the engine ranks red flags and progressive features first; when
they exist they are listed here as reasons against).
Then: info card (warning when the latest score is >= 7): paracetamol first, naproxen only
when NSAIDs are safe (R4), loratadine, and a G-CSF dose review.
"""

from __future__ import annotations

from assessment.findings import Indicator
from assessment.rules import common
from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding, dose_before

RULE_ID = "gcsf-bone-pain"
NSAID_ACTIONS = frozenset({"naproxen"})


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire when the back-pain onset falls in a G-CSF window."""
    settings = situation.config.rule(RULE_ID)
    window = situation.onset_window
    if window is None:
        return Outcome(note=f"{RULE_ID}: back pain did not start inside a G-CSF window")
    onset = situation.episode.onset
    dose = dose_before(window, onset)
    dose_time = dose.time or window.start
    latest = situation.episode.latest_score
    indicator: Indicator = settings.indicator
    if latest is not None and latest.score >= situation.config.context.severe_score:
        indicator = settings.indicators.get("indicator_severe", settings.indicator)
    actions = tuple(
        a for a in settings.actions if situation.nsaid.safe or a not in NSAID_ACTIONS
    )
    variables = situation.variables()
    variables.update(
        gcsf=dose.label or "G-CSF",
        dose_date=common.day_text(dose_time),
        onset_day=str(common.calendar_days(dose_time, onset)),
        days_since_dose=str(common.calendar_days(dose_time, situation.now)),
        dose_verb=dose.verb,
    )
    window_reason = situation.window_reason
    parts = FindingParts(
        evidence=situation.episode.refs + window.refs + situation.context.refs,
        reasons_for=((window_reason,) if window_reason else ()) + situation.base_reasons(),
        reasons_against=situation.red_flag_reasons + situation.feature_reasons,
        actions=actions,
        variables=variables,
        indicator=indicator,
        nsaid=situation.nsaid,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
