"""Render findings as CDS Hooks 2.0.1 cards (§Card, §Suggestion, §Link).

Card texts come from ``rules.toml`` and suggestions from ``actions.toml``; this module only
assembles them, enforcing the spec's rules: a uuid on every card and suggestion, a summary
under 140 characters, ``selectionBehavior`` whenever there are suggestions, a ``display`` on
every override reason, ``appContext`` only on ``smart`` links, no empty optional fields.

What a clinician reads never shows FHIR ids (they stay in the ``extension`` evidence list),
never repeats a line, and is never cut: summaries fit by construction (a summary variable
longer than ``SUMMARY_VARIABLE_MAX`` gives way to its configured fallback; check-config proves
every template fits), and source and link labels are the citations' short labels.
"""

from __future__ import annotations

import json
import string
import typing as t
import uuid
from dataclasses import dataclass
from datetime import datetime

from assessment.config.schema import SUMMARY_MAX_CHARS, SUMMARY_VARIABLE_MAX
from assessment.findings import Assessment, Finding, Reason
from fhir_mapping.knowledge import Knowledge
from fhir_mapping.suggestions import DELETE_KINDS

RULE_TOPIC_SYSTEM = "https://backpain-cds.org/fhir/CodeSystem/rule"
EXTENSION_KEY = "backpain-cds"
SUMMARY_MAX = SUMMARY_MAX_CHARS  # the spec says "<140 characters"
_SOURCE_LABEL = "backpain-cds"


@dataclass(frozen=True)
class CardLinks:
    """Where cards link to."""

    smart_launch_url: str | None = None  #: set when the SMART detail view is configured
    #: signs the smart link's appContext handle (keyword arguments: hook_instance, rule, card,
    #: evidence, patient_id); set by the composition root with the SMART app's signer
    app_context: t.Callable[..., str] | None = None


def render_cards(
    assessment: Assessment,
    knowledge: Knowledge,
    *,
    patient_id: str,
    now: datetime,
    links: CardLinks = CardLinks(),
    hook_instance: str = "",
) -> list[dict[str, t.Any]]:
    """One card per finding, in the assessment's order."""
    return [
        render_card(f, knowledge, patient_id=patient_id, now=now, links=links, hook_instance=hook_instance)
        for f in assessment.findings
    ]


def render_card(
    finding: Finding,
    knowledge: Knowledge,
    *,
    patient_id: str,
    now: datetime,
    links: CardLinks = CardLinks(),
    hook_instance: str = "",
) -> dict[str, t.Any]:
    """The CDS Hooks card for one finding."""
    rule = knowledge.rules.rules[finding.rule_id]
    card_uuid = str(uuid.uuid4())
    variables = dict(finding.variables)
    variables.update(_action_deadline(rule.actions, knowledge))
    card: dict[str, t.Any] = {
        "uuid": card_uuid,
        "summary": _summary(rule.card.summary, variables, knowledge.rules.summary_fallbacks),
        "indicator": finding.indicator.value,
        "detail": _detail(finding, rule, variables),
        "source": _source(finding, rule),
    }
    suggestions, behaviour = _suggestions(finding, knowledge, patient_id=patient_id, now=now)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = behaviour
    reasons = knowledge.actions.override_reasons.get(finding.rule_id, ())
    if reasons:
        card["overrideReasons"] = [c.to_json() for c in reasons]
    card_links = []
    if finding.citation.url:
        card_links.append(
            {"label": _label(finding), "url": finding.citation.url, "type": "absolute"}
        )
    if links.smart_launch_url:
        card_links.append(
            {
                "label": "Open the back-pain timeline and evidence",
                "url": links.smart_launch_url,
                "type": "smart",
                "appContext": links.app_context(
                    hook_instance=hook_instance, rule=finding.rule_id, card=card_uuid,
                    evidence=finding.evidence, patient_id=patient_id,
                )
                if links.app_context
                else json.dumps({"rule": finding.rule_id, "card": card_uuid}),
            }
        )
    if card_links:
        card["links"] = card_links
    card["extension"] = {
        EXTENSION_KEY: {
            "rule": finding.rule_id,
            "ruleVersion": finding.rule_version,
            "evidence": list(finding.evidence),
        }
    }
    return card


def _action_deadline(actions: t.Iterable[str], knowledge: Knowledge) -> dict[str, str]:
    """{action_within_hours} / {action_within_days}: the deadline of the rule's first action that
    has one (usually filled when the knowledge was loaded; here for configurations parsed
    without the actions)."""
    for key in actions:
        spec = knowledge.actions.actions.get(key)
        if spec is not None and spec.within is not None:
            hours = spec.within.total_seconds() / 3600
            return {"action_within_hours": f"{hours:g}", "action_within_days": f"{hours / 24:g}"}
    return {}


def _label(finding: Finding) -> str:
    """The citation's short label (check-config keeps it short; never cut here)."""
    return finding.citation.label or _SOURCE_LABEL


def _source(finding: Finding, rule: t.Any) -> dict[str, t.Any]:
    label = _SOURCE_LABEL
    if finding.citation.label:
        label = f"{_SOURCE_LABEL} · {finding.citation.label}"
    source: dict[str, t.Any] = {
        "label": label,
        "topic": {
            "system": RULE_TOPIC_SYSTEM,
            "code": finding.rule_id,
            "display": rule.title or finding.rule_id,
        },
    }
    if finding.citation.url:
        source["url"] = finding.citation.url
    return source


def _suggestions(
    finding: Finding, knowledge: Knowledge, *, patient_id: str, now: datetime
) -> tuple[list[dict[str, t.Any]], str]:
    """Suggestions for the finding's actions, minus what is unsafe or already done.

    Imaging actions are alternatives (MRI, or a bone scan if MRI is not possible): when a card
    offers more than one, ``selectionBehavior`` is ``at-most-one`` and the card carries only
    those, leaving the other advice (analgesia) to its text.
    """
    catalog = knowledge.actions
    keys = []
    for key in finding.actions:
        spec = catalog.actions.get(key)
        if spec is None:
            continue
        if spec.kind == "imaging" and finding.existing_imaging:
            continue
        if spec.kind in DELETE_KINDS and not finding.draft_refs:
            continue
        if spec.kind == "nsaid" and (not finding.nsaid_safe or finding.nsaid_concerns):
            # Unsafe, or safety not established (no recent platelets / eGFR): the card text
            # says what to check; no one-click NSAID order.
            continue
        keys.append(key)
    imaging = [k for k in keys if catalog.actions[k].kind == "imaging"]
    behaviour = "any"
    if len(imaging) > 1:
        keys, behaviour = imaging, "at-most-one"
    suggestions = []
    recommended_given = False
    for key in keys:
        spec = catalog.actions[key]
        suggestion: dict[str, t.Any] = {"label": spec.label, "uuid": str(uuid.uuid4())}
        if spec.is_recommended and not (behaviour == "at-most-one" and recommended_given):
            suggestion["isRecommended"] = True
            recommended_given = True
        if spec.kind in DELETE_KINDS:
            # CDS Hooks 2.0 §Action: a delete names the resource by resourceId (cds-resp-2)
            suggestion["actions"] = [
                {"type": "delete", "description": spec.description, "resourceId": ref}
                for ref in finding.draft_refs
            ]
        else:
            suggestion["actions"] = [
                {
                    "type": "create",
                    "description": spec.description,
                    "resource": catalog.build_resource(
                        key, patient_id=patient_id, now=now, reason_refs=finding.evidence
                    ),
                }
            ]
        suggestions.append(suggestion)
    return suggestions, behaviour


def _detail(finding: Finding, rule: t.Any, variables: dict[str, str]) -> str:
    card_text = rule.card
    template = card_text.detail
    unsafe_template = getattr(card_text, "detail_nsaid_unsafe", None)
    if not finding.nsaid_safe and unsafe_template:
        template = unsafe_template
    parts = [_fill(template, variables).strip()]
    if finding.existing_imaging:
        parts.append("**Spine imaging is already on record**, so this card does not order it again.")
    seen: set[str] = set()
    if not finding.nsaid_safe and finding.nsaid_concerns and "nsaid_advice" in variables:
        # cards whose NSAID advice says "reason below" (the NSAID caution card states its
        # concerns in its own situation line)
        parts.append("**Avoid NSAIDs:** " + "; ".join(_lines(finding.nsaid_concerns, set())) + ".")
    why = _lines(finding.reasons_for, seen)
    if why:
        parts.append("**Why this card**\n" + "\n".join(f"- {line}" for line in why))
    against = _lines(finding.reasons_against, seen)
    if against:
        parts.append("**What argues against it**\n" + "\n".join(f"- {line}" for line in against))
    if finding.free_text:
        parts.append("_Some of this was recognised from free text only, not from a code: please check it._")
    if finding.unchecked_medications and finding.indicator.value == "info":
        # a card that reassures says what it could not see in the record
        count = len(finding.unchecked_medications)
        one = count == 1
        parts.append(
            f"_{count} medication {'record is' if one else 'records are'} coded only in a system this service "
            f"cannot read (such as NDC), with no name: {'it' if one else 'they'} could not be checked for G-CSF "
            f"or chemotherapy. Please check {'it' if one else 'them'}._"
        )
    if finding.coded_by_name:
        parts.append(
            "_A coded item was recognised by its name (code not in the value set): please check it._"
        )
    citation = finding.citation
    if citation.title:
        cite = f"[{citation.title}]({citation.url})" if citation.url else citation.title
        extra = ", ".join(x for x in (citation.recommendation, citation.grade) if x)
        parts.append(f"Source: {cite}" + (f" ({extra})" if extra else "") + ".")
    return "\n\n".join(p for p in parts if p)


def _lines(reasons: t.Iterable[Reason], seen: set[str]) -> list[str]:
    """Reason texts for the clinician: no FHIR ids (those are in the extension's evidence),
    each line once (``seen`` is shared across the lists of one card)."""
    lines = []
    for reason in reasons:
        text = " ".join(reason.text.split())
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            lines.append(text)
    return lines


class _Variables(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"[{key}]"


def _fill(template: str, variables: t.Mapping[str, str]) -> str:
    return string.Formatter().vformat(template, (), _Variables(variables))


def _summary(template: str, variables: t.Mapping[str, str], fallbacks: t.Mapping[str, str]) -> str:
    """The card summary, action first and whole: a variable longer than SUMMARY_VARIABLE_MAX
    (a 200-character drug name, a free-text red flag) gives way to its short fallback; the
    detail keeps the full value. check-config proves every template then fits."""
    short = {}
    for key, value in variables.items():
        value = " ".join(str(value).split())
        if len(value) > SUMMARY_VARIABLE_MAX and key in fallbacks:
            value = fallbacks[key]
        short[key] = value
    text = " ".join(_fill(template, short).split())
    if len(text) > SUMMARY_MAX:
        # Unreachable for a configuration check-config accepts; last resort that keeps the
        # action (the start) rather than failing the call.
        text = text[: SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text
