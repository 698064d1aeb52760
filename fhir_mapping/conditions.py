"""Condition -> :class:`ClinicalFact` (one per kind the code means, else its text names).

Generalised weakness (M62.81, R53.1) is a limb red flag only with a lower-limb body site or a
text naming the legs (CLINICAL.md *Red flag*)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from assessment.facts import ClinicalFact, ClinicalKind, Confidence

from . import clinical_text
from .matcher import ConceptInfo, Matcher
from .times import parse_fhir_datetime

__all__ = ["condition_facts"]

Json = Mapping[str, t.Any]


def condition_facts(resource: Json, ref: str, matcher: Matcher) -> list[ClinicalFact]:
    """Return the facts of one Condition; none if refuted, entered-in-error or not a tracked kind."""
    skip = matcher.condition_status_skip
    verification = resource.get("verificationStatus") or {}
    if any(coding.get("code") in skip for coding in verification.get("coding") or ()):
        return []
    concept = resource.get("code")
    info = matcher.concept_info(concept)
    info = info if info is not None else ConceptInfo(matcher, concept)  # not plain JSON: uncached
    codes = list(info.codes)
    texts = list(info.texts)
    if info.kinds:
        kinds = list(info.kinds)
        confidence = Confidence.CODED
    elif info.weakness and matcher.limb_weakness(codes, resource.get("bodySite") or (), texts):
        kinds = [ClinicalKind.RED_FLAG_NEURO]  # generalised weakness of the legs
        confidence = Confidence.CODED
    elif info.text_kinds:
        kinds = list(info.text_kinds)
        confidence = Confidence.TEXT
    else:
        return []
    status = next(
        (c["code"] for c in (resource.get("clinicalStatus") or {}).get("coding") or () if c.get("code")), "active"
    )
    if not isinstance(status, str):
        raise TypeError("clinicalStatus code must be a string")
    recorded = parse_fhir_datetime(resource.get("recordedDate"))
    onset = parse_fhir_datetime(resource.get("onsetDateTime")) or parse_fhir_datetime(
        (resource.get("onsetPeriod") or {}).get("start")
    )
    site = matcher.site_of(codes, resource.get("bodySite") or (), texts)
    label = clinical_text.excerpt(texts[0], matcher.text_findings) if texts else ""
    return [
        ClinicalFact(
            ref=ref,
            kind=kind,
            time=onset or recorded,
            recorded=recorded,
            status=status,
            site=site,
            confidence=confidence,
            label=label,
        )
        for kind in kinds
    ]
