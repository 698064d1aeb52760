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

With trusted clients (signed mode) a worker's first signed call also paid for the client's key
set fetch and the first JWT verification. Warm-up then also (:mod:`cds_hooks.auth.warm`): runs
the verification once per allowed algorithm with a throwaway key on a throwaway verifier
(master and worker; the real one trusts nothing new), compiles the JWT-id statements (worker,
rolled back), and in each worker fetches the key set of every client with a ``jwks_url`` into
the real verifier's cache -- in the background while the rest warms up, waiting at most
:data:`KEY_SET_WAIT_SECONDS`. Not in the master: a fetch thread or pooled connection must not
cross the fork. A key set not fetched by then is logged once (issuer, host, reason; no URL
path or query) and fetched by the first signed call, as before; start-up never waits longer.
"""

from __future__ import annotations

import logging
import os
import time
import typing as t
import uuid

import orjson

from cds_hooks.auth.warm import KeySetPrefetch, exercise_verification
from cds_hooks.json_body import decode_hook_body

if t.TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("backpain_cds.app")

ENV_WARM_START = "BACKPAIN_CDS_WARM_START"
#: how long a worker's warm-up waits for the trusted clients' key sets (then it accepts anyway)
KEY_SET_WAIT_SECONDS = 1.5
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
    authenticator = state.get("authenticator")
    key_sets = None
    if authenticator is not None and where == "worker":
        key_sets = KeySetPrefetch(authenticator).start()  # network in the background meanwhile
    quiet = [logging.getLogger("backpain_cds.service"),  # no "hook call answered" lines,
             logging.getLogger("backpain_cds.auth")]  # nor the 401 of the unsigned call below
    was_disabled = [logger.disabled for logger in quiet]
    for logger in quiet:
        logger.disabled = True
    try:
        service = build_service(state["settings"], state["service"].knowledge, apply_deadline=False)
        for definition in service.catalog.services:
            if definition.deprecated:
                continue
            body = decode_hook_body(orjson.dumps(_request(definition)))
            orjson.dumps(service.invoke(definition.id, body).response)
        orjson.dumps(service.discovery())
        # Flask's routing, request and response path; synthetic calls are not counted
        with state["metrics"].paused(), app.test_client() as client:
            client.get("/healthz")
            definition = next(d for d in service.catalog.services if not d.deprecated)
            # In signed mode an unsigned call is refused (401) before its body is read: that
            # path is warmed, the body path is warmed by the service calls above.
            client.post(f"/cds-services/{definition.id}", json=_request(definition))
        if where == "worker":
            state["store"].warm()  # the worker's first database connection, statements compiled
        if authenticator is not None:
            exercise_verification(authenticator.policy)
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation, never a failure
        log.warning("warm-up failed; starting cold: %s", exc.__class__.__name__)
    finally:
        for logger, disabled in zip(quiet, was_disabled, strict=True):
            logger.disabled = disabled
    if key_sets is not None:
        waited = KEY_SET_WAIT_SECONDS - (time.perf_counter() - started)
        for result in key_sets.wait(max(waited, 0.0)):
            if result.problem is not None:
                log.warning("warm-up: key set of a trusted client (host %s) not fetched; its first "
                            "signed call fetches it", result.host, extra={"iss": result.iss, "reason": result.problem})
    elapsed = time.perf_counter() - started
    log.info("warm-up done", extra={"reason": where, "ms": round(elapsed * 1000, 1)})
    return elapsed
