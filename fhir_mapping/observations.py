"""Observation -> :class:`PainScore`, :class:`LabResult` or present-finding :class:`ClinicalFact`.

Status policy (statuses in ``[status_skip] Observation`` of matching.toml drop the resource):
cancelled, entered-in-error and registered (no result yet) give nothing; final, amended,
corrected and preliminary are used (a preliminary red flag is still a red flag); unknown is used.

A finding Observation is one whose code is in a clinical value set, or whose
``valueCodeableConcept`` is (e.g. a generic "symptom" code with a red-flag SNOMED value), or
whose text names a finding. It is *present* unless negated: ``valueBoolean`` false, a value
coded or worded as absent / negative / no, a negative ``interpretation``, or a
``dataAbsentReason`` (not known to be present). Negated findings produce no fact.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from assessment.facts import ClinicalFact, ClinicalKind, Confidence, LabResult, PainScore

from .matchconfig import LabRule, normalise_unit
from .matcher import PAIN, Code, Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["ObservationFacts", "observation_facts"]

Json = Mapping[str, t.Any]


@dataclass(frozen=True, slots=True)
class ObservationFacts:
    """What one Observation gave (at most one of the three kinds)."""

    clinical: tuple[ClinicalFact, ...] = ()
    pain_score: PainScore | None = None
    lab: LabResult | None = None


_NOTHING = ObservationFacts()


def observation_facts(resource: Json, ref: str, matcher: Matcher) -> ObservationFacts:
    """Return the facts one Observation gives (usually nothing)."""
    if resource.get("status") in matcher.observation_status_skip:
        return _NOTHING
    # Fast path: the code (and value) concepts are plain JSON, so what they give is cached
    # per distinct concept (a record repeats a few codes thousands of times). It follows
    # _observation_facts step by step; anything else goes there.
    info = matcher.concept_info(resource.get("code"))
    if info is None:
        return _observation_facts(resource, ref, matcher)
    if info.plain and not resource.get("valueCodeableConcept") and not isinstance(resource.get("valueString"), str):
        return _NOTHING  # neither the code nor a value can name anything (vital signs, most labs)
    first = info.first
    if first is not None:
        if first is PAIN:
            score = _pain_score(resource, ref, matcher)
            return ObservationFacts(pain_score=score) if score is not None else _NOTHING
        result = _lab(resource, ref, first)  # type: ignore[arg-type]
        return ObservationFacts(lab=result) if result is not None else _NOTHING
    if info.kinds:
        if _negated_value(resource, matcher) or _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(
            resource, ref, matcher, list(info.kinds), list(info.codes), list(info.texts), Confidence.CODED
        )
    value_info = matcher.concept_info(resource.get("valueCodeableConcept"))
    if value_info is None:
        return _observation_facts(resource, ref, matcher)
    if value_info.kinds:
        if _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(
            resource, ref, matcher, list(value_info.kinds), list(value_info.codes), list(value_info.texts),
            Confidence.CODED,
        )
    if info.text_kinds:
        if _negated_value(resource, matcher) or _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(
            resource, ref, matcher, list(info.text_kinds), list(info.codes), list(info.texts), Confidence.TEXT
        )
    value_string = resource.get("valueString")
    if not value_info.texts and not isinstance(value_string, str):
        return _NOTHING  # no text left to match (vital signs, most labs)
    value_texts = list(value_info.texts)
    if isinstance(value_string, str):
        value_texts.append(value_string)
    kinds = matcher.clinical_kinds_from_text(value_texts)
    if kinds and not _negative_interpretation(resource, matcher):
        return _clinical(resource, ref, matcher, kinds, list(value_info.codes), value_texts, Confidence.TEXT)
    return _NOTHING


def _observation_facts(resource: Json, ref: str, matcher: Matcher) -> ObservationFacts:
    """The general path of :func:`observation_facts` (after the status check), for any shape."""
    concept = resource.get("code")
    codes = matcher.codes_of(concept)
    for code in codes:
        if code in matcher.pain_codes:
            score = _pain_score(resource, ref, matcher)
            return ObservationFacts(pain_score=score) if score is not None else _NOTHING
        lab = matcher.lab_by_code.get(code)
        if lab is not None:
            result = _lab(resource, ref, lab)
            return ObservationFacts(lab=result) if result is not None else _NOTHING
    kinds = list(matcher.clinical_kinds(codes))
    if kinds:
        if _negated_value(resource, matcher) or _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(resource, ref, matcher, kinds, codes, list(texts_of(concept)), Confidence.CODED)
    value = resource.get("valueCodeableConcept")
    value_codes = matcher.codes_of(value)
    kinds = list(matcher.clinical_kinds(value_codes))
    if kinds:  # the value is the finding (e.g. code "symptom", value "urinary retention")
        if _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(resource, ref, matcher, kinds, value_codes, list(texts_of(value)), Confidence.CODED)
    # text fallback: the code names the finding (the value must not negate it), or the value does
    code_texts = list(texts_of(concept))
    kinds = matcher.clinical_kinds_from_text(code_texts)
    if kinds:
        if _negated_value(resource, matcher) or _negative_interpretation(resource, matcher):
            return _NOTHING
        return _clinical(resource, ref, matcher, kinds, codes, code_texts, Confidence.TEXT)
    value_texts = list(texts_of(value))
    if isinstance(resource.get("valueString"), str):
        value_texts.append(resource["valueString"])
    kinds = matcher.clinical_kinds_from_text(value_texts)
    if kinds and not _negative_interpretation(resource, matcher):
        return _clinical(resource, ref, matcher, kinds, value_codes, value_texts, Confidence.TEXT)
    return _NOTHING


def _clinical(
    resource: Json,
    ref: str,
    matcher: Matcher,
    kinds: Iterable[ClinicalKind],
    codes: list[Code],
    texts: list[str],
    confidence: Confidence,
) -> ObservationFacts:
    body = resource.get("bodySite")
    site = matcher.site_of(codes, [body] if body else (), texts)
    label = texts[0] if texts else ""
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
    )


def _effective(resource: Json) -> datetime | None:
    return (
        parse_fhir_datetime(resource.get("effectiveDateTime"))
        or parse_fhir_datetime((resource.get("effectivePeriod") or {}).get("start"))
        or parse_fhir_datetime(resource.get("effectiveInstant"))
    )


def _negated_value(resource: Json, matcher: Matcher) -> bool:
    config = matcher.config
    if resource.get("valueBoolean") is False:
        return True
    value = resource.get("valueCodeableConcept")
    if value:
        if any(code in config.negation_value_codes for code in matcher.codes_of(value)):
            return True
        pattern = config.negation_value_text
        if pattern is not None and any(pattern.match(text) for text in texts_of(value)):
            return True
    text = resource.get("valueString")
    if isinstance(text, str) and config.negation_value_text is not None and config.negation_value_text.match(text):
        return True
    return "dataAbsentReason" in resource and not any(key.startswith("value") for key in resource)


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


def _pain_score(resource: Json, ref: str, matcher: Matcher) -> PainScore | None:
    time = _effective(resource) or parse_fhir_datetime(resource.get("issued"))
    value, quantity = _number(resource)
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
