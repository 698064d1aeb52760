"""Procedure -> :class:`ProcedureFact` (chemotherapy administration only, coded)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from assessment.facts import ProcedureFact

from .matcher import Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["procedure_fact"]

Json = Mapping[str, t.Any]


def procedure_fact(resource: Json, ref: str, matcher: Matcher) -> ProcedureFact | None:
    """Return the fact of a chemotherapy Procedure, or None (other procedure, not done, error)."""
    status = resource.get("status")
    if status in matcher.procedure_status_skip:
        return None
    concept = resource.get("code")
    info = matcher.concept_info(concept)  # None: not plain JSON, read it the general way
    if not (info.chemo if info is not None else any(
        code in matcher.chemo_procedure_codes for code in matcher.codes_of(concept)
    )):
        return None
    time = parse_fhir_datetime(resource.get("performedDateTime")) or parse_fhir_datetime(
        (resource.get("performedPeriod") or {}).get("start")
    )
    label = next(texts_of(concept), "")
    return ProcedureFact(ref=ref, time=time, status=str(status or ""), label=label)
