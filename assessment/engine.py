"""Assess one patient record for one hook: run the rules, rank them, explain silence.

patient-view / encounter-start run the four triage rules. They are mutually exclusive: the
first that fires in :data:`TRIAGE_RULES` order (mscc > progressive > G-CSF bone pain >
supportive care) is the single card, and the differential lists every one that fired.
order-select / order-sign run the two order rules on the draft orders in focus.

The triage situation the four rules share is built here (:func:`triage_inputs`), from the shared
concepts (:mod:`assessment.rules.concepts`) and each rule's own criteria, taken from its module
(red flags, progressive features, the G-CSF window reason): the rule modules sit above
:mod:`assessment.rules.situation`, and only the engine, above both, puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import ModuleType

from assessment.config import RuleConfig
from assessment.facts import ClinicalKind, PatientRecord
from assessment.findings import Assessment, Finding
from assessment.rules import (
    back_pain_supportive_care,
    concepts,
    gcsf_bone_pain,
    gcsf_order_dose_review,
    gcsf_windows,
    mscc_red_flags,
    nsaid_caution_post_chemo,
    nsaid_safety,
    progressive_back_pain,
)
from assessment.rules.concepts import BackPainEpisode, OncologyContext
from assessment.rules.situation import OrderSituation, Outcome, TriageSituation, order_situation

__all__ = [
    "ORDER_HOOKS", "ORDER_RULES", "TRIAGE_HOOKS", "TRIAGE_RULES", "UnsupportedHookError", "assess", "triage_inputs",
]

TRIAGE_HOOKS = frozenset({"patient-view", "encounter-start"})
ORDER_HOOKS = frozenset({"order-select", "order-sign"})
#: Triage rules, most urgent first: this order, not the indicator, decides the single card.
TRIAGE_RULES: tuple[ModuleType, ...] = (
    mscc_red_flags,
    progressive_back_pain,
    gcsf_bone_pain,
    back_pain_supportive_care,
)
ORDER_RULES: tuple[ModuleType, ...] = (gcsf_order_dose_review, nsaid_caution_post_chemo)

class UnsupportedHookError(ValueError):
    """The hook is not one this engine assesses."""


def assess(
    record: PatientRecord,
    *,
    now: datetime,
    config: RuleConfig,
    hook: str,
    check: Callable[[], None] | None = None,
) -> Assessment:
    """Run the rules of ``hook`` on ``record`` as of ``now`` (timezone-aware).

    ``check`` is a cancellation point called before each rule (the caller's deadline check
    raises there; the exception passes through unchanged).

    :raises UnsupportedHookError: for a hook other than patient-view, encounter-start,
        order-select or order-sign.
    :raises ValueError: when ``now`` has no timezone.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if hook in TRIAGE_HOOKS:
        return _triage(record, now, config, check)
    if hook in ORDER_HOOKS:
        return _orders(record, now, config, selected_only=hook == "order-select", check=check)
    raise UnsupportedHookError(f"unsupported hook {hook!r}")


def triage_inputs(
    record: PatientRecord, now: datetime, config: RuleConfig
) -> tuple[TriageSituation | None, tuple[str, ...]]:
    """Return the triage situation the four triage rules see, or ``(None, notes)`` saying why
    there is nothing to triage (no oncology context, no back pain). The detail view's
    differential is built on the same situation, so it agrees with the card."""
    settings = config.context
    context = concepts.oncology_context(record, now, settings)
    episode = concepts.back_pain_episode(record, now, settings)
    notes = []
    if not context.present:
        days = concepts.whole_days(settings.chemotherapy_lookback)
        notes.append(
            f"no oncology context (no active cancer, no chemotherapy in the last {days} days)"
        )
    if episode is None and context.present:
        episode = _red_flag_episode(record, now, config)
    if episode is None:
        notes.append(f"no back pain in the last {concepts.whole_days(settings.back_pain_lookback)} days")
    if notes or episode is None:
        return None, tuple(notes)
    return _triage_situation(record, now, config, context, episode), ()


def _triage_situation(
    record: PatientRecord,
    now: datetime,
    config: RuleConfig,
    context: OncologyContext,
    episode: BackPainEpisode,
) -> TriageSituation:
    """Compute the triage situation for a record with oncology context and back pain: the
    shared concepts, and each triage rule's own criteria from its module (every triage rule
    sees them all, to list the others' findings as reasons against)."""
    settings = config.context
    windows = gcsf_windows.gcsf_windows(record, settings)
    # an undated episode is in no G-CSF window: nothing says when it began
    onset_window = gcsf_windows.window_at(windows, episode.onset) if episode.onset_recorded else None
    red_flags = mscc_red_flags.find_red_flags(record, now, config)
    return TriageSituation(
        record=record,
        now=now,
        config=config,
        context=context,
        episode=episode,
        windows=windows,
        onset_window=onset_window,
        red_flags=red_flags,
        red_flag_reasons=tuple(mscc_red_flags.red_flag_reason(f) for f in red_flags),
        features=progressive_back_pain.find_progressive_features(
            record, now, config, episode, windows, onset_window
        ),
        window_reason=gcsf_bone_pain.window_reason(episode, onset_window),
        nsaid=nsaid_safety.nsaid_safety(record, now, settings),
    )


def _triage(
    record: PatientRecord, now: datetime, config: RuleConfig, check: Callable[[], None] | None = None
) -> Assessment:
    situation, silence = triage_inputs(record, now, config)
    if situation is None:
        return Assessment(findings=(), differential=(), notes=silence)
    fired, notes = _run(TRIAGE_RULES, situation, config, check)
    return Assessment(findings=tuple(fired[:1]), differential=tuple(fired), notes=tuple(notes))


def _red_flag_episode(record: PatientRecord, now: datetime, config: RuleConfig) -> BackPainEpisode | None:
    """With no back pain in the lookback, a red flag still counts with active back pain of any
    onset or a known bone/spinal metastasis, and a cord compression / cauda equina diagnosis
    recorded in the last 14 days counts even without a back-pain record (CLINICAL.md *Red flag*):
    return the episode to triage then (without any back-pain record, an episode starting at the
    oldest counted red flag), else None."""
    flags = mscc_red_flags.find_red_flags(record, now, config)
    if not flags:
        return None
    episode = concepts.back_pain_episode(record, now, config.context, any_onset=True)
    if episode is not None:
        return episode
    settings = config.context
    if any(f.kind is ClinicalKind.BONE_METASTASIS and f.status in settings.active_statuses for f in record.clinical):
        counted = flags
    else:  # a cord compression / cauda equina diagnosis recorded in the last 14 days counts alone
        counted = tuple(
            f for f in flags
            if f.kind is ClinicalKind.MSCC
            and any(
                concepts.within(time, now, settings.red_flag_lookback) for time in (concepts.fact_time(f), f.recorded)
            )
        )
    times = [time for f in counted if (time := concepts.fact_time(f)) is not None]
    return BackPainEpisode(facts=(), scores=(), onset=min(times)) if times else None


def _orders(
    record: PatientRecord,
    now: datetime,
    config: RuleConfig,
    *,
    selected_only: bool,
    check: Callable[[], None] | None = None,
) -> Assessment:
    if not record.draft_orders:
        return Assessment(findings=(), notes=("no draft medication order matched G-CSF or NSAID",))
    situation = order_situation(record, now, config, selected_only=selected_only)
    fired, notes = _run(ORDER_RULES, situation, config, check)
    ranked = tuple(sorted(fired, key=lambda f: -f.indicator.rank))
    return Assessment(findings=ranked, differential=ranked, notes=tuple(notes))


def _run(
    rules: Sequence[ModuleType],
    situation: TriageSituation | OrderSituation,
    config: RuleConfig,
    check: Callable[[], None] | None = None,
) -> tuple[list[Finding], list[str]]:
    """Run each enabled rule module's ``evaluate``; collect findings and the notes of silence."""
    fired: list[Finding] = []
    notes: list[str] = []
    for rule in rules:
        if check is not None:
            check()
        if not config.rule(rule.RULE_ID).enabled:
            notes.append(f"{rule.RULE_ID}: disabled by configuration")
            continue
        outcome: Outcome = rule.evaluate(situation)
        if outcome.finding is not None:
            fired.append(outcome.finding)
        elif outcome.note:
            notes.append(outcome.note)
    return fired, notes
