"""The clinical concepts several rules share: oncology context, the back-pain episode, G-CSF
windows, NSAID safety (R4), recent spine imaging, and the time arithmetic they are written in.

A criterion only one rule uses lives in that rule's module (red flags in ``mscc_red_flags``,
progressive features in ``progressive_back_pain``, ...). Every function is pure: facts +
``now`` + settings in, small frozen values out. Time windows are closed intervals of exact
datetimes: "in the last 14 days" means ``now - 14 days <= time <= now``, and a G-CSF window
``[start, end]`` includes both ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.config import ContextSettings
from assessment.egfr import age_in_years, ckd_epi_2021
from assessment.facts import (
    DATE_ONLY,
    ClinicalFact,
    ClinicalKind,
    Confidence,
    DrugClass,
    GcsfClass,
    ImagingFact,
    ImagingKind,
    LabKind,
    LabResult,
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


# -- G-CSF windows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GcsfWindow:
    """A period after G-CSF exposure in which back pain is attributed to it (ends included)."""

    start: datetime
    end: datetime
    doses: tuple[MedicationFact, ...]  #: one long-acting dose, or a daily course

    def contains(self, time: datetime) -> bool:
        """Return whether ``time`` falls in the window."""
        return self.start <= time <= self.end

    @property
    def label(self) -> str:
        """Return the product name for card texts."""
        return self.doses[0].label or "G-CSF"

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the dose references."""
        return tuple(d.ref for d in self.doses)

    @property
    def low_confidence(self) -> bool:
        """Return whether any dose was recognised from text only."""
        return any(is_text_match(d) for d in self.doses)


def gcsf_windows(record: PatientRecord, settings: ContextSettings) -> tuple[GcsfWindow, ...]:
    """Build G-CSF windows from doses given or ordered (not drafts, not plans), by start time.

    Long-acting dose at D: [D, D + window]; an on-body injector applied at A delivers the dose
    at D = A + delay. Daily doses are grouped into courses (a gap longer than the course gap
    starts a new one): [first, last + tail]; an administration / statement with an effective
    period (``last_dose``) of a daily product is a dose on every day from start to end, a
    long-acting product one dose at the start. A window starts at its first dose, so a dose
    after the back-pain onset never explains that pain.
    A G-CSF fact with no class is treated as long-acting (the longer window).
    """
    gcsf = settings.gcsf
    doses = sorted(
        (
            (time, m)
            for m in record.medications
            if m.drug_class is DrugClass.GCSF and usable(m, settings) and (time := m.time) is not None
        ),
        key=lambda pair: pair[0],
    )
    doses = _without_recorded_twice(doses, gcsf.same_dose_within)
    windows: list[GcsfWindow] = []
    course: list[tuple[datetime, MedicationFact]] = []

    last_of_course: list[datetime] = []  # latest dose time of the open course

    def close_course() -> None:
        if course:
            end = last_of_course[0] + gcsf.daily_tail
            windows.append(GcsfWindow(course[0][0], end, tuple(d for _, d in course)))
            course.clear()
            last_of_course.clear()

    for time, dose in doses:
        if dose.gcsf_class is GcsfClass.DAILY:
            if course and time - last_of_course[0] > gcsf.daily_course_gap:
                close_course()
            course.append((time, dose))
            last = dose.last_dose if dose.last_dose is not None and dose.last_dose > time else time
            if not last_of_course:
                last_of_course.append(last)
            elif last > last_of_course[0]:
                last_of_course[0] = last
        else:
            start = time + gcsf.on_body_injector_delay if dose.on_body_injector else time
            windows.append(GcsfWindow(start, start + gcsf.long_acting_window, (dose,)))
    close_course()
    return tuple(sorted(windows, key=lambda w: w.start))


def _without_recorded_twice(
    doses: list[tuple[datetime, MedicationFact]], within: timedelta
) -> list[tuple[datetime, MedicationFact]]:
    """Drop long-acting G-CSF orders that are the same dose as an administration or statement
    within ``within`` of them (the order, then what was given: one dose, one window, and the
    card says "given"). Daily doses are grouped into courses anyway."""
    given = [
        t for t, m in doses
        if m.gcsf_class is not GcsfClass.DAILY and m.source is not MedicationSource.REQUEST
    ]
    return [
        (t, m) for t, m in doses
        if not (
            m.source is MedicationSource.REQUEST
            and m.gcsf_class is not GcsfClass.DAILY
            and any(abs(t - g) <= within for g in given)
        )
    ]


def window_at(windows: tuple[GcsfWindow, ...], time: datetime) -> GcsfWindow | None:
    """Return the latest-starting window containing ``time``, if any."""
    hits = [w for w in windows if w.contains(time)]
    return hits[-1] if hits else None


def longest_consecutive_run(windows: tuple[GcsfWindow, ...], times: list[datetime]) -> list[GcsfWindow]:
    """Return the longest run of consecutive windows (by start) that each hold one of ``times``."""
    best: list[GcsfWindow] = []
    run: list[GcsfWindow] = []
    for window in windows:
        if any(window.contains(t) for t in times):
            run.append(window)
            if len(run) > len(best):
                best = list(run)
        else:
            run = []
    return best


# -- NSAID safety (R4) -----------------------------------------------------------------------


@dataclass(frozen=True)
class NsaidSafety:
    """Whether NSAID advice may be given, and the concerns behind the answer."""

    safe: bool
    concerns: tuple[Reason, ...]  #: reasons NSAIDs are unsafe (or, when safe, unchecked)
    unchecked: bool  #: safe, but a platelet count or eGFR is missing from the lookback
    kinds: tuple[str, ...] = ()  #: which concerns apply: "platelets", "egfr", "anticoagulant"

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the references behind the concerns."""
        return tuple(c.ref for c in self.concerns if c.ref)


def _latest_lab(
    labs: tuple[LabResult, ...], kind: LabKind, now: datetime, lookback: timedelta
) -> LabResult | None:
    recent = [lab for lab in labs if lab.kind is kind and within(lab.time, now, lookback)]
    return max(recent, key=lambda lab: lab.time) if recent else None


def active_anticoagulants(
    record: PatientRecord, now: datetime, settings: ContextSettings
) -> tuple[MedicationFact, ...]:
    """Return anticoagulant requests/statements that are active: status active and authored in
    the lookback, or with a validity period that has not ended."""
    lookback = settings.nsaid.anticoagulant_lookback
    return tuple(
        m
        for m in record.medications
        if m.drug_class is DrugClass.ANTICOAGULANT
        and m.source in (MedicationSource.REQUEST, MedicationSource.STATEMENT)
        and m.status == "active"
        and (within(m.time, now, lookback) or (m.end is not None and m.end >= now))
    )


def nsaid_safety(record: PatientRecord, now: datetime, settings: ContextSettings) -> NsaidSafety:
    """Apply R4: unsafe when the latest platelet count or eGFR in the lookback is below its
    cut-off, or an anticoagulant is active."""
    limits = settings.nsaid
    concerns: list[Reason] = []
    unsafe = False
    checks = (
        (LabKind.PLATELETS, limits.platelets_below, "Platelets", "×10⁹/L"),
        (LabKind.EGFR, limits.egfr_below, "eGFR", "mL/min/1.73 m²"),
    )
    missing = []
    kinds: list[str] = []
    for kind, below, name, unit in checks:
        lab = _latest_lab(record.labs, kind, now, limits.lab_lookback)
        if lab is None and kind is LabKind.EGFR:
            lab = computed_egfr(record, now, settings)
        if lab is None:
            missing.append(name)
        elif lab.value < below:
            unsafe = True
            kinds.append(kind.value)
            value = f"{lab.value:.0f} {unit}, computed from creatinine (CKD-EPI 2021)" if lab.computed else f"{lab.value:g} {unit}"
            text = f"{name} {value} on {day_text(lab.time)} (below {below:g})"
            concerns.append(Reason(text, lab.ref))
    for med in active_anticoagulants(record, now, settings):
        unsafe = True
        if "anticoagulant" not in kinds:
            kinds.append("anticoagulant")
        concerns.append(Reason(f"Active anticoagulant: {med.label or 'anticoagulant'}", med.ref))
    if not unsafe:
        days = whole_days(limits.lab_lookback)
        concerns.extend(Reason(f"No {name} result in the last {days} days") for name in missing)
    return NsaidSafety(
        safe=not unsafe, concerns=tuple(concerns), unchecked=not unsafe and bool(missing), kinds=tuple(kinds)
    )


def computed_egfr(record: PatientRecord, now: datetime, settings: ContextSettings) -> LabResult | None:
    """eGFR from the latest serum creatinine in the lookback (race-free CKD-EPI 2021), when the
    patient's birth date and administrative sex are known and the constants are configured."""
    constants = settings.nsaid.ckd_epi
    if constants is None or record.birth_date is None or record.sex not in ("female", "male"):
        return None
    creatinine = _latest_lab(record.labs, LabKind.CREATININE, now, settings.nsaid.lab_lookback)
    if creatinine is None or creatinine.value <= 0:
        return None
    age = age_in_years(record.birth_date, creatinine.time)
    if age < 18:
        return None
    value = ckd_epi_2021(creatinine.value, age, female=record.sex == "female", constants=constants)
    return LabResult(ref=creatinine.ref, kind=LabKind.EGFR, time=creatinine.time, value=value, computed=True)


def nsaid_advice(safety: NsaidSafety, texts: Mapping[str, str]) -> str:
    """Return the configured NSAID advice text for this safety result."""
    if not safety.safe:
        return texts["nsaid_advice_unsafe"]
    return texts["nsaid_advice_unchecked" if safety.unchecked else "nsaid_advice_safe"]


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

