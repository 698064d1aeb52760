"""ServiceRequest / ImagingStudy / DiagnosticReport -> :class:`ImagingFact` (spine MRI, bone scan).

ServiceRequest and DiagnosticReport count only when coded in an imaging value set (a false
"already imaged" would suppress an imaging suggestion, so no text guessing there). ImagingStudy
also counts by ``procedureCode``, by ``description`` text, or by a configured modality (MR)
together with a spine body site on one of its series.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping
from datetime import datetime

from assessment.facts import ImagingFact, ImagingKind

from .matcher import Code, Matcher
from .times import parse_fhir_datetime

__all__ = ["IMAGING_TYPES", "imaging_fact"]

Json = Mapping[str, t.Any]

IMAGING_TYPES = frozenset({"ServiceRequest", "ImagingStudy", "DiagnosticReport"})


def imaging_fact(resource: Json, ref: str, matcher: Matcher) -> ImagingFact | None:
    """Return the imaging fact of one resource, or None."""
    rtype = resource["resourceType"]
    status = resource.get("status")
    if status in matcher.config.status_skip.get(rtype, ()):
        return None
    kind: ImagingKind | None
    time: datetime | None
    if rtype == "ImagingStudy":
        codes = [c for concept in resource.get("procedureCode") or () for c in matcher.codes_of(concept)]
        kind = _kind(codes, matcher) or _study_kind(resource, matcher)
        time = parse_fhir_datetime(resource.get("started"))
    else:
        concept = resource.get("code")
        info = matcher.concept_info(concept)  # None: not plain JSON, read it the general way
        kind = info.imaging if info is not None else _kind(matcher.codes_of(concept), matcher)
        if rtype == "ServiceRequest":
            time = (
                parse_fhir_datetime(resource.get("occurrenceDateTime"))
                or parse_fhir_datetime((resource.get("occurrencePeriod") or {}).get("start"))
                or parse_fhir_datetime(resource.get("authoredOn"))
            )
        else:
            time = (
                parse_fhir_datetime(resource.get("effectiveDateTime"))
                or parse_fhir_datetime((resource.get("effectivePeriod") or {}).get("start"))
                or parse_fhir_datetime(resource.get("issued"))
            )
    if kind is None:
        return None
    return ImagingFact(ref=ref, kind=kind, time=time, status=str(status or ""))


def _kind(codes: Iterable[Code], matcher: Matcher) -> ImagingKind | None:
    for code in codes:
        kind = matcher.imaging_by_code.get(code)
        if kind is not None:
            return kind
    return None


def _study_kind(resource: Json, matcher: Matcher) -> ImagingKind | None:
    description = resource.get("description")
    texts = [description] if isinstance(description, str) and description else []
    texts += [txt for concept in resource.get("procedureCode") or () if isinstance(txt := concept.get("text"), str)]
    kind = matcher.patterns.imaging_kind(texts)
    if kind is not None:
        return kind
    modalities = {m.get("code", "").upper() for m in resource.get("modality") or ()}
    for series in resource.get("series") or ():
        modality = (series.get("modality") or {}).get("code", "").upper()
        body = series.get("bodySite")
        body_code = matcher.code_of(body) if isinstance(body, Mapping) else None
        for rule, body_codes in matcher.imaging_body:
            if (modality in rule.modalities or modalities & rule.modalities) and body_code in body_codes:
                return rule.kind
    return None
