"""QuestionnaireResponse -> present red-flag :class:`ClinicalFact` (patient-reported symptoms).

CLINICAL.md *Red flag*: answers of patient-reported symptom instruments (e.g. PRO-CTCAE items on
numbness/tingling, leg weakness, urinary or bowel control) count; any answer above "never" /
"none" / "not at all" is present; time = ``authored``. An item is a symptom item when its text
or the display of its ``code`` names a red-flag kind (the clinical-text component, negation
ignored: a question is not an assertion); its answer then decides. A free-text answer (``valueString``) of any item is read as text, negation
applied. Items nest (``item.item``, ``answer.item``). Status entered-in-error / stopped gives
nothing.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator, Mapping

from assessment.facts import ClinicalFact, ClinicalKind, Confidence

from .matcher import Matcher, texts_of
from .times import parse_fhir_datetime

__all__ = ["RED_FLAG_KINDS", "questionnaire_facts"]

Json = Mapping[str, t.Any]
RED_FLAG_KINDS = frozenset({ClinicalKind.RED_FLAG_NEURO, ClinicalKind.RED_FLAG_SPHINCTER, ClinicalKind.MSCC})
_SKIP_STATUS = frozenset({"entered-in-error", "stopped"})
_MAX_ITEMS = 2_000  # a bound on the work per response (nesting included)


def questionnaire_facts(resource: Json, ref: str, matcher: Matcher) -> list[ClinicalFact]:
    """Return the present red-flag findings one QuestionnaireResponse reports."""
    if resource.get("status") in _SKIP_STATUS:
        return []
    time = parse_fhir_datetime(resource.get("authored"))
    found: dict[ClinicalKind, str] = {}
    for item in _items(resource.get("item")):
        question = [text for text in (item.get("text"),) if isinstance(text, str) and text]
        for code in item.get("code") or ():
            display = code.get("display") if isinstance(code, Mapping) else None
            if isinstance(display, str) and display:
                question.append(display)
        asked = [k for k in matcher.clinical_kinds_from_text(question, ignore_modifiers=True) if k in RED_FLAG_KINDS]
        for answer in item.get("answer") or ():
            if not isinstance(answer, Mapping):
                raise TypeError("answer must be an object")
            if asked and _present(answer, matcher):
                for kind in asked:
                    found.setdefault(kind, question[0])
            text = answer.get("valueString")
            if isinstance(text, str):
                for kind in matcher.clinical_kinds_from_text([text]):
                    if kind in RED_FLAG_KINDS:
                        found.setdefault(kind, text)
    return [
        ClinicalFact(ref=ref, kind=kind, time=time, recorded=time, status="present",
                     confidence=Confidence.TEXT, label=label[:120])
        for kind, label in found.items()
    ]


def _items(items: t.Any) -> Iterator[Json]:
    """Every item, nested ones included (depth first, bounded)."""
    stack = list(reversed(items or ()))
    seen = 0
    while stack and seen < _MAX_ITEMS:
        item = stack.pop()
        if not isinstance(item, Mapping):
            raise TypeError("item must be an object")
        seen += 1
        yield item
        nested = list(item.get("item") or ())
        for answer in item.get("answer") or ():
            if isinstance(answer, Mapping):
                nested.extend(answer.get("item") or ())
        stack.extend(reversed(nested))


def _present(answer: Json, matcher: Matcher) -> bool:
    """Whether an answer to a symptom item is above the lowest category."""
    if "valueBoolean" in answer:
        return answer["valueBoolean"] is True
    for key in ("valueInteger", "valueDecimal"):
        if key in answer:
            value = answer[key]
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    coding = answer.get("valueCoding")
    if isinstance(coding, Mapping):
        texts = list(texts_of({"coding": [coding]}))
        code = coding.get("code")
        if not texts and isinstance(code, str):
            texts = [code]  # a bare ordinal code ("0") or an answer code without display
        return bool(texts) and not any(matcher.absent_answer(text) for text in texts)
    text = answer.get("valueString")
    if isinstance(text, str):
        return bool(text.strip()) and not matcher.absent_answer(text)
    return False
