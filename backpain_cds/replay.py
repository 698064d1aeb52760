"""``backpain-cds replay``: run a request file or a patient Bundle through the service in-process."""

from __future__ import annotations

import typing as t
import uuid
from collections import Counter
from dataclasses import dataclass

from cds_hooks.catalog import ServiceCatalog, ServiceDefinition
from fhir_mapping.bundles import BundleError, bundle_to_resources

DEFAULT_SERVICE_BY_HOOK = {
    "patient-view": "back-pain-after-chemo",
    "encounter-start": "back-pain-after-chemo-encounter",
    "order-select": "gcsf-order-select",
    "order-sign": "gcsf-order-review",
}
_ORDER_HOOKS = ("order-select", "order-sign")
_REPLAY_USER = "Practitioner/backpain-cds-replay"


class ReplayInputError(ValueError):
    """The replay input cannot be used (exit status 2)."""


@dataclass(frozen=True)
class ReplayCall:
    service_id: str
    body: dict[str, t.Any]


def build_call(
    document: t.Any, catalog: ServiceCatalog, *, service_id: str | None, hook: str | None
) -> ReplayCall:
    """A hook call from a CDS Hooks request or from a one-patient FHIR Bundle."""
    if not isinstance(document, dict):
        raise ReplayInputError("the file must hold a JSON object")
    if document.get("resourceType") == "Bundle":
        return _call_from_bundle(document, catalog, service_id=service_id, hook=hook)
    if "hook" in document and "context" in document:
        request_hook = document.get("hook")
        if hook is not None and hook != request_hook:
            raise ReplayInputError(f"--hook {hook} does not match the request's hook {request_hook}")
        chosen = service_id or DEFAULT_SERVICE_BY_HOOK.get(str(request_hook))
        if chosen is None:
            raise ReplayInputError(f"no service runs on hook {request_hook!r}; pass --service")
        return ReplayCall(chosen, document)
    raise ReplayInputError("neither a CDS Hooks request (hook, context) nor a FHIR Bundle")


def _call_from_bundle(
    bundle: dict[str, t.Any], catalog: ServiceCatalog, *, service_id: str | None, hook: str | None
) -> ReplayCall:
    try:
        resources = bundle_to_resources(bundle)
    except BundleError as exc:
        raise ReplayInputError(str(exc)) from None
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise ReplayInputError(f"the Bundle must hold exactly one Patient, it holds {len(patients)}")
    patient_id = patients[0]["id"]

    if service_id is None:
        service_id = DEFAULT_SERVICE_BY_HOOK.get(hook or "patient-view")
    hooks = [s for s in catalog.services if s.id == service_id]
    if not hooks:
        raise ReplayInputError(f"no CDS service with id {service_id!r}")
    service = next((s for s in hooks if s.hook == hook), None) if hook else hooks[0]
    if service is None:
        raise ReplayInputError(f"service {service_id} does not run on hook {hook}")

    drafts = [r for r in resources if r.get("status") == "draft"] if service.hook in _ORDER_HOOKS else []
    draft_ids = {id(r) for r in drafts}
    stored = [r for r in resources if id(r) not in draft_ids]
    context: dict[str, t.Any] = {"userId": _user(stored), "patientId": patient_id}
    if service.hook == "encounter-start":
        encounters = [r["id"] for r in stored if r["resourceType"] == "Encounter"]
        context["encounterId"] = encounters[-1] if encounters else "backpain-cds-replay"
    if service.hook in _ORDER_HOOKS:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in drafts],
        }
        if service.hook == "order-select":
            if not drafts:
                raise ReplayInputError("order-select needs at least one resource with status draft")
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in drafts]
    body = {
        "hook": service.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch_from_resources(service, stored),
    }
    return ReplayCall(service.id, body)


def _user(resources: list[dict[str, t.Any]]) -> str:
    for resource in resources:
        if resource["resourceType"] == "Practitioner":
            return f"Practitioner/{resource['id']}"
    return _REPLAY_USER


def prefetch_from_resources(
    service: ServiceDefinition, resources: list[dict[str, t.Any]]
) -> dict[str, t.Any]:
    """Fill each template key with the bundle's resources of the template's type.

    Keys are filled generously (every resource of the type, plus Medications for the
    medication keys, as ``_include`` would add them); the mapping layer filters.
    """
    by_type: dict[str, list[dict[str, t.Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    prefetch: dict[str, t.Any] = {}
    for key, template in service.prefetch.items():
        kind = template.split("?", 1)[0].split("/", 1)[0]
        if "?" not in template:  # a read such as Patient/{{context.patientId}}
            matches = by_type.get(kind, [])
            prefetch[key] = matches[0] if matches else None
            continue
        entries = [{"resource": r, "search": {"mode": "match"}} for r in by_type.get(kind, [])]
        if kind.startswith("Medication") and kind != "Medication":
            entries += [{"resource": r, "search": {"mode": "include"}} for r in by_type.get("Medication", [])]
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return prefetch


def card_keys(response: t.Mapping[str, t.Any]) -> Counter[tuple[str, str]]:
    """(rule, indicator) of every card in a CDS response."""
    keys: Counter[tuple[str, str]] = Counter()
    for card in response.get("cards", []):
        rule = ((card.get("extension") or {}).get("backpain-cds") or {}).get("rule", "?")
        keys[(rule, card.get("indicator", "?"))] += 1
    return keys


def expected_keys(expected: t.Any) -> Counter[tuple[str, str]]:
    """(rule, indicator) pairs of an expected-cards file."""
    if not isinstance(expected, dict) or not isinstance(expected.get("cards"), list):
        raise ReplayInputError('the expected file must look like {"cards": [{"rule": ..., "indicator": ...}]}')
    keys: Counter[tuple[str, str]] = Counter()
    for i, card in enumerate(expected["cards"]):
        if not isinstance(card, dict) or not isinstance(card.get("rule"), str) or not isinstance(card.get("indicator"), str):
            raise ReplayInputError(f"expected cards[{i}] needs a rule and an indicator")
        keys[(card["rule"], card["indicator"])] += 1
    return keys


def compare(actual: Counter[tuple[str, str]], expected: Counter[tuple[str, str]]) -> list[str]:
    """Diff lines (empty when the cards match, order-free)."""
    lines = []
    for (rule, indicator), n in sorted((expected - actual).items()):
        lines.append(f"- missing card: {rule} ({indicator})" + (f" x{n}" if n > 1 else ""))
    for (rule, indicator), n in sorted((actual - expected).items()):
        lines.append(f"+ unexpected card: {rule} ({indicator})" + (f" x{n}" if n > 1 else ""))
    return lines


def table(response: t.Mapping[str, t.Any]) -> str:
    """A plain-text table of the cards."""
    cards = response.get("cards", [])
    if not cards:
        return "no cards"
    rows = [("RULE", "INDICATOR", "SUMMARY")]
    for card in cards:
        rule = ((card.get("extension") or {}).get("backpain-cds") or {}).get("rule", "?")
        rows.append((rule, card.get("indicator", "?"), card.get("summary", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows)
