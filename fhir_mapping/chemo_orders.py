"""ServiceRequest / CarePlan -> :class:`ProcedureFact`: chemotherapy ordered or planned.

CLINICAL.md operational definitions (oncology context): "chemotherapy ordered or planned: a
ServiceRequest or CarePlan activity coded or named as chemotherapy, status active or completed,
in the last 90 days". A concept counts when one of its codes is a chemotherapy procedure
(``[chemotherapy_procedure]`` value sets) or an unconditional chemotherapy drug (the drug rules
with ``drug_class = "chemotherapy"`` and no ``requires_malignancy``, incl. their ATC prefixes),
or when its text names chemotherapy (``[chemotherapy_order] text``) or an agent of such a drug
rule. The 90 days are applied by the rules (``ProcedureFact.time`` / ``end``).

Times: ServiceRequest ``authoredOn``, else ``occurrence[x]`` (start); CarePlan ``created``, else
the activity's ``detail.scheduled[x]`` start, else ``CarePlan.period.start``. ``end`` is the end
of the occurrence / scheduled / plan period (a plan still running counts).
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator, Mapping
from datetime import datetime

from assessment.facts import DrugClass, ProcedureFact

from .matcher import Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["CHEMO_ORDER_TYPES", "chemotherapy_order_fact"]

Json = Mapping[str, t.Any]

CHEMO_ORDER_TYPES = frozenset({"ServiceRequest", "CarePlan"})


def chemotherapy_order_fact(resource: Json, ref: str, matcher: Matcher) -> ProcedureFact | None:
    """Return the fact of a ServiceRequest / CarePlan that orders or plans chemotherapy, or None."""
    rule = matcher.config.chemotherapy_order
    if resource.get("status") not in rule.statuses or resource.get("doNotPerform") is True:
        return None
    if resource["resourceType"] == "ServiceRequest":
        concept = resource.get("code")
        label = _chemo_label(concept, matcher)
        if label is None:
            return None
        start, end = _start_end(resource, "occurrence")
        time = parse_fhir_datetime(resource.get("authoredOn")) or start
        return ProcedureFact(ref=ref, time=time, status=str(resource["status"]), label=label, source="order", end=end)
    # CarePlan: the first activity that names chemotherapy
    created = parse_fhir_datetime(resource.get("created"))
    period = resource.get("period") or {}
    plan_start = parse_fhir_datetime(period.get("start"))
    plan_end = parse_fhir_datetime(period.get("end"))
    for detail in _details(resource, rule.activity_status_skip):
        label = None
        for concept in (detail.get("code"), detail.get("productCodeableConcept")):
            label = _chemo_label(concept, matcher)
            if label is not None:
                break
        description = detail.get("description")
        if label is None and isinstance(description, str) and matcher.patterns.names_chemotherapy(description):
            label = description
        if label is None:
            continue
        start, end = _start_end(detail, "scheduled")
        return ProcedureFact(
            ref=ref, time=created or start or plan_start, status=str(resource["status"]), label=label,
            source="plan", end=end or plan_end,
        )
    return None


def _details(resource: Json, skip: frozenset[str]) -> Iterator[Json]:
    for activity in resource.get("activity") or ():
        if not isinstance(activity, Mapping):
            continue
        detail = activity.get("detail")
        if isinstance(detail, Mapping) and detail.get("status") not in skip and detail.get("doNotPerform") is not True:
            yield detail


def _start_end(resource: Json, prefix: str) -> tuple[datetime | None, datetime | None]:
    """Start and end of ``<prefix>DateTime`` / ``<prefix>Period`` / ``<prefix>Timing``."""
    single = parse_fhir_datetime(resource.get(f"{prefix}DateTime"))
    if single is not None:
        return single, None
    period = resource.get(f"{prefix}Period") or {}
    start, end = parse_fhir_datetime(period.get("start")), parse_fhir_datetime(period.get("end"))
    if start is not None or end is not None:
        return start, end
    timing = resource.get(f"{prefix}Timing") or {}
    events = [e for e in (parse_fhir_datetime(v) for v in timing.get("event") or ()) if e is not None]
    if events:
        return min(events), (max(events) if len(events) > 1 else None)
    bounds = (timing.get("repeat") or {}).get("boundsPeriod") or {}
    return parse_fhir_datetime(bounds.get("start")), parse_fhir_datetime(bounds.get("end"))


def _chemo_label(concept: Json | None, matcher: Matcher) -> str | None:
    """The concept's text when it is coded or named as chemotherapy, else None."""
    if not concept or not isinstance(concept, Mapping):
        return None
    codes = matcher.codes_of(concept)
    texts = [text for text in texts_of(concept) if text]
    label = texts[0] if texts else "chemotherapy"
    if any(code in matcher.chemo_procedure_codes for code in codes):
        return label
    match = matcher.classify_drug(codes, []) if codes else None
    if match is not None and match.rule.drug_class is DrugClass.CHEMOTHERAPY and not match.rule.requires_malignancy:
        return label
    if any(matcher.patterns.names_chemotherapy(text) for text in texts):
        return label
    return None
