"""CDS Hooks request bodies shaped like the sandbox's (CDS_HOOKS.md §4.3)."""

from __future__ import annotations

import copy
import typing as t
import uuid

DEFAULT_USER = "Practitioner/COREPRACTITIONER1"


def patient_view(patient_id: str = "p1", *, prefetch: dict[str, t.Any] | None = None,
                 fhir_server: str | None = None, **extra: t.Any) -> dict[str, t.Any]:
    body: dict[str, t.Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "context": {"patientId": patient_id, "userId": DEFAULT_USER},
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def encounter_start(patient_id: str = "p1", encounter_id: str = "e1", **kw: t.Any) -> dict[str, t.Any]:
    body = patient_view(patient_id, **kw)
    body["hook"] = "encounter-start"
    body["context"]["encounterId"] = encounter_id
    return body


def order_select(patient_id: str = "p1", drafts: list[dict[str, t.Any]] | None = None,
                 selections: list[str] | None = None, **kw: t.Any) -> dict[str, t.Any]:
    drafts = drafts if drafts is not None else [draft_medication_request("request-123")]
    body = patient_view(patient_id, **kw)
    body["hook"] = "order-select"
    # The sandbox sends draftOrders without Bundle.type.
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]}
    body["context"]["selections"] = selections if selections is not None else [
        f"{r['resourceType']}/{r['id']}" for r in drafts
    ]
    return body


def order_sign(patient_id: str = "p1", drafts: list[dict[str, t.Any]] | None = None, **kw: t.Any) -> dict[str, t.Any]:
    body = order_select(patient_id, drafts, **kw)
    body["hook"] = "order-sign"
    del body["context"]["selections"]
    return body


def draft_medication_request(ident: str, text: str = "Ondansetron 8 mg tablet", patient_id: str = "p1") -> dict[str, t.Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {"text": text},
    }


def searchset(*resources: dict[str, t.Any], next_url: str | None = None) -> dict[str, t.Any]:
    bundle: dict[str, t.Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": copy.deepcopy(r)} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def operation_outcome(text: str = "could not fetch") -> dict[str, t.Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception", "diagnostics": text}]}


def nothing_found_prefetch(patient: dict[str, t.Any], service_id: str = "back-pain-after-chemo", hook: str = "patient-view") -> dict[str, t.Any]:
    """The patient read, and every other key of the service present as null ("nothing found")."""
    from functools import lru_cache

    @lru_cache(maxsize=1)
    def catalog():  # type: ignore[no-untyped-def]
        from backpain_cds.app import load_service_catalog
        from fhir_mapping.knowledge import load_knowledge

        return load_service_catalog(load_knowledge())

    keys = catalog().resolve(service_id, hook).prefetch
    return {key: (patient if key == "patient" else None) for key in keys}
