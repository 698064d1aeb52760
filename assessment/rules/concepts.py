"""The clinical concepts several rules share: oncology context, the back-pain episode, recent
spine imaging, and the time arithmetic they are written in (G-CSF windows are in
``gcsf_windows``, NSAID safety in ``nsaid_safety``).

A criterion only one rule uses lives in that rule's module (red flags in ``mscc_red_flags``,
progressive features in ``progressive_back_pain``, ...). Every function is pure: facts +
``now`` + settings in, small frozen values out. Time windows are closed intervals of exact
datetimes: "in the last 14 days" means ``now - 14 days <= time <= now``, and a G-CSF window
``[start, end]`` includes both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.config import ContextSettings
from assessment.facts import (
    DATE_ONLY,
    ClinicalFact,
    ClinicalKind,
    Confidence,
    DrugClass,
    ImagingFact,
    ImagingKind,
    MedicationFact,
    MedicationSource,
    PainScore,
    PatientRecord,
)
from assessment.findings import Reason

_ORDER_SOURCES = (MedicationSource.ADMINISTRATION, MedicationSource.REQUEST, MedicationSource.STATEMENT)


def within(time: datetime | None, now: datetime, lookback: timedelta) -> bool:
    """Return whether ``time`` lies in ``[now - lookback, now]`` (both ends included)."""
    return time is not None and now - lookback <= time <= now


def fact_time(fact: ClinicalFact) -> datetime | None:
    """Return a clinical fact's time: onset / effective, else recorded."""
    return fact.time if fact.time is not None else fact.recorded


def day_text(time: datetime) -> str:
    """Return ``time`` as an ISO date for card texts."""
    return time.date().isoformat()


def whole_days(delta: timedelta) -> int:
    """Return the whole days in ``delta`` (rounded down)."""
    return delta // timedelta(days=1)


def calendar_days(start: datetime, end: datetime) -> int:
    """Return the calendar days from ``start`` to ``end`` in the timezone of ``start`` (the
    record's own offset): pain the next calendar day after a dose is day 1, whatever the hour.
    A time recorded as a date only (zone ``DATE_ONLY``) counts as the day written, and the other
    time then counts in its own offset: a dose on 6 March at 10:00-05:00 and pain recorded on
    7 March is day 1."""
    if start.tzinfo is DATE_ONLY or end.tzinfo is DATE_ONLY:
        return (end.date() - start.date()).days
    return (end.astimezone(start.tzinfo).date() - start.date()).days


def is_text_match(fact: object) -> bool:
    """Return whether ``fact`` was recognised from free text only."""
    return getattr(fact, "confidence", Confidence.CODED) is Confidence.TEXT


def usable(medication: MedicationFact, settings: ContextSettings) -> bool:
    """Return whether a (non-draft) medication fact counts as exposure.

    Draft orders, excluded statuses and ``intent = plan`` (planned exposure only) do not.
    """
    return (
        medication.source in _ORDER_SOURCES
        and medication.status not in settings.excluded_statuses
        and medication.intent != "plan"
        and medication.time is not None
    )


# -- oncology context ------------------------------------------------------------------------


@dataclass(frozen=True)
class OncologyContext:
    """Why the patient counts as having cancer under treatment (empty = no context)."""

    cancers: tuple[ClinicalFact, ...] = ()
    chemotherapy: tuple[str, ...] = ()  #: refs of chemotherapy in the lookback
    reasons: tuple[Reason, ...] = ()

    @property
    def present(self) -> bool:
        """Return whether there is any oncology context."""
        return bool(self.cancers or self.chemotherapy)

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the references of every fact that gives context."""
        return tuple(f.ref for f in self.cancers) + self.chemotherapy


_ORDER_WORDS = {"order": "ordered", "plan": "planned"}


def oncology_context(record: PatientRecord, now: datetime, settings: ContextSettings) -> OncologyContext:
    """Find active cancer (any onset) or chemotherapy in the lookback; G-CSF is not context.

    Chemotherapy: a chemotherapy Procedure, an ATC L01 agent given / ordered / recorded, or
    chemotherapy ordered (ServiceRequest) or planned (CarePlan activity) whose time — or, for an
    ordered/planned period, whose period — falls in the lookback. A dual-use agent (methotrexate,
    cyclophosphamide, rituximab) counts only when the record has a malignant cancer Condition (any
    clinical status) or the medication's reason names one (CLINICAL.md operational definitions).
    """
    cancers = tuple(
        f
        for f in record.clinical
        if f.kind in (ClinicalKind.CANCER, ClinicalKind.BONE_METASTASIS)
        and f.status in settings.active_statuses
    )
    reasons = [Reason(f"Active cancer: {f.label or f.kind.value} ({f.status})", f.ref) for f in cancers]
    chemo: list[str] = []
    lookback = settings.chemotherapy_lookback
    for procedure in record.procedures:
        time = procedure.time
        if time is None or procedure.status in settings.excluded_statuses:
            continue
        running = (
            procedure.source != "procedure" and procedure.end is not None
            and time <= now and procedure.end >= now - lookback
        )
        if within(time, now, lookback) or running:
            chemo.append(procedure.ref)
            word = _ORDER_WORDS.get(procedure.source)
            label = procedure.label.strip()
            if word is not None:
                text = f"Chemotherapy {word}: {label or 'chemotherapy'} ({day_text(time)})"
            else:
                # a display that already says chemotherapy ("Chemotherapy (procedure)") is not
                # prefixed again
                text = label if "chemotherap" in label.lower() else f"Chemotherapy {label or 'procedure'}".strip()
                text = f"{text} on {day_text(time)}"
            reasons.append(Reason(text, procedure.ref))
    malignancy_refs: frozenset[str] | None = None
    for med in record.medications:
        time = med.time
        if (
            time is not None
            and med.drug_class is DrugClass.CHEMOTHERAPY
            and usable(med, settings)
            and within(time, now, lookback)
        ):
            if med.requires_malignancy:
                if malignancy_refs is None:
                    malignancy_refs = frozenset(
                        f.ref for f in record.clinical if f.kind in (ClinicalKind.CANCER, ClinicalKind.BONE_METASTASIS)
                    )
                if not (malignancy_refs or med.reason_malignant):
                    continue  # e.g. weekly low-dose methotrexate for rheumatoid arthritis
            chemo.append(med.ref)
            label = med.label or "medication"
            name = label if "chemotherap" in label.lower() else f"Chemotherapy {label}"
            text = f"{name} {med.verb} on {day_text(time)}"
            reasons.append(Reason(text, med.ref))
    return OncologyContext(cancers=cancers, chemotherapy=tuple(chemo), reasons=tuple(reasons))


_UNLIMITED = timedelta(days=365_000)

# -- back pain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackPainEpisode:
    """The current back pain: the facts that establish it, its onset and its severity scores."""

    facts: tuple[ClinicalFact, ...]  #: back-pain conditions / findings in the lookback
    scores: tuple[PainScore, ...]  #: back-pain scores in the lookback, oldest first
    onset: datetime
    #: False when nothing in the record dates the back pain (an undated back-pain Condition and
    #: no pain score): ``onset`` is then the evaluation time, used for nothing but ordering;
    #: no G-CSF window or duration is judged from it and cards say the date is not recorded
    onset_recorded: bool = True

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the references that establish the back pain (facts, else scores) and the
        latest score, which sets how severe it is (a new score is new evidence)."""
        if self.facts:
            latest = (self.scores[-1].ref,) if self.scores else ()
            return tuple(dict.fromkeys([f.ref for f in self.facts] + list(latest)))
        return tuple(s.ref for s in self.scores)

    @property
    def latest_score(self) -> PainScore | None:
        """Return the most recent back-pain score, if any."""
        return self.scores[-1] if self.scores else None


def back_pain_episode(
    record: PatientRecord, now: datetime, settings: ContextSettings, *, any_onset: bool = False
) -> BackPainEpisode | None:
    """Return the current back-pain episode, or None when there is no back pain in the lookback.

    With ``any_onset`` the lookback is not applied (*active back pain of any onset*, CLINICAL.md:
    used for red flags only — months of back pain followed by a new deficit is the classic MSCC
    history); facts must still be active (``present_statuses``) and not in the future.
    """
    lookback = _UNLIMITED if any_onset else settings.back_pain_lookback
    present = [f for f in record.clinical if f.kind is ClinicalKind.BACK_PAIN and f.status in settings.present_statuses]
    timed = sorted(
        ((time, f) for f in present if (time := fact_time(f)) is not None and within(time, now, lookback)),
        key=lambda pair: pair[0],
    )
    # An active back-pain Condition with neither onset nor recordedDate: undated, so it is in no
    # lookback, but it is back pain ("a back-pain Condition exists": scores count as back pain,
    # onset = the first pain score) and, for red flags, active back pain of any onset.
    undated = tuple(f for f in present if fact_time(f) is None)
    facts = tuple(f for _, f in timed) + undated
    scores = tuple(
        sorted(
            (
                s
                for s in record.pain_scores
                if (facts or s.site is not None) and within(s.time, now, lookback)
            ),
            key=lambda s: s.time,
        )
    )
    onset = timed[0][0] if timed else (scores[0].time if scores else None)
    if onset is None:
        if any_onset and undated:
            return BackPainEpisode(facts=undated, scores=(), onset=now, onset_recorded=False)
        return None
    return BackPainEpisode(facts=facts, scores=scores, onset=onset)


def back_pain_history(
    record: PatientRecord, now: datetime, lookback: timedelta
) -> list[tuple[datetime, str]]:
    """Return (time, ref) of every back-pain fact (any clinical status) and back-pain score in
    the lookback: past episodes for recurrence and dose review. A score counts when its site is
    the spine or the record has a back-pain fact at all."""
    pain_facts = [f for f in record.clinical if f.kind is ClinicalKind.BACK_PAIN]
    events = [(t, f.ref) for f in pain_facts if (t := fact_time(f)) is not None]
    events += [(s.time, s.ref) for s in record.pain_scores if pain_facts or s.site is not None]
    return sorted((t, ref) for t, ref in events if within(t, now, lookback))


# -- imaging ---------------------------------------------------------------------------------


def recent_imaging(
    record: PatientRecord,
    now: datetime,
    settings: ContextSettings,
    kinds: tuple[ImagingKind, ...] = (ImagingKind.SPINE_MRI, ImagingKind.BONE_SCAN),
    since: datetime | None = None,
) -> tuple[ImagingFact, ...]:
    """Return spine imaging of ``kinds`` ordered or done in the lookback (and after ``since``)."""
    return tuple(
        i
        for i in record.imaging
        if i.kind in kinds
        and i.status not in settings.excluded_statuses
        and i.time is not None
        and within(i.time, now, settings.imaging_lookback)
        and (since is None or i.time >= since)
    )

