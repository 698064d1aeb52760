"""``gcsf-bone-pain`` (R3): back pain that fits G-CSF bone pain.

When: oncology context and back pain whose onset falls in a G-CSF window, with no red flag
and no progressive feature (the engine ranks red flags and progressive features first; when
they exist they are listed here as reasons against).
Then: info card (warning when the latest score is >= 7): paracetamol first, naproxen only
when NSAIDs are safe (R4), loratadine, and a G-CSF dose review.

The onset window itself is a shared concept (:func:`assessment.rules.gcsf_windows.gcsf_windows`,
:func:`~assessment.rules.gcsf_windows.window_at`); the dose the card names (:func:`dose_before`)
and the reason the window gives (:func:`window_reason`) live here.
"""

from __future__ import annotations

from datetime import datetime

from assessment.facts import MedicationFact
from assessment.findings import Indicator, Reason
from assessment.rules import concepts
from assessment.rules.concepts import BackPainEpisode
from assessment.rules.gcsf_windows import GcsfWindow
from assessment.rules.situation import FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "gcsf-bone-pain"
NSAID_ACTIONS = frozenset({"naproxen"})


def dose_before(window: GcsfWindow, time: datetime) -> MedicationFact:
    """Return the last dose of ``window`` given at or before ``time`` (else its first dose):
    the dose the card names."""
    earlier = [d for d in window.doses if d.time is not None and d.time <= time]
    return earlier[-1] if earlier else window.doses[0]


def window_reason(episode: BackPainEpisode, onset_window: GcsfWindow | None) -> Reason | None:
    """Return why the onset is attributed to G-CSF (None when outside every window): this
    card's reason for, the progressive and supportive-care cards' reason against."""
    if onset_window is None:
        return None
    dose = dose_before(onset_window, episode.onset)
    dose_time = dose.time or onset_window.start
    day = concepts.calendar_days(dose_time, episode.onset)
    text = (
        f"Back pain began on day {day} after {dose.label or 'G-CSF'} {dose.verb} on "
        f"{concepts.day_text(dose_time)} (inside the G-CSF window)"
    )
    return Reason(text, dose.ref)


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
        dose_date=concepts.day_text(dose_time),
        onset_day=str(concepts.calendar_days(dose_time, onset)),
        days_since_dose=str(concepts.calendar_days(dose_time, situation.now)),
        dose_verb=dose.verb,
    )
    in_window = situation.window_reason
    parts = FindingParts(
        evidence=situation.episode.refs + window.refs + situation.context.refs,
        reasons_for=((in_window,) if in_window else ()) + situation.base_reasons(),
        reasons_against=situation.red_flag_reasons + situation.feature_reasons,
        actions=actions,
        variables=variables,
        indicator=indicator,
        nsaid=situation.nsaid,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
