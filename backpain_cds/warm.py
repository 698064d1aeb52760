"""Warm start: run synthetic hook calls before a worker accepts real ones (issue 13).

The first call after a worker started used to take 10-20x a steady call (here 19 ms vs
1.5 ms; 114-377 ms in the sandbox with JWT checks and a busier machine): the text matcher and
its lookups are built lazily, the database pool opens its first connection, Flask and the
JSON decoders take their first slow path. :func:`warm_up` runs one synthetic call per
published service -- every resource type the mapping reads, with a coding from an unknown
system and the text ``warm-up``, so no rule fires and nothing is audited -- through the same
decode, resolve, map, assess and render steps as a real call, on a service object of its own
(no audit, no metrics). ``backpain_cds.server`` calls it in the master before the fork (the
lookups are then shared copy-on-write) and again, with a database ping, in each worker before
it accepts (``post_fork``). ``BACKPAIN_CDS_WARM_START=0`` turns it off (``bench/warm_start.py``
compares both).
"""

from __future__ import annotations

import logging
import os
import time
import typing as t
import uuid

import orjson

from cds_hooks.json_body import decode_hook_body

if t.TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("backpain_cds.app")

ENV_WARM_START = "BACKPAIN_CDS_WARM_START"
_PATIENT = "warm-up"
_CODE = {"coding": [{"system": "urn:backpain-cds:warm-up", "code": "0"}], "text": "warm-up"}
_SUBJECT = {"reference": f"Patient/{_PATIENT}"}


def enabled(environ: t.Mapping[str, str] = os.environ) -> bool:
    """False when ``BACKPAIN_CDS_WARM_START`` is 0/false/no/off."""
    return environ.get(ENV_WARM_START, "1").strip().lower() not in {"0", "false", "no", "off"}


def _resources() -> list[dict[str, t.Any]]:
    """One resource of each type the mapping reads, none of which any rule recognises."""
    med = {"subject": _SUBJECT, "medicationCodeableConcept": _CODE}
    return [
        {"resourceType": "Patient", "id": _PATIENT},
        {"resourceType": "Condition", "id": "w1", "subject": _SUBJECT, "code": _CODE},
        {"resourceType": "Observation", "id": "w2", "status": "final", "subject": _SUBJECT,
         "code": _CODE, "valueString": "warm-up"},
        {"resourceType": "Observation", "id": "w3", "status": "final", "subject": _SUBJECT,
         "code": _CODE, "valueQuantity": {"value": 1, "unit": "1"}},
        {"resourceType": "MedicationRequest", "id": "w4", "status": "active", "intent": "order", **med},
        {"resourceType": "MedicationAdministration", "id": "w5", "status": "completed",
         "effectiveDateTime": "2026-01-01", **med},
        {"resourceType": "MedicationStatement", "id": "w6", "status": "active", **med},
        {"resourceType": "Procedure", "id": "w7", "status": "completed", "subject": _SUBJECT, "code": _CODE},
        {"resourceType": "ServiceRequest", "id": "w8", "status": "active", "intent": "order",
         "subject": _SUBJECT, "code": _CODE},
        {"resourceType": "ImagingStudy", "id": "w9", "status": "available", "subject": _SUBJECT},
        {"resourceType": "DiagnosticReport", "id": "w10", "status": "final", "subject": _SUBJECT, "code": _CODE},
    ]


def _request(service: t.Any) -> dict[str, t.Any]:
    resources = _resources()
    prefetch: dict[str, t.Any] = {}
    for key, template in service.prefetch.items():
        if template.startswith("Patient/"):
            prefetch[key] = resources[0]
        else:
            kind = template.split("?", 1)[0]
            entries = [{"resource": r} for r in resources if r["resourceType"] == kind]
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    context: dict[str, t.Any] = {"patientId": _PATIENT, "userId": "Practitioner/warm-up"}
    if service.hook == "encounter-start":
        context["encounterId"] = "warm-up"
    if service.hook in ("order-select", "order-sign"):
        draft = {**resources[4], "id": "warm-draft", "status": "draft"}
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
        if service.hook == "order-select":
            context["selections"] = ["MedicationRequest/warm-draft"]
    return {"hookInstance": str(uuid.uuid4()), "hook": service.hook, "context": context,
            "prefetch": prefetch}


def warm_up(app: Flask, *, where: str) -> float:
    """Run one synthetic call per published service; return the seconds it took.

    Never raises: a failed warm-up is logged and the service starts cold.
    """
    from backpain_cds.app import build_service

    started = time.perf_counter()
    state = app.extensions["backpain_cds"]
    service_log = logging.getLogger("backpain_cds.service")
    was_disabled = service_log.disabled
    service_log.disabled = True  # no "hook call answered" lines for synthetic calls
    try:
        service = build_service(state["settings"], state["service"].knowledge, apply_deadline=False)
        for definition in service.catalog.services:
            if definition.deprecated:
                continue
            body = decode_hook_body(orjson.dumps(_request(definition)))
            orjson.dumps(service.invoke(definition.id, body).response)
        orjson.dumps(service.discovery())
        with app.test_client() as client:  # Flask's routing, request and response path
            client.get("/healthz")
            if state["settings"].auth.development_mode:  # signed mode would log a 401
                definition = next(d for d in service.catalog.services if not d.deprecated)
                client.post(f"/cds-services/{definition.id}", json=_request(definition))
        state["metrics"].reset()  # synthetic calls are not calls
        if where == "worker":
            state["store"].warm()  # the worker's first database connection, statements compiled
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation, never a failure
        log.warning("warm-up failed; starting cold: %s", exc.__class__.__name__)
    finally:
        service_log.disabled = was_disabled
    elapsed = time.perf_counter() - started
    log.info("warm-up done", extra={"reason": where, "ms": round(elapsed * 1000, 1)})
    return elapsed
