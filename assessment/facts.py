"""Typed clinical facts: what fhir_mapping extracts from FHIR and assessment reasons over.

Every fact keeps the FHIR reference (``Type/id``) it came from, so a finding can cite its
evidence. Times are timezone-aware :class:`datetime` values (UTC when the source had no zone).
fhir_mapping has already dropped what is *not present*: entered-in-error and refuted resources,
cancelled observations, negated findings. What remains may still be inactive (``status``
says so) because some rules look at past episodes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

#: The zone of a time recorded as a date only (``2025-03-07``): read as UTC midnight, but its
#: hour is unknown, so its calendar day is taken as written (``assessment.rules.concepts.
#: calendar_days``): pain recorded on 7 March is day 1 after a dose on 6 March at 10:00-05:00.
DATE_ONLY = timezone(timedelta(0), "date")


class Confidence(str, enum.Enum):
    """How a fact was recognised."""

    CODED = "coded"  #: a coding matched a value set
    TEXT = "text"  #: only free text matched (lower confidence; cards say so)


class DrugClass(str, enum.Enum):
    """Drug classes the rules care about."""

    GCSF = "gcsf"
    CHEMOTHERAPY = "chemotherapy"
    NSAID = "nsaid"
    ANTICOAGULANT = "anticoagulant"


class GcsfClass(str, enum.Enum):
    """G-CSF dosing class; it sets the attribution window."""

    LONG_ACTING = "long-acting"  #: once per cycle (pegfilgrastim and the like)
    DAILY = "daily"  #: daily injections (filgrastim and the like)


class MedicationSource(str, enum.Enum):
    """Which FHIR resource a medication fact came from."""

    ADMINISTRATION = "administration"  #: MedicationAdministration: a dose given
    REQUEST = "request"  #: MedicationRequest (not a draft order of this hook call)
    STATEMENT = "statement"  #: MedicationStatement
    DRAFT_ORDER = "draft-order"  #: a draft order in an order-select / order-sign call


@dataclass(frozen=True, slots=True)
class MedicationFact:
    """One medication resource that matched a drug class."""

    ref: str
    drug_class: DrugClass
    source: MedicationSource
    status: str  #: the resource's status as sent (active, completed, draft, ...)
    time: datetime | None  #: dose time: effective[x] start, else authoredOn / bounds start
    end: datetime | None = None  #: end of effective period / validity / bounds, if any
    gcsf_class: GcsfClass | None = None  #: set for DrugClass.GCSF
    confidence: Confidence = Confidence.CODED
    label: str = ""  #: display name for cards, e.g. "pegfilgrastim"
    intent: str | None = None  #: MedicationRequest.intent ("plan" = planned only)
    on_body_injector: bool = False  #: Onpro-style kit: dose lands about a day later
    selected: bool = False  #: draft order named in order-select ``selections``
    #: last dose of a course: end of an administration/statement effectivePeriod, or the last
    #: ``timing.event`` of a request (None: one dose at ``time``)
    last_dose: datetime | None = None
    #: dual-use antineoplastic (methotrexate, cyclophosphamide, rituximab): chemotherapy evidence
    #: only with a malignant cancer Condition or a malignant reason
    requires_malignancy: bool = False
    reason_refs: tuple[str, ...] = ()  #: ``Type/id`` of reasonReference targets
    reason_malignant: bool = False  #: a reasonCode names a malignancy
    coded: bool = False  #: the resource carried a drug code (even one outside the value sets)
    #: the drug's codings (system, code), system URIs normalised: the differential names the
    #: agent from them (e.g. paclitaxel's RxNorm ingredient code)
    codes: tuple[tuple[str, str], ...] = ()

    @property
    def verb(self) -> str:
        """What the record says happened, for card texts (CLINICAL.md: cards say what the
        record says): "given" for a completed administration, "ordered" for a request (whatever
        its status), "recorded" for a statement or an administration not completed -- also one
        with no status: the record does not say it was completed."""
        if self.source is MedicationSource.ADMINISTRATION:
            return "given" if self.status == "completed" else "recorded"
        if self.source is MedicationSource.REQUEST:
            return "ordered"
        if self.source is MedicationSource.DRAFT_ORDER:
            return "drafted"
        return "recorded"


class ClinicalKind(str, enum.Enum):
    """Kinds of problem or finding (Condition or Observation) the rules use."""

    CANCER = "cancer"  #: malignant neoplasm (primary or secondary)
    BONE_METASTASIS = "bone-metastasis"  #: secondary malignant neoplasm of bone / spine
    BACK_PAIN = "back-pain"  #: back / spine / bone pain
    RED_FLAG_NEURO = "red-flag-neurological"  #: numbness, weakness, gait, saddle anaesthesia
    RED_FLAG_SPHINCTER = "red-flag-bladder-bowel"  #: retention, incontinence
    MSCC = "mscc"  #: cord compression or cauda equina diagnosis


class SpineSite(str, enum.Enum):
    """Where along the spine a pain is."""

    CERVICAL = "cervical"
    THORACIC = "thoracic"
    LUMBAR = "lumbar"
    SPINE = "spine"  #: spine or back, level not given


@dataclass(frozen=True, slots=True)
class ClinicalFact:
    """A Condition or a present finding Observation of one :class:`ClinicalKind`."""

    ref: str
    kind: ClinicalKind
    time: datetime | None  #: onset[x], else recordedDate (Condition); effective (Observation)
    recorded: datetime | None = None  #: Condition.recordedDate / Observation.issued
    status: str = "active"  #: Condition clinicalStatus code; "present" for an Observation
    site: SpineSite | None = None
    confidence: Confidence = Confidence.CODED
    label: str = ""


@dataclass(frozen=True, slots=True)
class PainScore:
    """A 0-10 pain severity score (VAS in mm already divided by 10)."""

    ref: str
    time: datetime
    score: float
    site: SpineSite | None = None  #: body site if it is the spine / back


class LabKind(str, enum.Enum):
    """Lab results that gate NSAID advice."""

    PLATELETS = "platelets"  #: value in 10*9/L
    EGFR = "egfr"  #: value in mL/min/{1.73_m2}
    CREATININE = "creatinine"  #: serum/plasma creatinine in mg/dL (eGFR computed from it)


@dataclass(frozen=True, slots=True)
class LabResult:
    """A numeric lab result normalised to the unit of its :class:`LabKind`."""

    ref: str
    kind: LabKind
    time: datetime
    value: float
    computed: bool = False  #: an eGFR computed from creatinine (CKD-EPI 2021), not recorded


@dataclass(frozen=True, slots=True)
class ProcedureFact:
    """Chemotherapy given (Procedure), ordered (ServiceRequest) or planned (CarePlan activity)."""

    ref: str
    time: datetime | None
    status: str = "completed"
    label: str = ""
    #: "procedure" (Procedure: given), "order" (ServiceRequest: ordered), "plan" (CarePlan activity)
    source: str = "procedure"
    end: datetime | None = None  #: end of the ordered / planned period, if any


class ImagingKind(str, enum.Enum):
    """Spine imaging that answers the imaging recommendation."""

    SPINE_MRI = "spine-mri"
    BONE_SCAN = "bone-scan"


@dataclass(frozen=True, slots=True)
class ImagingFact:
    """Spine imaging already ordered (ServiceRequest) or done (ImagingStudy, DiagnosticReport)."""

    ref: str
    kind: ImagingKind
    time: datetime | None  #: authoredOn / occurrence / started / effective
    status: str = ""


@dataclass(frozen=True)
class PatientRecord:
    """Everything the rules may look at for one patient, as typed facts."""

    patient_id: str
    medications: tuple[MedicationFact, ...] = ()
    clinical: tuple[ClinicalFact, ...] = ()
    pain_scores: tuple[PainScore, ...] = ()
    labs: tuple[LabResult, ...] = ()
    procedures: tuple[ProcedureFact, ...] = ()
    imaging: tuple[ImagingFact, ...] = ()
    draft_orders: tuple[MedicationFact, ...] = ()  #: order hooks' draftOrders that matched
    unrecognised_draft_orders: tuple[str, ...] = field(default=())  #: refs of other drafts
    #: refs of medication resources coded only in systems we cannot read (e.g. NDC), with no
    #: drug name: they could not be checked for G-CSF or chemotherapy
    unrecognised_coded_meds: tuple[str, ...] = field(default=())
    birth_date: date | None = None  #: Patient.birthDate (for eGFR from creatinine)
    sex: str | None = None  #: Patient.gender when "female" or "male" (administrative sex)
