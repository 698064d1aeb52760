"""Condition -> :class:`ClinicalFact` (one per kind the code means)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from assessment.facts import ClinicalFact, Confidence

from .matcher import Matcher, texts_of
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
    if info is not None:  # plain JSON concept: cached, same result as the general path below
        if not info.kinds and not info.text_kinds:
            return []
        codes = list(info.codes)
        texts = list(info.texts)
        if info.kinds:
            kinds = list(info.kinds)
            confidence = Confidence.CODED
        else:
            kinds = list(info.text_kinds)
            confidence = Confidence.TEXT
    else:
        codes = matcher.codes_of(concept)
        kinds = list(matcher.clinical_kinds(codes))
        texts = list(texts_of(concept))
        confidence = Confidence.CODED
        if not kinds:
            kinds = matcher.clinical_kinds_from_text(texts)
            confidence = Confidence.TEXT
            if not kinds:
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
    label = texts[0] if texts else ""
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
