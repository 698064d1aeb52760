"""What the rules look at, computed once per call: the triage and order situations.

The engine builds a :class:`TriageSituation` (patient-view, encounter-start; its builder,
:func:`assessment.engine.triage_inputs`, takes each rule's own criteria from the rule modules:
red flags from ``mscc_red_flags``, progressive features from ``progressive_back_pain``, the
G-CSF window reason from ``gcsf_bone_pain``) or an :class:`OrderSituation` (order-select,
order-sign; :func:`order_situation`) and hands it to each rule's ``evaluate``. The triage
situation carries the criteria of every triage rule because the rules argue with each other: a
rule that fires lists the others' findings as reasons against it. :func:`build_finding` is the
finding assembly every rule shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from assessment.config import RuleConfig, RuleSettings
from assessment.facts import ClinicalFact, MedicationFact, PatientRecord
from assessment.findings import Finding, Indicator, Reason
from assessment.rules import concepts, gcsf_windows, nsaid_safety
from assessment.rules.concepts import BackPainEpisode, OncologyContext
from assessment.rules.gcsf_windows import GcsfWindow
from assessment.rules.nsaid_safety import NsaidSafety


@dataclass(frozen=True)
class Outcome:
    """What one rule concluded: a finding, or a note saying why it did not fire."""

    finding: Finding | None = None
    note: str = ""


@dataclass(frozen=True)
class Feature:
    """One progressive feature (R2/R5, found by ``progressive_back_pain``), with the facts behind it."""

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
    red_flags: tuple[ClinicalFact, ...]  #: ``mscc_red_flags.find_red_flags``, most recent first
    red_flag_reasons: tuple[Reason, ...]  #: one per red flag (``mscc_red_flags.red_flag_reason``)
    features: tuple[Feature, ...]  #: ``progressive_back_pain.find_progressive_features``
    #: why the onset is attributed to G-CSF (``gcsf_bone_pain.window_reason``); None when the
    #: onset is outside every window
    window_reason: Reason | None
    nsaid: NsaidSafety

    @property
    def feature_reasons(self) -> tuple[Reason, ...]:
        """Return the reasons behind every progressive feature."""
        return tuple(chain.from_iterable(f.reasons for f in self.features))

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
            "onset_date": concepts.day_text(self.episode.onset)
            if self.episode.onset_recorded
            else texts["onset_not_recorded"],
            "days_since_onset": str(concepts.calendar_days(self.episode.onset, self.now))
            if self.episode.onset_recorded
            else texts["days_not_recorded"],
            "latest_score": f"{latest.score:g}/10" if latest else texts["score_not_recorded"],
            "nsaid_advice": nsaid_safety.nsaid_advice(self.nsaid, texts),
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
    text_facts = [f for f in facts if concepts.is_text_match(f)]
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


# -- building the order situation ------------------------------------------------------------


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
        context=concepts.oncology_context(record, now, settings),
        windows=gcsf_windows.gcsf_windows(record, settings),
        nsaid=nsaid_safety.nsaid_safety(record, now, settings),
    )


# -- wording ---------------------------------------------------------------------------------


def back_pain_reasons(episode: BackPainEpisode) -> tuple[Reason, ...]:
    """Describe the back-pain episode: its facts and its latest score."""
    reasons = []
    for fact in episode.facts:
        site = f" ({fact.site.value})" if fact.site else ""
        time = concepts.fact_time(fact)
        when = f", since {concepts.day_text(time)}" if time else ""
        reasons.append(Reason(f"Back pain{site}: {fact.label or 'back pain'}{when}", fact.ref))
    latest = episode.latest_score
    if latest is not None:
        text = f"Latest pain score {latest.score:g}/10 on {concepts.day_text(latest.time)}"
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
