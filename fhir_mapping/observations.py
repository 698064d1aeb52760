"""Observation -> :class:`PainScore`, :class:`LabResult` or present-finding :class:`ClinicalFact`.

Status policy (statuses in ``[status_skip] Observation`` of matching.toml drop the resource):
cancelled, entered-in-error and registered (no result yet) give nothing; final, amended,
corrected and preliminary are used (a preliminary red flag is still a red flag); unknown is used.

A finding Observation is one whose code is in a clinical value set, or whose
``valueCodeableConcept`` is (e.g. a generic "symptom" code with a red-flag SNOMED value), or
whose text names a finding, or one of whose components does (a panel). It is *present* unless
negated: ``valueBoolean`` false, a value coded or worded as absent / negative / no, a negative
``interpretation``, or a ``dataAbsentReason`` (not known to be present). Negated findings
produce no fact. Every text is read by the clinical-text component (through the Matcher). A
pain-location Observation ("Pain primary location: Back") gives a :class:`PainLocation`.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from assessment.facts import ClinicalFact, ClinicalKind, Confidence, LabResult, PainScore

from . import clinical_text
from .matchconfig import LabRule, normalise_unit
from .matcher import PAIN, Code, ConceptInfo, Matcher, texts_of
from .pain_location import PainLocation, component_site, encounter_of, location_site, value_texts
from .times import parse_fhir_datetime

__all__ = ["NO_OBSERVATION_FACTS", "ObservationFacts", "observation_facts"]

Json = Mapping[str, t.Any]


@dataclass(frozen=True, slots=True)
class ObservationFacts:
    """What one Observation gave (one kind, except a pain panel: a score and findings)."""

    clinical: tuple[ClinicalFact, ...] = ()
    pain_score: PainScore | None = None
    lab: LabResult | None = None
    location: PainLocation | None = None  #: a separate pain-location Observation
    encounter: str | None = None  #: the pain score's encounter (to pair it with a location)


#: What most Observations give: the one shared empty result (callers may test ``is`` against it).
NO_OBSERVATION_FACTS = ObservationFacts()


def observation_facts(resource: Json, ref: str, matcher: Matcher) -> ObservationFacts:
    """Return the facts one Observation gives (usually nothing).

    The code concept is read once per distinct concept (:meth:`Matcher.concept_info`, cached;
    a concept that is not plain JSON is read the same way, uncached, and fails where a wrongly
    typed field is). Order: pain score / lab by code; a finding by code (the value must not
    negate it); generalised weakness with a leg site; a finding by the value's code; by the
    code's text; a pain location; by the value's text; then the components.
    """
    if resource.get("status") in matcher.observation_status_skip:
        return NO_OBSERVATION_FACTS
    concept = resource.get("code")
    info = matcher.concept_info(concept) or ConceptInfo(matcher, concept)
    value = resource.get("valueCodeableConcept")
    value_string = resource.get("valueString")
    components = resource.get("component")
    if info.plain and not value and not isinstance(value_string, str) and not components:
        return NO_OBSERVATION_FACTS  # neither the code nor a value can name anything (vital signs, most labs)
    first = info.first
    if first is not None:
        if first is PAIN:
            score = _pain_score(resource, ref, matcher)
            if score is None:
                return NO_OBSERVATION_FACTS
            return ObservationFacts(pain_score=score, encounter=encounter_of(resource))
        result = _lab(resource, ref, first)  # type: ignore[arg-type]
        return ObservationFacts(lab=result) if result is not None else NO_OBSERVATION_FACTS
    found = _finding(resource, ref, matcher, info, value, value_string)
    if found is not None:
        return found
    if components:
        return _component_facts(resource, ref, matcher)
    return NO_OBSERVATION_FACTS


def _finding(
    holder: Json, ref: str, matcher: Matcher, info: ConceptInfo, value: t.Any, value_string: t.Any,
    *, resource: Json | None = None,
) -> ObservationFacts | None:
    """The finding an Observation (or one of its components, ``holder``) names, else None."""
    resource = resource if resource is not None else holder
    body = resource.get("bodySite")
    if info.kinds:
        if _negated_value(holder, matcher) or _negative_interpretation(holder, matcher):
            return NO_OBSERVATION_FACTS
        return _clinical(resource, ref, matcher, list(info.kinds), list(info.codes), list(info.texts), Confidence.CODED,
                         also=_value_kinds(holder, matcher, info.kinds))
    if info.weakness:
        if matcher.limb_weakness(info.codes, [body] if body else (), [*info.texts, *value_texts(holder)]):
            if _negated_value(holder, matcher) or _negative_interpretation(holder, matcher):
                return NO_OBSERVATION_FACTS
            return _clinical(
                resource, ref, matcher, [ClinicalKind.RED_FLAG_NEURO], list(info.codes), list(info.texts), Confidence.CODED
            )
    value_info = matcher.concept_info(value) or ConceptInfo(matcher, value)
    if value_info.kinds:
        if _negative_interpretation(holder, matcher):
            return NO_OBSERVATION_FACTS
        return _clinical(
            resource, ref, matcher, list(value_info.kinds), list(value_info.codes), list(value_info.texts), Confidence.CODED
        )
    if info.text_kinds:
        if _negated_value(holder, matcher) or _negative_interpretation(holder, matcher):
            return NO_OBSERVATION_FACTS
        return _clinical(resource, ref, matcher, list(info.text_kinds), list(info.codes), list(info.texts), Confidence.TEXT,
                         also=_value_kinds(holder, matcher, info.text_kinds))
    if holder is resource and info.texts:
        site = location_site(resource, info.texts, matcher)
        if site is not None:
            time = _effective(resource) or parse_fhir_datetime(resource.get("issued"))
            return ObservationFacts(location=PainLocation(ref, time, encounter_of(resource), site))
    vtexts = list(value_info.texts)
    if isinstance(value_string, str):
        vtexts.append(value_string)
    if not vtexts:
        return None
    kinds = matcher.clinical_kinds_from_text(vtexts)
    if kinds:
        if _negative_interpretation(holder, matcher):
            return NO_OBSERVATION_FACTS
        return _clinical(resource, ref, matcher, kinds, list(value_info.codes), vtexts, Confidence.TEXT)
    return None


def _value_kinds(holder: Json, matcher: Matcher, known: t.Iterable[ClinicalKind]) -> list[ClinicalKind]:
    """Further kinds the value text names ("Back pain" = "new weakness in both legs")."""
    texts = value_texts(holder)
    if not texts:
        return []
    return [kind for kind in matcher.clinical_kinds_from_text(texts) if kind not in known]


def _component_facts(resource: Json, ref: str, matcher: Matcher) -> ObservationFacts:
    """Findings in the components of a panel ("Neuro exam": "Leg weakness" = "Present"), and a
    pain score that is one component of a pain panel (the first such component)."""
    found: list[ClinicalFact] = []
    score: PainScore | None = None
    for component in resource.get("component") or ():
        if type(component) is not dict and not isinstance(component, Mapping):
            raise TypeError("component must be an object")
        concept = component.get("code")
        info = matcher.concept_info(concept) or ConceptInfo(matcher, concept)
        if info.first is PAIN:
            score = score or _pain_score(resource, ref, matcher, holder=component)
            continue
        value = component.get("valueCodeableConcept")
        value_string = component.get("valueString")
        if info.plain and not value and not isinstance(value_string, str):
            continue  # systolic / diastolic blood pressure and the like
        got = _finding(component, ref, matcher, info, value, value_string, resource=resource)
        if got is not None:
            found.extend(f for f in got.clinical if f not in found)
    if score is not None:
        return ObservationFacts(clinical=tuple(found), pain_score=score, encounter=encounter_of(resource))
    return ObservationFacts(clinical=tuple(found)) if found else NO_OBSERVATION_FACTS


def _clinical(
    resource: Json,
    ref: str,
    matcher: Matcher,
    kinds: Iterable[ClinicalKind],
    codes: list[Code],
    texts: list[str],
    confidence: Confidence,
    *,
    also: Iterable[ClinicalKind] = (),
) -> ObservationFacts:
    body = resource.get("bodySite")
    site = matcher.site_of(codes, [body] if body else (), texts)
    label = clinical_text.excerpt(texts[0], matcher.text_findings) if texts else ""
    time = _effective(resource)
    recorded = parse_fhir_datetime(resource.get("issued"))
    return ObservationFacts(
        clinical=tuple(
            ClinicalFact(
                ref=ref,
                kind=kind,
                time=time or recorded,
                recorded=recorded,
                status="present",
                site=site,
                confidence=confidence,
                label=label,
            )
            for kind in kinds
        )
        + tuple(  # kinds only the value's text names: text confidence
            ClinicalFact(ref=ref, kind=kind, time=time or recorded, recorded=recorded, status="present",
                         site=site, confidence=Confidence.TEXT, label=label)
            for kind in also
        )
    )


def _effective(resource: Json) -> datetime | None:
    return (
        parse_fhir_datetime(resource.get("effectiveDateTime"))
        or parse_fhir_datetime((resource.get("effectivePeriod") or {}).get("start"))
        or parse_fhir_datetime(resource.get("effectiveInstant"))
    )


def _negated_value(holder: Json, matcher: Matcher) -> bool:
    """The value says the finding named by the code is absent: valueBoolean false, a coded
    absent value, a value text meaning absent (clinical-text component), or no value at all
    with a dataAbsentReason (not known to be present)."""
    if holder.get("valueBoolean") is False:
        return True
    value = holder.get("valueCodeableConcept")
    if value:
        if any(code in matcher.config.negation_value_codes for code in matcher.codes_of(value)):
            return True
        if any(matcher.absent_value(text) for text in texts_of(value)):
            return True
    text = holder.get("valueString")
    if isinstance(text, str) and matcher.absent_value(text):
        return True
    return "dataAbsentReason" in holder and not any(key.startswith("value") for key in holder)


def _negative_interpretation(resource: Json, matcher: Matcher) -> bool:
    wanted = matcher.config.negation_interpretation_codes
    for concept in resource.get("interpretation") or ():
        for coding in concept.get("coding") or ():
            if (coding.get("system"), coding.get("code")) in wanted:
                return True
    return False


def _number(resource: Json) -> tuple[float | None, Json]:
    quantity = resource.get("valueQuantity")
    if type(quantity) is dict or isinstance(quantity, Mapping):
        value = quantity.get("value")
        return (float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None), quantity
    for key in ("valueInteger", "valueDecimal"):
        value = resource.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), {}
    return None, {}


def _pain_score(resource: Json, ref: str, matcher: Matcher, holder: Json | None = None) -> PainScore | None:
    """The pain score of an Observation, or of its component ``holder`` (a pain panel whose
    score is one component): time, body site and location come from the Observation."""
    time = _effective(resource) or parse_fhir_datetime(resource.get("issued"))
    value, quantity = _number(holder if holder is not None else resource)
    if time is None or value is None:
        return None
    factors = matcher.config.pain_unit_factors
    factor = 1.0
    for unit in (quantity.get("code"), quantity.get("unit")):
        if isinstance(unit, str) and unit:
            found = factors.get(normalise_unit(unit))
            if found is not None:
                factor = found
                break
    score = value * factor
    if not 0.0 <= score <= matcher.config.pain_score_max:
        return None
    body = resource.get("bodySite")
    site = matcher.site_of((), [body], ()) if body else None
    if site is None and resource.get("component"):
        site = component_site(resource, matcher)
    return PainScore(ref=ref, time=time, score=score, site=site)


def _lab(resource: Json, ref: str, rule: LabRule) -> LabResult | None:
    time = _effective(resource) or parse_fhir_datetime(resource.get("issued"))
    value, quantity = _number(resource)
    if time is None or value is None:
        return None
    for unit in (quantity.get("code"), quantity.get("unit")):
        if isinstance(unit, str) and unit:
            factor = rule.unit_factors.get(normalise_unit(unit))
            if factor is not None:
                return LabResult(ref=ref, kind=rule.kind, time=time, value=value * factor)
    return None  # unknown or missing unit: never guess
