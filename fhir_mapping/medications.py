"""MedicationRequest / MedicationAdministration / MedicationStatement -> :class:`MedicationFact`.

The drug is read from ``medicationCodeableConcept`` or from the Medication that
``medicationReference`` points to: a contained one (``#id``) or one in the same resource list
(``Medication/id``, also as the tail of an absolute URL). Codings of ``Medication.code`` and of
``Medication.ingredient[].itemCodeableConcept`` count; so do their texts for the text fallback.

Dose time (CLINICAL.md *G-CSF window*), for G-CSF: MedicationRequest
``dosageInstruction.timing.event`` (first; the last one is ``last_dose``), else
``timing.repeat.boundsPeriod.start``, else ``dispenseRequest.validityPeriod.start``, else
``authoredOn`` — a request authored on 5 June for a dose on 12 June is a dose on 12 June.
MedicationAdministration / MedicationStatement: ``effective[x]``; an ``effectivePeriod`` end is
the course's ``last_dose`` (the rules use it for daily products only). Other drug classes keep
the order time (``authoredOn`` first): "chemotherapy ordered in the last 90 days" is about when
it was ordered. A request's ``end`` is the validity / bounds end (active anticoagulant check).

A medication resource that matches no drug class but carries codes only in systems the value
sets do not use (e.g. NDC) and no drug name is reported through ``unreadable`` (NDC-only data
cannot be checked: no machine-readable NDC source exists here, CODES_2026-12.md §7).
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from datetime import datetime

from assessment.facts import ClinicalKind, DrugClass, MedicationFact, MedicationSource

from .matcher import Code, Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["MEDICATION_SOURCES", "medication_fact"]

_CANCER = (ClinicalKind.CANCER, ClinicalKind.BONE_METASTASIS)

Json = Mapping[str, t.Any]

#: resource types this module reads, and the fact source each gives (outside draftOrders)
MEDICATION_SOURCES: Mapping[str, MedicationSource] = {
    "MedicationRequest": MedicationSource.REQUEST,
    "MedicationAdministration": MedicationSource.ADMINISTRATION,
    "MedicationStatement": MedicationSource.STATEMENT,
}


def medication_fact(
    resource: Json,
    ref: str,
    source: MedicationSource,
    matcher: Matcher,
    medications: Mapping[str, Json],
    *,
    selected: bool = False,
    unreadable: list[str] | None = None,
) -> MedicationFact | None:
    """Return the fact for one medication resource, or None if it is not a tracked drug.

    :param medications: Medication resources of the record by id, for ``Medication/<id>``.
    :param unreadable: when given, the ref of an unmatched resource coded only in systems we
        cannot read (no drug name either) is appended to it.
    """
    rtype = resource["resourceType"]
    if resource.get("status") in matcher.config.status_skip.get(rtype, ()):
        return None
    if resource.get("doNotPerform") is True:
        return None
    codes, texts = _drug_codes_and_texts(resource, medications, matcher)
    dosage_texts = [d["text"] for d in _dosages(resource) if isinstance(d.get("text"), str)]
    match = matcher.classify_drug(codes, texts, dosage_texts)
    if match is None:
        if unreadable is not None and codes and not texts and not _readable_systems(matcher).intersection(
            system for system, _ in codes
        ):
            unreadable.append(ref)
        return None
    gcsf = match.rule.drug_class is DrugClass.GCSF
    time, end, last = _times(resource, rtype, dose_time=gcsf)
    dual_use = match.rule.requires_malignancy
    reason_refs, reason_malignant = _reasons(resource, matcher) if dual_use else ((), False)
    return MedicationFact(
        ref=ref,
        drug_class=match.rule.drug_class,
        source=source,
        status=str(resource.get("status") or ""),
        time=time,
        end=end,
        gcsf_class=match.gcsf_class,
        confidence=match.confidence,
        label=match.label,
        intent=resource.get("intent") if rtype == "MedicationRequest" else None,
        on_body_injector=match.on_body_injector,
        selected=selected,
        last_dose=last,
        requires_malignancy=dual_use,
        reason_refs=reason_refs,
        reason_malignant=reason_malignant,
        coded=bool(codes),
        codes=tuple(dict.fromkeys(codes)),
    )


_READABLE: dict[int, tuple[Matcher, frozenset[str]]] = {}


def _readable_systems(matcher: Matcher) -> frozenset[str]:
    """Code systems in which a drug can be recognised (value-set systems and ATC), per matcher."""
    hit = _READABLE.get(id(matcher))
    if hit is not None and hit[0] is matcher:
        return hit[1]
    systems = frozenset({system for system, _ in matcher.drug_by_code} | {matcher.atc_system})
    if len(_READABLE) >= 8:
        _READABLE.pop(next(iter(_READABLE)))
    _READABLE[id(matcher)] = (matcher, systems)
    return systems


def _reasons(resource: Json, matcher: Matcher) -> tuple[tuple[str, ...], bool]:
    """reasonReference targets (``Type/id``) and whether a reasonCode names a malignancy."""
    refs: list[str] = []
    malignant = False
    concepts = list(resource.get("reasonCode") or ())
    references = list(resource.get("reasonReference") or ())
    for reason in resource.get("reason") or ():  # R5 CodeableReference, tolerated
        if isinstance(reason, Mapping):
            if reason.get("concept"):
                concepts.append(reason["concept"])
            if reason.get("reference"):
                references.append(reason["reference"])
    for concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        kinds = matcher.clinical_kinds(matcher.codes_of(concept))
        if any(kind in kinds for kind in _CANCER) or any(
            kind in _CANCER for kind in matcher.clinical_kinds_from_text(list(texts_of(concept)))
        ):
            malignant = True
    for reference in references:
        value = reference.get("reference") if isinstance(reference, Mapping) else None
        if isinstance(value, str):
            parts = [part for part in value.split("/") if part]
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            if len(parts) >= 2:
                refs.append(f"{parts[-2]}/{parts[-1]}")
    return tuple(refs), malignant


def _drug_codes_and_texts(resource: Json, medications: Mapping[str, Json], matcher: Matcher) -> tuple[list[Code], list[str]]:
    concepts: list[Json] = []
    concept = resource.get("medicationCodeableConcept")
    reference = (resource.get("medicationReference") or {}).get("reference")
    medication = resource.get("medication")  # R5 CodeableReference, tolerated
    if isinstance(medication, Mapping):
        concept = concept or medication.get("concept")
        reference = reference or (medication.get("reference") or {}).get("reference")
    if concept:
        concepts.append(concept)
    if isinstance(reference, str):
        target = _resolve(reference, resource, medications)
        if target is not None:
            if target.get("code"):
                concepts.append(target["code"])
            for ingredient in target.get("ingredient") or ():
                item = ingredient.get("itemCodeableConcept") or (ingredient.get("item") or {}).get("concept")
                if item:
                    concepts.append(item)
    codes: list[Code] = []
    texts: list[str] = []
    for c in concepts:
        codes.extend(matcher.codes_of(c))
        texts.extend(texts_of(c))
    display = (resource.get("medicationReference") or {}).get("display")
    if isinstance(display, str) and display:
        texts.append(display)
    return codes, texts


def _resolve(reference: str, resource: Json, medications: Mapping[str, Json]) -> Json | None:
    if reference.startswith("#"):
        wanted = reference[1:]
        for contained in resource.get("contained") or ():
            if contained.get("id") == wanted and contained.get("resourceType") == "Medication":
                return contained
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Medication":
        return medications.get(parts[-1])
    return None


def _dosages(resource: Json) -> list[Json]:
    dosage = resource.get("dosageInstruction") or resource.get("dosage") or []
    if isinstance(dosage, Mapping):  # MedicationAdministration.dosage is a single element
        return [dosage]
    return [d for d in dosage if isinstance(d, Mapping)]


def _times(resource: Json, rtype: str, *, dose_time: bool) -> tuple[datetime | None, datetime | None, datetime | None]:
    """Return (time, end, last_dose); see the module docstring for the order of the fields."""
    if rtype == "MedicationRequest":
        validity = (resource.get("dispenseRequest") or {}).get("validityPeriod") or {}
        authored = parse_fhir_datetime(resource.get("authoredOn"))
        events: list[datetime] = []
        bounds_start = bounds_end = None
        for dosage in _dosages(resource):
            timing = dosage.get("timing") or {}
            for event in timing.get("event") or ():
                parsed = parse_fhir_datetime(event)
                if parsed is not None:
                    events.append(parsed)
            bounds = (timing.get("repeat") or {}).get("boundsPeriod") or {}
            if bounds_start is None:
                bounds_start = parse_fhir_datetime(bounds.get("start"))
            if bounds_end is None:
                bounds_end = parse_fhir_datetime(bounds.get("end"))
        end = parse_fhir_datetime(validity.get("end")) or bounds_end
        if not dose_time:
            return authored or bounds_start, end, None
        if events:
            first_event, last_event = min(events), max(events)
            return first_event, end, (last_event if last_event != first_event else None)
        start = bounds_start or parse_fhir_datetime(validity.get("start")) or authored
        return start, end, None
    period = resource.get("effectivePeriod") or {}
    start = parse_fhir_datetime(resource.get("effectiveDateTime")) or parse_fhir_datetime(period.get("start"))
    if start is None and rtype == "MedicationStatement":
        start = parse_fhir_datetime(resource.get("dateAsserted"))
    end = parse_fhir_datetime(period.get("end"))
    last = end if (start is not None and end is not None and end > start) else None
    return start, end, last
