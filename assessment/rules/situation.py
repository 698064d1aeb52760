"""What the rules look at, computed once per call: the triage and order situations.

The engine builds a :class:`TriageSituation` (patient-view, encounter-start) or an
:class:`OrderSituation` (order-select, order-sign) and hands it to each rule's ``evaluate``.
Red flags and progressive features live here because several rules argue with them: a rule
that fires lists the others' findings as reasons against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from assessment.config import RuleConfig, RuleSettings
from assessment.facts import ClinicalFact, ClinicalKind, MedicationFact, PatientRecord, SpineSite
from assessment.findings import Finding, Indicator, Reason
from assessment.rules import common
from assessment.rules.common import BackPainEpisode, GcsfWindow, NsaidSafety, OncologyContext

PROGRESSIVE_RULE = "progressive-back-pain"
_UPPER_SPINE = (SpineSite.THORACIC, SpineSite.CERVICAL)


@dataclass(frozen=True)
class Outcome:
    """What one rule concluded: a finding, or a note saying why it did not fire."""

    finding: Finding | None = None
    note: str = ""


@dataclass(frozen=True)
class Feature:
    """One progressive feature (R2/R5), with the facts behind it."""

    text: str  #: short phrase for the card, e.g. "thoracic site"
    reasons: tuple[Reason, ...]

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the references behind the feature."""
        return tuple(r.ref for r in self.reasons if r.ref)


@dataclass(frozen=True)
class TriageSituation:
    """Everything the triage rules need, for a patient with oncology context and back pain."""

    record: PatientRecord
    now: datetime
    config: RuleConfig
    context: OncologyContext
    episode: BackPainEpisode
    windows: tuple[GcsfWindow, ...]
    onset_window: GcsfWindow | None  #: the window the back-pain onset falls in
    red_flags: tuple[ClinicalFact, ...]
    features: tuple[Feature, ...]
    nsaid: NsaidSafety

    @property
    def red_flag_reasons(self) -> tuple[Reason, ...]:
        """Return one reason per red flag."""
        return tuple(red_flag_reason(f) for f in self.red_flags)

    @property
    def feature_reasons(self) -> tuple[Reason, ...]:
        """Return the reasons behind every progressive feature."""
        return tuple(chain.from_iterable(f.reasons for f in self.features))

    @property
    def window_reason(self) -> Reason | None:
        """Return why the onset is attributed to G-CSF (None when outside every window)."""
        window = self.onset_window
        if window is None:
            return None
        dose = dose_before(window, self.episode.onset)
        dose_time = dose.time or window.start
        day = common.calendar_days(dose_time, self.episode.onset)
        text = (
            f"Back pain began on day {day} after {dose.label or 'G-CSF'} {dose.verb} on "
            f"{common.day_text(dose_time)} (inside the G-CSF window)"
        )
        return Reason(text, dose.ref)

    def base_reasons(self) -> tuple[Reason, ...]:
        """Return the reasons every triage finding shares: back pain and oncology context."""
        return back_pain_reasons(self.episode) + self.context.reasons

    def base_refs(self) -> tuple[str, ...]:
        """Return the references every triage finding shares."""
        return self.episode.refs + self.context.refs

    def variables(self) -> dict[str, str]:
        """Return the placeholders every triage card text may use."""
        latest = self.episode.latest_score
        texts = self.config.texts
        severe = latest is not None and latest.score >= self.config.context.severe_score
        return {
            "analgesia": texts["analgesia_severe" if severe else "analgesia_mild"],
            "analgesia_step": texts["analgesia_step_severe" if severe else "analgesia_step_mild"],
            "onset_date": common.day_text(self.episode.onset)
            if self.episode.onset_recorded
            else texts["onset_not_recorded"],
            "days_since_onset": str(common.calendar_days(self.episode.onset, self.now))
            if self.episode.onset_recorded
            else texts["days_not_recorded"],
            "latest_score": f"{latest.score:g}/10" if latest else texts["score_not_recorded"],
            "nsaid_advice": common.nsaid_advice(self.nsaid, texts),
            "context": context_text(self.context),
        }


@dataclass(frozen=True)
class OrderSituation:
    """Everything the order-hook rules need."""

    record: PatientRecord
    now: datetime
    config: RuleConfig
    drafts: tuple[MedicationFact, ...]  #: the draft orders in focus
    context: OncologyContext
    windows: tuple[GcsfWindow, ...]
    nsaid: NsaidSafety


@dataclass(frozen=True)
class FindingParts:
    """The rule-specific parts of a finding; :func:`build_finding` adds the shared ones."""

    evidence: tuple[str, ...]
    reasons_for: tuple[Reason, ...]
    actions: tuple[str, ...]
    variables: dict[str, str]
    reasons_against: tuple[Reason, ...] = ()
    indicator: Indicator | None = None
    existing_imaging: tuple[str, ...] = ()
    nsaid: NsaidSafety | None = None
    draft_refs: tuple[str, ...] = ()


def build_finding(settings: RuleSettings, record: PatientRecord, parts: FindingParts) -> Finding:
    """Assemble a :class:`Finding`: dedupe evidence, flag text-only evidence, add R4 results."""
    nsaid_refs = parts.nsaid.refs if parts.nsaid is not None and not parts.nsaid.safe else ()
    # the labs / anticoagulants behind "Avoid NSAIDs" are evidence too (the text names no ids)
    evidence = tuple(dict.fromkeys(parts.evidence + nsaid_refs))
    facts: chain[ClinicalFact | MedicationFact] = chain(record.clinical, record.medications, record.draft_orders)
    text_facts = [f for f in facts if common.is_text_match(f)]
    text_refs = {f.ref for f in text_facts}
    coded_by_name = {f.ref for f in text_facts if getattr(f, "coded", False)}
    nsaid = parts.nsaid
    return Finding(
        rule_id=settings.rule_id,
        rule_version=settings.version,
        indicator=parts.indicator or settings.indicator,
        evidence=evidence,
        citation=settings.citation,
        reasons_for=tuple(dict.fromkeys(parts.reasons_for)),
        reasons_against=tuple(dict.fromkeys(parts.reasons_against)),
        actions=parts.actions,
        nsaid_safe=nsaid.safe if nsaid else True,
        nsaid_concerns=nsaid.concerns if nsaid else (),
        existing_imaging=parts.existing_imaging,
        low_confidence=any(ref in text_refs for ref in evidence),
        free_text=any(ref in text_refs and ref not in coded_by_name for ref in evidence),
        coded_by_name=any(ref in coded_by_name for ref in evidence),
        draft_refs=parts.draft_refs,
        unchecked_medications=record.unrecognised_coded_meds,
        variables=dict(parts.variables),
    )


# -- building the situations -----------------------------------------------------------------


def triage_situation(
    record: PatientRecord,
    now: datetime,
    config: RuleConfig,
    context: OncologyContext,
    episode: BackPainEpisode,
) -> TriageSituation:
    """Compute the triage situation for a record with oncology context and back pain."""
    settings = config.context
    windows = common.gcsf_windows(record, settings)
    # an undated episode is in no G-CSF window: nothing says when it began
    onset_window = common.window_at(windows, episode.onset) if episode.onset_recorded else None
    red_flags = find_red_flags(record, now, config)
    features = find_progressive_features(record, now, config, episode, windows, onset_window)
    return TriageSituation(
        record=record,
        now=now,
        config=config,
        context=context,
        episode=episode,
        windows=windows,
        onset_window=onset_window,
        red_flags=red_flags,
        features=features,
        nsaid=common.nsaid_safety(record, now, settings),
    )


def order_situation(
    record: PatientRecord, now: datetime, config: RuleConfig, *, selected_only: bool
) -> OrderSituation:
    """Compute the order situation; with ``selected_only`` the selected drafts are in focus
    (all drafts when none is selected)."""
    drafts = record.draft_orders
    if selected_only and any(d.selected for d in drafts):
        drafts = tuple(d for d in drafts if d.selected)
    settings = config.context
    return OrderSituation(
        record=record,
        now=now,
        config=config,
        drafts=drafts,
        context=common.oncology_context(record, now, settings),
        windows=common.gcsf_windows(record, settings),
        nsaid=common.nsaid_safety(record, now, settings),
    )


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
            and common.within(common.fact_time(f), now, settings.red_flag_lookback)
        )
        or (f.kind is ClinicalKind.MSCC and f.status in settings.active_statuses)
    ]
    return tuple(sorted(flags, key=_newest_first))


def _newest_first(fact: ClinicalFact) -> float:
    time = common.fact_time(fact)
    return -time.timestamp() if time else 0.0


def find_progressive_features(
    record: PatientRecord,
    now: datetime,
    config: RuleConfig,
    episode: BackPainEpisode,
    windows: tuple[GcsfWindow, ...],
    onset_window: GcsfWindow | None,
) -> tuple[Feature, ...]:
    """Return every progressive feature of the back pain (R2 and R5 of CLINICAL.md)."""
    rule = config.rule(PROGRESSIVE_RULE)
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
        Reason(f"Pain score {s.score:g}/10 at the {s.site.value} spine on {common.day_text(s.time)}", s.ref)
        for s in episode.scores
        if s.site is not None and s.site in _UPPER_SPINE
    ]
    return Feature("thoracic or cervical site", tuple(reasons)) if reasons else None


def _rising_scores(episode: BackPainEpisode, now: datetime, rule: RuleSettings) -> Feature | None:
    recent = [s for s in episode.scores if common.within(s.time, now, rule.duration("rise_window"))]
    if len(recent) < 2 or recent[-1].score - recent[0].score < rule.quantity("rise_points").value:
        return None
    first, last = recent[0], recent[-1]
    text = (
        f"Pain score rose from {first.score:g} to {last.score:g} between "
        f"{common.day_text(first.time)} and {common.day_text(last.time)}"
    )
    return Feature("rising pain scores", (Reason(text, first.ref), Reason(text, last.ref)))


def _severe_outside_window(episode: BackPainEpisode, config: RuleConfig) -> Feature | None:
    reasons = tuple(
        Reason(f"Severe pain {s.score:g}/10 on {common.day_text(s.time)}, not in a G-CSF window", s.ref)
        for s in episode.scores
        if s.score >= config.context.severe_score
    )
    return Feature("severe pain outside a G-CSF window", reasons) if reasons else None


def _persistent(episode: BackPainEpisode, now: datetime, rule: RuleSettings) -> Feature | None:
    if now - episode.onset < rule.duration("persistence_after"):
        return None
    days = common.whole_days(now - episode.onset)
    reasons = tuple(
        Reason(f"Pain for {days} days, still {s.score:g}/10 on {common.day_text(s.time)}", s.ref)
        for s in episode.scores
        if common.within(s.time, now, rule.duration("persistence_score_window"))
        and s.score >= rule.quantity("persistence_score").value
    )
    return Feature("persistent pain", reasons) if reasons else None


def _recurrent(
    record: PatientRecord, now: datetime, rule: RuleSettings, windows: tuple[GcsfWindow, ...]
) -> Feature | None:
    history = common.back_pain_history(record, now, rule.duration("recurrence_lookback"))
    run = common.longest_consecutive_run(windows, [t for t, _ in history])
    if not run or len(run) < rule.quantity("recurrence_cycles").value:
        return None
    reasons: list[Reason] = []
    for window in run:
        text = f"Back pain after {window.label} {window.doses[0].verb} on {common.day_text(window.start)}"
        reasons.append(Reason(text, window.doses[0].ref))
        reasons.extend(Reason(text, ref) for t, ref in history if window.contains(t))
    return Feature(f"pain in {len(run)} consecutive G-CSF cycles", tuple(reasons))


# -- wording ---------------------------------------------------------------------------------


def red_flag_reason(fact: ClinicalFact) -> Reason:
    """Describe a red flag in words."""
    kind = {
        ClinicalKind.RED_FLAG_NEURO: "Neurological red flag",
        ClinicalKind.RED_FLAG_SPHINCTER: "Bladder or bowel red flag",
        ClinicalKind.MSCC: "Spinal cord or cauda equina compression diagnosis",
    }[fact.kind]
    time = common.fact_time(fact)
    when = f" on {common.day_text(time)}" if time else ""
    return Reason(f"{kind}: {fact.label or fact.kind.value}{when}", fact.ref)


def back_pain_reasons(episode: BackPainEpisode) -> tuple[Reason, ...]:
    """Describe the back-pain episode: its facts and its latest score."""
    reasons = []
    for fact in episode.facts:
        site = f" ({fact.site.value})" if fact.site else ""
        time = common.fact_time(fact)
        when = f", since {common.day_text(time)}" if time else ""
        reasons.append(Reason(f"Back pain{site}: {fact.label or 'back pain'}{when}", fact.ref))
    latest = episode.latest_score
    if latest is not None:
        text = f"Latest pain score {latest.score:g}/10 on {common.day_text(latest.time)}"
        reasons.append(Reason(text, latest.ref))
    return tuple(reasons)


def context_text(context: OncologyContext) -> str:
    """Return a short phrase for the oncology context, e.g. "breast cancer"."""
    for fact in context.cancers:
        if fact.label:
            label = fact.label
            # Code displays are sentence case ("Malignant neoplasm of ..."); mid-sentence they
            # read better in lower case. Leave acronyms ("HER2-positive", "AML") alone.
            if len(label) > 1 and label[0].isupper() and label[1].islower():
                label = label[0].lower() + label[1:]
            return label
    return "cancer" if context.cancers else "recent chemotherapy"


def dose_before(window: GcsfWindow, time: datetime) -> MedicationFact:
    """Return the last dose of ``window`` given at or before ``time`` (else its first dose)."""
    earlier = [d for d in window.doses if d.time is not None and d.time <= time]
    return earlier[-1] if earlier else window.doses[0]
