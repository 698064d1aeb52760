"""``progressive-back-pain`` (R2, R5): back pain that may come from spinal metastasis.

When: oncology context and back pain with any progressive feature: known bone or spinal
metastasis, thoracic or cervical site, scores rising by >= 2 points within 7 days, a score
>= 7 when the onset is outside every G-CSF window, pain for >= 14 days still scoring >= 4 in
the last 7 days, or back pain inside the G-CSF windows of >= 2 consecutive cycles.
Then: warning card: whole-spine MRI within 1 week (bone scan as the alternative), paracetamol,
and say whether spine imaging from the last 30 days is already on record.

The features (:func:`find_progressive_features`) are found here; the engine puts them in the
triage situation, where the G-CSF bone-pain and supportive-care rules list them as reasons
against.
"""

from __future__ import annotations

from datetime import datetime

from assessment.config import RuleConfig, RuleSettings
from assessment.facts import ClinicalKind, PatientRecord, SpineSite
from assessment.findings import Reason
from assessment.rules import concepts, gcsf_windows
from assessment.rules.concepts import BackPainEpisode
from assessment.rules.gcsf_windows import GcsfWindow
from assessment.rules.situation import Feature, FindingParts, Outcome, TriageSituation, build_finding

RULE_ID = "progressive-back-pain"
_UPPER_SPINE = (SpineSite.THORACIC, SpineSite.CERVICAL)


def find_progressive_features(
    record: PatientRecord,
    now: datetime,
    config: RuleConfig,
    episode: BackPainEpisode,
    windows: tuple[GcsfWindow, ...],
    onset_window: GcsfWindow | None,
) -> tuple[Feature, ...]:
    """Return every progressive feature of the back pain (R2 and R5 of CLINICAL.md)."""
    rule = config.rule(RULE_ID)
    found = (
        _known_metastasis(record, config),
        _upper_spine(episode),
        _rising_scores(episode, now, rule),
        None if onset_window else _severe_outside_window(episode, config),
        _persistent(episode, now, rule),
        _recurrent(record, now, rule, windows),
    )
    return tuple(f for f in found if f is not None)


def _known_metastasis(record: PatientRecord, config: RuleConfig) -> Feature | None:
    reasons = tuple(
        Reason(f"Known bone or spinal metastasis: {f.label or 'bone metastasis'}", f.ref)
        for f in record.clinical
        if f.kind is ClinicalKind.BONE_METASTASIS and f.status in config.context.active_statuses
    )
    return Feature("known bone or spinal metastasis", reasons) if reasons else None


def _upper_spine(episode: BackPainEpisode) -> Feature | None:
    reasons = [
        Reason(f"{f.site.value.capitalize()} back pain: {f.label or 'back pain'}", f.ref)
        for f in episode.facts
        if f.site is not None and f.site in _UPPER_SPINE
    ]
    reasons += [
        Reason(f"Pain score {s.score:g}/10 at the {s.site.value} spine on {concepts.day_text(s.time)}", s.ref)
        for s in episode.scores
        if s.site is not None and s.site in _UPPER_SPINE
    ]
    return Feature("thoracic or cervical site", tuple(reasons)) if reasons else None


def _rising_scores(episode: BackPainEpisode, now: datetime, rule: RuleSettings) -> Feature | None:
    recent = [s for s in episode.scores if concepts.within(s.time, now, rule.duration("rise_window"))]
    if len(recent) < 2 or recent[-1].score - recent[0].score < rule.quantity("rise_points").value:
        return None
    first, last = recent[0], recent[-1]
    text = (
        f"Pain score rose from {first.score:g} to {last.score:g} between "
        f"{concepts.day_text(first.time)} and {concepts.day_text(last.time)}"
    )
    return Feature("rising pain scores", (Reason(text, first.ref), Reason(text, last.ref)))


def _severe_outside_window(episode: BackPainEpisode, config: RuleConfig) -> Feature | None:
    reasons = tuple(
        Reason(f"Severe pain {s.score:g}/10 on {concepts.day_text(s.time)}, not in a G-CSF window", s.ref)
        for s in episode.scores
        if s.score >= config.context.severe_score
    )
    return Feature("severe pain outside a G-CSF window", reasons) if reasons else None


def _persistent(episode: BackPainEpisode, now: datetime, rule: RuleSettings) -> Feature | None:
    if now - episode.onset < rule.duration("persistence_after"):
        return None
    days = concepts.whole_days(now - episode.onset)
    reasons = tuple(
        Reason(f"Pain for {days} days, still {s.score:g}/10 on {concepts.day_text(s.time)}", s.ref)
        for s in episode.scores
        if concepts.within(s.time, now, rule.duration("persistence_score_window"))
        and s.score >= rule.quantity("persistence_score").value
    )
    return Feature("persistent pain", reasons) if reasons else None


def _recurrent(
    record: PatientRecord, now: datetime, rule: RuleSettings, windows: tuple[GcsfWindow, ...]
) -> Feature | None:
    history = concepts.back_pain_history(record, now, rule.duration("recurrence_lookback"))
    run = gcsf_windows.longest_consecutive_run(windows, [t for t, _ in history])
    if not run or len(run) < rule.quantity("recurrence_cycles").value:
        return None
    reasons: list[Reason] = []
    for window in run:
        text = f"Back pain after {window.label} {window.doses[0].verb} on {concepts.day_text(window.start)}"
        reasons.append(Reason(text, window.doses[0].ref))
        reasons.extend(Reason(text, ref) for t, ref in history if window.contains(t))
    return Feature(f"pain in {len(run)} consecutive G-CSF cycles", tuple(reasons))


def evaluate(situation: TriageSituation) -> Outcome:
    """Fire on any progressive feature (ranked after ``mscc-red-flags``)."""
    settings = situation.config.rule(RULE_ID)
    if not situation.features:
        return Outcome(note=f"{RULE_ID}: no progressive feature")
    imaging = concepts.recent_imaging(situation.record, situation.now, situation.config.context)
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
