"""Build the detail view's differential: the seed leaflet's causes, with facts for and against.

Pure: a :class:`~assessment.facts.PatientRecord`, ``now``, the rule configuration and the
differential configuration in; a :class:`Differential` out. It weighs the same triage
situation the triage rules see (:func:`assessment.engine.triage_inputs`): the dose that puts
the pain in a G-CSF window is the card's dose, a red flag is the card's red flag. Every
sentence comes from ``knowledge/differential.toml`` except the red-flag, progressive-feature
and G-CSF-window reasons, which are the cards' own (so the page says the same thing twice in
the same words).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from assessment.config import RuleConfig
from assessment.differential.config import AgentGroup, CauseText, DifferentialConfig
from assessment.engine import triage_inputs
from assessment.facts import ClinicalKind, DrugClass, PatientRecord
from assessment.findings import Citation
from assessment.rules import concepts, progressive_back_pain
from assessment.rules.gcsf_bone_pain import dose_before
from assessment.rules.mscc_red_flags import red_flag_reason
from assessment.rules.situation import TriageSituation

__all__ = ["Cause", "Differential", "Fact", "build_differential"]

_PROCEDURE_VERBS = {"procedure": "given", "order": "ordered", "plan": "planned"}


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact from the record, for or against a cause."""

    key: str  #: the [facts] key it was written from, or "red-flag" / "feature" / "gcsf-window"
    text: str
    refs: tuple[str, ...] = ()  #: the FHIR references (Type/id) it rests on


@dataclass(frozen=True)
class Cause:
    """One cause of the back pain, weighed on this record."""

    key: str
    title: str
    summary: str
    rules: tuple[str, ...]  #: card rules that stand for this cause
    citation: Citation
    facts_for: tuple[Fact, ...] = ()
    facts_against: tuple[Fact, ...] = ()
    notes: tuple[Fact, ...] = ()  #: facts that neither support nor weaken it (imaging on record)


@dataclass(frozen=True)
class Differential:
    """The causes in page order; empty (with the reasons) when there is nothing to weigh."""

    causes: tuple[Cause, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Dose:
    time: datetime
    agent: str
    group: AgentGroup
    verb: str
    ref: str


def build_differential(
    record: PatientRecord, now: datetime, rules: RuleConfig, config: DifferentialConfig
) -> Differential:
    """Weigh every cause of the leaflet on ``record`` as of ``now`` (timezone-aware)."""
    situation, notes = triage_inputs(record, now, rules)
    if situation is None:
        return Differential(causes=(), notes=notes)
    gcsf_for, gcsf_against = _gcsf(situation, config)
    chemo_for, chemo_against = _chemotherapy(situation, config)
    spine_for, spine_against, spine_notes = _spine(situation, config)
    timing = tuple(f for f in chemo_for if f.key == "chemo_onset_after_dose")
    posture_for, posture_against = _posture(situation, config, gcsf_for + timing + spine_for, bool(timing))
    weighed = {
        "gcsf-timing": (gcsf_for, gcsf_against, ()),
        "chemotherapy-side-effects": (chemo_for, chemo_against, ()),
        "spread-to-spine": (spine_for, spine_against, spine_notes),
        "posture-non-specific": (posture_for, posture_against, ()),
    }
    return Differential(causes=tuple(_cause(text, *weighed[text.key]) for text in config.causes))


def _cause(text: CauseText, facts_for: tuple[Fact, ...], against: tuple[Fact, ...], notes: tuple[Fact, ...]) -> Cause:
    return Cause(key=text.key, title=text.title, summary=text.summary, rules=text.rules, citation=text.citation,
                 facts_for=_merged(facts_for), facts_against=_merged(against), notes=_merged(notes))


def _fact(key: str, text: str, ref: str | None = None) -> Fact:
    return Fact(key, text, (ref,) if ref else ())


def _merged(facts: tuple[Fact, ...]) -> tuple[Fact, ...]:
    """One line per sentence: a sentence that rests on several resources lists all of them
    (rising scores name the first and the last score)."""
    merged: dict[tuple[str, str], Fact] = {}
    for fact in facts:
        key = (fact.key, fact.text)
        seen = merged.get(key)
        refs = fact.refs if seen is None else tuple(dict.fromkeys(seen.refs + fact.refs))
        merged[key] = Fact(fact.key, fact.text, refs)
    return tuple(merged.values())


def _outranked(situation: TriageSituation, config: DifferentialConfig) -> tuple[Fact, ...]:
    if situation.red_flags or situation.features:
        return (_fact("outranked", config.fact("outranked")),)
    return ()


# -- G-CSF timing ----------------------------------------------------------------------------


def _gcsf(situation: TriageSituation, config: DifferentialConfig) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    onset = situation.episode.onset
    onset_date = concepts.day_text(onset)
    facts_for: list[Fact] = []
    against: list[Fact] = []
    window = situation.onset_window
    if window is not None:  # the card's dose (gcsf-bone-pain: dose_before the onset)
        dose = dose_before(window, onset)
        dose_time = dose.time or window.start
        facts_for.append(_fact("gcsf_dose_in_window", config.fact(
            "gcsf_dose_in_window", onset_date=onset_date, day=concepts.calendar_days(dose_time, onset),
            product=dose.label or "G-CSF", verb=dose.verb, dose_date=concepts.day_text(dose_time),
            window_end=concepts.day_text(window.end)), dose.ref))
    else:
        since = onset - config.lookback
        before = [w for w in situation.windows if w.start <= onset and w.end >= since]
        if before:
            last = max(before, key=lambda w: w.end)
            dose = last.doses[-1]
            dose_time = dose.time or last.start
            against.append(_fact("gcsf_window_before_onset", config.fact(
                "gcsf_window_before_onset", product=dose.label or "G-CSF", verb=dose.verb,
                dose_date=concepts.day_text(dose_time), window_end=concepts.day_text(last.end),
                days_after=concepts.calendar_days(last.end, onset), onset_date=onset_date), dose.ref))
        else:
            against.append(_fact("gcsf_none", config.fact(
                "gcsf_none", lookback_days=concepts.whole_days(config.lookback))))
    for later in situation.windows:
        if later.start > onset:  # a dose after the pain began never explains it
            dose = later.doses[0]
            dose_time = dose.time or later.start
            against.append(_fact("gcsf_dose_after_onset", config.fact(
                "gcsf_dose_after_onset", product=dose.label or "G-CSF", verb=dose.verb,
                dose_date=concepts.day_text(dose_time), onset_date=onset_date), dose.ref))
    return tuple(facts_for), tuple(against) + _outranked(situation, config)


# -- chemotherapy side effects ---------------------------------------------------------------


def _agent_doses(situation: TriageSituation, config: DifferentialConfig) -> list[_Dose]:
    """Doses of agents known for neuropathy or muscle pain, from the pain's lookback on."""
    record = situation.record
    settings = situation.config.context
    since = situation.episode.onset - config.lookback
    doses: list[_Dose] = []
    for med in record.medications:
        if med.drug_class is not DrugClass.CHEMOTHERAPY or not concepts.usable(med, settings):
            continue
        if med.time is None or med.time < since:
            continue
        for group in config.groups:
            doses.extend(_Dose(med.time, agent, group, med.verb, med.ref) for agent in group.agents(med.codes, med.label))
    for procedure in record.procedures:
        if procedure.time is None or procedure.time < since or procedure.status in settings.excluded_statuses:
            continue
        verb = _PROCEDURE_VERBS.get(procedure.source, "recorded")
        for group in config.groups:
            doses.extend(_Dose(procedure.time, agent, group, verb, procedure.ref) for agent in group.agents((), procedure.label))
    return sorted(doses, key=lambda d: d.time)


def _chemotherapy(situation: TriageSituation, config: DifferentialConfig) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    onset = situation.episode.onset
    onset_date = concepts.day_text(onset)
    doses = _agent_doses(situation, config)
    facts_for: list[Fact] = []
    against: list[Fact] = []
    for agent in dict.fromkeys(d.agent for d in doses):
        mine = [d for d in doses if d.agent == agent]
        before = [d for d in mine if d.time <= onset]
        if before:
            last = before[-1]
            group = last.group
            day = concepts.calendar_days(last.time, onset)
            values = dict(agent=agent, verb=last.verb, dose_date=concepts.day_text(last.time))
            facts_for.append(_fact("chemo_agent", config.fact(
                "chemo_agent", group=group.title, effects=group.effects, **values), last.ref))
            timed = dict(onset_date=onset_date, day=day, window_days=concepts.whole_days(group.window), **values)
            if onset - last.time <= group.window:
                facts_for.append(_fact("chemo_onset_after_dose", config.fact("chemo_onset_after_dose", **timed), last.ref))
            else:
                against.append(_fact("chemo_onset_outside_window", config.fact("chemo_onset_outside_window", **timed), last.ref))
        else:
            first = mine[0]
            against.append(_fact("chemo_dose_after_onset", config.fact(
                "chemo_dose_after_onset", agent=agent, verb=first.verb, dose_date=concepts.day_text(first.time),
                onset_date=onset_date), first.ref))
    if not doses:
        against.append(_fact("chemo_none", config.fact(
            "chemo_none", groups=config.groups_text(), lookback_days=concepts.whole_days(config.lookback))))
    for flag in situation.red_flags:
        if flag.kind is ClinicalKind.RED_FLAG_NEURO:  # numbness or weakness is never put down to neuropathy
            reason = red_flag_reason(flag)
            against.append(_fact("chemo_red_flag", config.fact("chemo_red_flag", flag=reason.text), flag.ref))
    return tuple(facts_for), tuple(against) + _outranked(situation, config)


# -- spread to the spine ---------------------------------------------------------------------


def _spine(
    situation: TriageSituation, config: DifferentialConfig
) -> tuple[tuple[Fact, ...], tuple[Fact, ...], tuple[Fact, ...]]:
    rules = situation.config
    facts_for = [_fact("red-flag", r.text, r.ref) for r in situation.red_flag_reasons]
    facts_for += [_fact("feature", r.text, r.ref) for r in situation.feature_reasons]
    facts_for += _night_pain(situation, config)
    against: list[Fact] = []
    if not situation.red_flags:
        against.append(_fact("spine_no_red_flag", config.fact(
            "spine_no_red_flag", red_flag_days=concepts.whole_days(rules.context.red_flag_lookback))))
    if not situation.features:
        against.append(_fact("spine_no_feature", config.fact("spine_no_feature")))
    window_reason = situation.window_reason  # the progressive card's reason against, too
    if window_reason is not None:
        against.append(_fact("gcsf-window", window_reason.text, window_reason.ref))
    rise_window = rules.rule(progressive_back_pain.RULE_ID).duration("rise_window")
    recent = [s for s in situation.episode.scores if concepts.within(s.time, situation.now, rise_window)]
    if len(recent) >= 2 and recent[-1].score < recent[0].score:
        first, last = recent[0], recent[-1]
        against.append(_fact("spine_scores_falling", config.fact(
            "spine_scores_falling", first=f"{first.score:g}", last=f"{last.score:g}",
            first_date=concepts.day_text(first.time), last_date=concepts.day_text(last.time)), last.ref))
    notes = tuple(
        _fact("spine_imaging", config.fact(
            "spine_imaging", kind=config.imaging_names.get(i.kind.value, i.kind.value),
            date=concepts.day_text(i.time) if i.time else "date not recorded"), i.ref)
        for i in concepts.recent_imaging(situation.record, situation.now, rules.context)
    )
    return tuple(facts_for), tuple(against), notes


def _night_pain(situation: TriageSituation, config: DifferentialConfig) -> list[Fact]:
    """Back-pain records of this episode whose text says the pain comes at night."""
    found = []
    for fact in situation.episode.facts:
        text = fact.label
        if not text or not any(p.search(text) for p in config.night_pain):
            continue
        if any(p.search(text) for p in config.night_pain_exclude):
            continue
        time = concepts.fact_time(fact)
        found.append(_fact("spine_night_pain", config.fact(
            "spine_night_pain", text=text, date=concepts.day_text(time) if time else "date not recorded"), fact.ref))
    return found


# -- posture / non-specific ------------------------------------------------------------------


def _posture(
    situation: TriageSituation, config: DifferentialConfig, others: tuple[Fact, ...], chemo_timing: bool
) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    """What is left when nothing points elsewhere: the absence of the others is the case for it,
    and every fact for another cause is a fact against it."""
    facts_for: list[Fact] = []
    if not situation.red_flags:
        days = concepts.whole_days(situation.config.context.red_flag_lookback)
        facts_for.append(_fact("posture_no_red_flag", config.fact("posture_no_red_flag", red_flag_days=days)))
    if not situation.features:
        facts_for.append(_fact("posture_no_feature", config.fact("posture_no_feature")))
    if situation.onset_window is None:
        facts_for.append(_fact("posture_not_in_window", config.fact("posture_not_in_window")))
    if not chemo_timing:
        facts_for.append(_fact("posture_no_chemo_timing", config.fact(
            "posture_no_chemo_timing", groups=config.groups_text())))
    return tuple(facts_for), others
