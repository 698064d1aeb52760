"""Raw FHIR R4 JSON (plain dicts) -> :class:`assessment.facts.PatientRecord`.

The hook path calls :func:`extract_record` on every request, so it works on plain parsed JSON,
one resource at a time: resources are pre-filtered by ``resourceType`` (Encounter, Claim,
Immunization, ... are skipped at once), deduplicated by ``Type/id``, filtered to the patient,
and classified with dict lookups built once per (value sets, matching config) pair. No
fhir.resources model is built here.
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Collection, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from assessment.facts import (
    ClinicalFact,
    ImagingFact,
    LabResult,
    MedicationFact,
    MedicationSource,
    PainScore,
    PatientRecord,
    ProcedureFact,
)

from .chemo_orders import CHEMO_ORDER_TYPES, chemotherapy_order_fact
from .conditions import condition_facts
from .imaging import IMAGING_TYPES, imaging_fact
from .matchconfig import MatchingConfig, MatchingConfigError, load_matching_config, validate_matching_config
from .matcher import matcher_for
from .medications import MEDICATION_SOURCES, medication_fact
from .observations import NO_OBSERVATION_FACTS, ObservationFacts, observation_facts
from .pain_location import PainLocation, pair_locations
from .patients import patient_demographics
from .procedures import procedure_fact
from .questionnaires import questionnaire_facts
from .valuesets import ValueSetIndex

__all__ = [
    "MatchingConfig",
    "MatchingConfigError",
    "MalformedResource",
    "extract_record",
    "load_matching_config",
    "validate_matching_config",
]

Json = Mapping[str, t.Any]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: what a wrongly typed field raises deep inside the extractors
_SHAPE_ERRORS = (TypeError, AttributeError, ValueError, KeyError, IndexError)


class MalformedResource(ValueError):
    """A resource the rules would read is not valid FHIR R4 (e.g. a field of the wrong type).

    ``ref`` names it (``Type/id``) and ``detail`` says what is wrong, as precisely as the FHIR
    R4B model can tell; both are safe to show to the caller (no values are echoed).
    """

    def __init__(self, ref: str, detail: str) -> None:
        super().__init__(f"{ref} is not valid FHIR R4: {detail}")
        self.ref = ref
        self.detail = detail

_USED_TYPES = frozenset(
    {"Condition", "Observation", "QuestionnaireResponse", "Procedure", "Medication", "Patient", *MEDICATION_SOURCES,
     *IMAGING_TYPES, *CHEMO_ORDER_TYPES}
)


def extract_record(
    resources: Iterable[dict[str, t.Any]],
    valuesets: ValueSetIndex,
    matching: MatchingConfig,
    *,
    patient_id: str,
    draft_orders: Iterable[dict[str, t.Any]] = (),
    selections: Collection[str] = (),
    check: t.Callable[[], None] | None = None,
) -> PatientRecord:
    """Return the typed facts of one patient's FHIR resources.

    :param resources: resources already flattened out of Bundles; duplicates (same ``Type/id``)
        count once, resources whose ``subject``/``patient`` names another patient are ignored.
        Iterated once, in order, and not kept (a lazy iterable is held one resource at a time).
    :param draft_orders: the order hooks' ``draftOrders`` resources; they become
        ``draft_orders`` facts (``source=DRAFT_ORDER``) or, when no tracked drug is recognised,
        ``unrecognised_draft_orders`` refs. A resource that is also a draft order is not
        reported again as an existing medication.
    :param selections: ``Type/id`` refs of the order-select ``selections``.
    :param check: a cancellation point, called before each resource; the caller's deadline
        check raises there to abandon the mapping (the exception passes through unchanged).
    """
    matcher = matcher_for(valuesets, matching)
    # Draft orders first (few): a prefetch resource that is also a draft is reported once.
    draft_medications: dict[str, Json] = {}
    drafts = list(_relevant(draft_orders, patient_id, draft_medications))
    draft_refs = {ref for ref, _ in drafts}

    # One pass, keeping no resource: each one's facts are taken as it comes, so a caller that
    # decodes resources lazily holds one at a time. The exception are medication resources
    # that name a ``Medication/<id>``, which may come later: they keep their place in
    # ``facts.meds`` and are mapped once every Medication is known.
    medications: dict[str, Json] = {}
    facts = _Facts(patient_ref=f"Patient/{patient_id}")
    add = facts.add
    waiting: list[tuple[int, str, Json]] = []
    for ref, resource in _relevant(resources, patient_id, medications):
        if check is not None:
            check()
        rtype = resource["resourceType"]
        # what _shape_errors_as_malformed does, inlined: this loop runs once per resource
        try:
            if rtype == "Observation":  # most resources; usually nothing (vital signs, other labs)
                found = observation_facts(resource, ref, matcher)
                if found is not NO_OBSERVATION_FACTS:
                    facts.add_observation(found)
            elif rtype in MEDICATION_SOURCES:
                if draft_refs and ref in draft_refs:
                    continue  # reported as a draft order below
                if _names_a_medication(resource):
                    waiting.append((len(facts.meds), ref, resource))
                    facts.meds.append(None)
                else:
                    add(ref, resource, matcher, medications)
            else:
                add(ref, resource, matcher, medications)
        except _SHAPE_ERRORS as exc:
            raise MalformedResource(ref, _first_model_error(resource) or exc.__class__.__name__) from None
    for rid, medication in draft_medications.items():
        medications.setdefault(rid, medication)
    for slot, ref, resource in waiting:
        if check is not None:
            check()
        with _shape_errors_as_malformed(ref, resource):
            facts.meds[slot] = medication_fact(
                resource, ref, MEDICATION_SOURCES[resource["resourceType"]], matcher, medications,
                unreadable=facts.unreadable,
            )
    meds = [fact for fact in facts.meds if fact is not None]

    selected = frozenset(selections)
    draft_facts: list[MedicationFact] = []
    unrecognised: list[str] = []
    for ref, resource in drafts:
        fact = None
        if resource["resourceType"] in MEDICATION_SOURCES:
            with _shape_errors_as_malformed(ref, resource):
                fact = medication_fact(
                    resource, ref, MedicationSource.DRAFT_ORDER, matcher, medications,
                    selected=ref in selected,
                )
        if fact is None:
            unrecognised.append(ref)
        else:
            draft_facts.append(fact)
    # draft resources of types we never read (ServiceRequest for a lab, ...) are unrecognised too
    unrecognised.extend(_unused_draft_refs(draft_orders, patient_id))

    return PatientRecord(
        patient_id=patient_id,
        medications=tuple(meds),
        clinical=tuple(facts.clinical),
        pain_scores=tuple(pair_locations(facts.pains, facts.locations)),
        labs=tuple(facts.labs),
        procedures=tuple(facts.procedures),
        imaging=tuple(facts.imaging),
        draft_orders=tuple(draft_facts),
        unrecognised_draft_orders=tuple(dict.fromkeys(unrecognised)),
        unrecognised_coded_meds=tuple(facts.unreadable),
        birth_date=facts.birth_date,
        sex=facts.sex,
    )


@dataclass
class _Facts:
    """The facts collected so far, one list per kind."""

    meds: list[MedicationFact | None] = field(default_factory=list)  #: None: mapped later
    clinical: list[ClinicalFact] = field(default_factory=list)
    pains: list[tuple[PainScore, str | None]] = field(default_factory=list)  #: with the score's encounter
    locations: list[PainLocation] = field(default_factory=list)  #: pain-location Observations
    labs: list[LabResult] = field(default_factory=list)
    procedures: list[ProcedureFact] = field(default_factory=list)
    imaging: list[ImagingFact] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  #: medications coded only by e.g. NDC
    patient_ref: str = ""  #: only this Patient's demographics are read
    birth_date: date | None = None  #: of the Patient (eGFR from creatinine)
    sex: str | None = None

    def add(self, ref: str, resource: Json, matcher: t.Any, medications: dict[str, Json]) -> None:
        """Append the facts of one resource to the list of its kind."""
        rtype = resource["resourceType"]
        if rtype == "Observation":
            self.add_observation(observation_facts(resource, ref, matcher))
        elif rtype == "Condition":
            self.clinical.extend(condition_facts(resource, ref, matcher))
        elif rtype == "QuestionnaireResponse":
            self.clinical.extend(questionnaire_facts(resource, ref, matcher))
        elif rtype in MEDICATION_SOURCES:
            fact = medication_fact(
                resource, ref, MEDICATION_SOURCES[rtype], matcher, medications, unreadable=self.unreadable
            )
            if fact is not None:
                self.meds.append(fact)
        elif rtype == "Patient":
            if ref == self.patient_ref:
                self.birth_date, self.sex = patient_demographics(resource)
        elif rtype == "Procedure":
            proc = procedure_fact(resource, ref, matcher)
            if proc is not None:
                self.procedures.append(proc)
        else:
            if rtype in CHEMO_ORDER_TYPES:  # chemotherapy ordered (ServiceRequest) or planned (CarePlan)
                order = chemotherapy_order_fact(resource, ref, matcher)
                if order is not None:
                    self.procedures.append(order)
                if rtype == "CarePlan":
                    return
            image = imaging_fact(resource, ref, matcher)
            if image is not None:
                self.imaging.append(image)


    def add_observation(self, found: ObservationFacts) -> None:
        """Append what one Observation gave."""
        if found.clinical:
            self.clinical.extend(found.clinical)
        if found.pain_score is not None:  # a pain panel may give both (a score and findings)
            self.pains.append((found.pain_score, found.encounter))
        if found.lab is not None:
            self.labs.append(found.lab)
        if found.location is not None:
            self.locations.append(found.location)


@contextmanager
def _shape_errors_as_malformed(ref: str, resource: Json) -> t.Iterator[None]:
    """Turn a crash on a wrongly typed field into :class:`MalformedResource` naming the field."""
    try:
        yield
    except _SHAPE_ERRORS as exc:
        raise MalformedResource(ref, _first_model_error(resource) or exc.__class__.__name__) from None


def _first_model_error(resource: Json) -> str | None:
    """Where the FHIR R4B model says the resource is wrong (only called after a failure)."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(str(resource.get("resourceType"))).model_validate(dict(resource))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        return f"{where or 'resource'}: {error.get('msg', 'invalid')}"
    except Exception:  # an unknown type or a model bug: fall back to the generic message
        return None
    return None


def _names_a_medication(resource: Json) -> bool:
    """True when a medication resource refers to a ``Medication`` (it may come later)."""
    reference = resource.get("medicationReference")
    if reference is None:
        medication = resource.get("medication")  # R5 CodeableReference, tolerated
        reference = medication.get("reference") if isinstance(medication, Mapping) else None
    return reference is not None


def _relevant(
    resources: Iterable[Json], patient_id: str, medications: dict[str, Json]
) -> t.Iterator[tuple[str, Json]]:
    """Yield (ref, resource) for used types, once per ref, of this patient; collect Medications."""
    seen: set[str] = set()
    used = _USED_TYPES
    fhir_id = _FHIR_ID.fullmatch
    # the reference that certainly names this patient (the usual case), compared before parsing
    own_ref = f"Patient/{patient_id}" if patient_id and "/" not in patient_id else None
    for resource in resources:
        if type(resource) is not dict and not isinstance(resource, Mapping):
            continue
        rtype = resource.get("resourceType")
        if rtype not in used:
            continue
        rid = resource.get("id")
        if rtype == "Medication":
            if isinstance(rid, str) and rid:
                medications.setdefault(rid, resource)
            continue
        if not isinstance(rid, str) or not fhir_id(rid):
            raise MalformedResource(str(rtype), "id is missing or not a FHIR id")
        ref = f"{rtype}/{rid}"
        if ref in seen:
            continue
        seen.add(ref)
        if patient_id:
            holder = resource.get("subject") or resource.get("patient")
            if own_ref is None or type(holder) is not dict or holder.get("reference") != own_ref:
                if _other_holder(holder, patient_id):
                    continue
        yield ref, resource


def _unused_draft_refs(draft_orders: Iterable[Json], patient_id: str) -> list[str]:
    out = []
    for resource in draft_orders:
        if not isinstance(resource, Mapping):
            continue
        rtype = resource.get("resourceType")
        if rtype in _USED_TYPES or not isinstance(rtype, str):
            continue
        if patient_id and _other_patient(resource, patient_id):
            continue
        rid = resource.get("id")
        out.append(f"{rtype}/{rid}" if rid else rtype)
    return out


def _other_patient(resource: Json, patient_id: str) -> bool:
    """Return True only when the resource's subject/patient reference names another Patient.

    References we cannot read (``urn:uuid:``, contained, identifier-only, a Group) keep the
    resource: the caller hands us one patient's data, and rewritten references are normal.
    """
    return _other_holder(resource.get("subject") or resource.get("patient"), patient_id)


def _other_holder(holder: t.Any, patient_id: str) -> bool:
    """:func:`_other_patient` for the resource's ``subject or patient`` value."""
    if type(holder) is not dict and not isinstance(holder, Mapping):
        return False
    reference = holder.get("reference")
    if not isinstance(reference, str) or "Patient/" not in reference:
        return False
    parts = reference.split("/")
    try:
        i = len(parts) - 1 - parts[::-1].index("Patient")
    except ValueError:
        return False
    if i + 1 >= len(parts):
        return False
    return parts[i + 1] != patient_id
