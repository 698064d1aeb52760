"""MedicationRequest / MedicationAdministration / MedicationStatement -> :class:`MedicationFact`.

The drug is read from ``medicationCodeableConcept`` or from the Medication that
``medicationReference`` points to: a contained one (``#id``) or one in the same resource list
(``Medication/id``, also as the tail of an absolute URL). Codings of ``Medication.code`` and of
``Medication.ingredient[].itemCodeableConcept`` count; so do their texts for the text fallback.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from datetime import datetime

from assessment.facts import MedicationFact, MedicationSource

from .matcher import Code, Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["MEDICATION_SOURCES", "medication_fact"]

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
) -> MedicationFact | None:
    """Return the fact for one medication resource, or None if it is not a tracked drug.

    :param medications: Medication resources of the record by id, for ``Medication/<id>``.
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
        return None
    time, end = _times(resource, rtype)
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
    )


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


def _times(resource: Json, rtype: str) -> tuple[datetime | None, datetime | None]:
    if rtype == "MedicationRequest":
        start = parse_fhir_datetime(resource.get("authoredOn"))
        end = parse_fhir_datetime(((resource.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end"))
        for dosage in _dosages(resource):
            bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
            if start is None:
                start = parse_fhir_datetime(bounds.get("start"))
            if end is None:
                end = parse_fhir_datetime(bounds.get("end"))
        return start, end
    period = resource.get("effectivePeriod") or {}
    start = parse_fhir_datetime(resource.get("effectiveDateTime")) or parse_fhir_datetime(period.get("start"))
    if start is None and rtype == "MedicationStatement":
        start = parse_fhir_datetime(resource.get("dateAsserted"))
    return start, parse_fhir_datetime(period.get("end"))
