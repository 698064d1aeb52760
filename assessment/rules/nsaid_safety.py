"""NSAID safety (rule R4): platelets, eGFR (reported, or computed from creatinine) and active
anticoagulants decide whether NSAID advice may be given.

Pure, like ``concepts``: facts + ``now`` + settings in, a frozen answer out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.config import ContextSettings
from assessment.egfr import age_in_years, ckd_epi_2021
from assessment.facts import DrugClass, LabKind, LabResult, MedicationFact, MedicationSource, PatientRecord
from assessment.findings import Reason
from assessment.rules.concepts import day_text, whole_days, within


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
