"""Parse and validate a CDS Hooks 2.0.1 service request (invocation body).

Unknown fields and ``extension`` are tolerated (forward compatibility); every field the
service relies on is checked, and a violation names its JSON path.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cds_hooks.errors import InvalidRequest
from cds_hooks.json_body import LazyBundle

#: FHIR id: 1-64 of [A-Za-z0-9-.]; prefetch templates interpolate it, so nothing else passes.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_HOOK_NAME = re.compile(r"[a-z0-9][a-z0-9\-.]{0,63}")
HOOK_INSTANCE = re.compile(r"[A-Za-z0-9\-._:]{1,128}")
_USER_TYPES = {
    "patient-view": ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"),
    "encounter-start": ("Practitioner", "PractitionerRole"),
    "order-select": ("Practitioner", "PractitionerRole"),
    "order-sign": ("Practitioner", "PractitionerRole"),
}
_ORDER_HOOKS = ("order-select", "order-sign")
#: a prefetch key we name in an error (anything else is reported as plain ``prefetch``)
_PREFETCH_KEY = re.compile(r"[A-Za-z0-9_\-.]{1,64}")
_MAX_REFERENCE = 256


@dataclass(frozen=True)
class FhirAuthorization:
    """The bearer token the EHR lends us for FHIR access (never logged)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


@dataclass(frozen=True)
class HookRequest:
    """A validated invocation."""

    hook: str
    hook_instance: str
    context: t.Mapping[str, t.Any]
    patient_id: str
    user_id: str
    encounter_id: str | None = None
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None
    #: key -> a resource (dict), a :class:`~cds_hooks.json_body.LazyBundle` or None
    prefetch: t.Mapping[str, t.Any] = field(default_factory=dict)
    draft_orders: tuple[dict[str, t.Any], ...] = ()
    selections: tuple[str, ...] = ()


def parse_hook_request(body: t.Any) -> HookRequest:
    """Validate a parsed JSON body; raise :class:`InvalidRequest` naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    hook = _required_str(body, "hook", "hook")
    if not _HOOK_NAME.fullmatch(hook):
        raise InvalidRequest("hook is not a valid hook name", field="hook")
    hook_instance = _required_str(body, "hookInstance", "hookInstance")
    if not HOOK_INSTANCE.fullmatch(hook_instance):
        raise InvalidRequest(
            "hookInstance must be a UUID (1-128 characters of letters, digits and -._:)",
            field="hookInstance",
        )

    fhir_server = body.get("fhirServer")
    if fhir_server is not None:
        if not isinstance(fhir_server, str) or not _is_http_url(fhir_server):
            raise InvalidRequest("fhirServer must be an absolute http(s) URL", field="fhirServer")
    authorization = _fhir_authorization(body.get("fhirAuthorization"))
    if authorization is not None and fhir_server is None:
        raise InvalidRequest(
            "fhirServer is required when fhirAuthorization is present", field="fhirServer"
        )

    context = body.get("context")
    if not isinstance(context, dict):
        raise InvalidRequest("context is required and must be an object", field="context")
    user_id = _required_str(context, "userId", "context.userId")
    kind, _, ident = user_id.partition("/")
    allowed_users = _USER_TYPES.get(hook, _USER_TYPES["patient-view"])
    if kind not in allowed_users or not FHIR_ID.fullmatch(ident):
        raise InvalidRequest(
            f"context.userId must be a reference like {allowed_users[0]}/123 "
            f"(one of {', '.join(allowed_users)})",
            field="context.userId",
        )
    patient_id = _fhir_id(context, "patientId", required=True)
    encounter_id = _fhir_id(context, "encounterId", required=hook == "encounter-start")

    draft_orders: tuple[dict[str, t.Any], ...] = ()
    selections: tuple[str, ...] = ()
    if hook in _ORDER_HOOKS:
        draft_orders = _draft_orders(context.get("draftOrders"))
        if hook == "order-select":
            selections = _selections(context.get("selections"))

    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    elif not isinstance(prefetch, dict):
        raise InvalidRequest("prefetch must be an object", field="prefetch")
    for key, value in prefetch.items():
        if value is None or isinstance(value, LazyBundle):
            continue
        if not (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
            where = f"prefetch.{key}" if _PREFETCH_KEY.fullmatch(key) else "prefetch"
            raise InvalidRequest("a prefetch value must be a FHIR resource, a Bundle or null", field=where)

    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        patient_id=patient_id or "",
        user_id=user_id,
        encounter_id=encounter_id,
        fhir_server=fhir_server,
        fhir_authorization=authorization,
        prefetch=prefetch,
        draft_orders=draft_orders,
        selections=selections,
    )


def _required_str(data: t.Mapping[str, t.Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        raise InvalidRequest(f"{path} is required", field=path)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{path} must be a non-empty string", field=path)
    return value


def _fhir_id(context: t.Mapping[str, t.Any], key: str, *, required: bool) -> str | None:
    path = f"context.{key}"
    if context.get(key) is None:
        if required:
            raise InvalidRequest(f"{path} is required", field=path)
        return None
    value = context[key]
    if not isinstance(value, str) or not FHIR_ID.fullmatch(value):
        raise InvalidRequest(f"{path} must be a FHIR id (1-64 of A-Z a-z 0-9 - .)", field=path)
    return value


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # e.g. "http://[::1/fhir", "http://[127.0.0.1]:18090/fhir"
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _fhir_authorization(raw: t.Any) -> FhirAuthorization | None:
    if raw is None:
        return None
    path = "fhirAuthorization"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{path} must be an object", field=path)
    token = _required_str(raw, "access_token", f"{path}.access_token")
    token_type = _required_str(raw, "token_type", f"{path}.token_type")
    if token_type.lower() != "bearer":
        raise InvalidRequest(f"{path}.token_type must be Bearer", field=f"{path}.token_type")
    expires_in = raw.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 0:
        raise InvalidRequest(
            f"{path}.expires_in must be a non-negative integer", field=f"{path}.expires_in"
        )
    scope = _required_str(raw, "scope", f"{path}.scope")
    subject = _required_str(raw, "subject", f"{path}.subject")
    patient = raw.get("patient")
    if patient is not None and not (isinstance(patient, str) and FHIR_ID.fullmatch(patient)):
        raise InvalidRequest(f"{path}.patient must be a FHIR id", field=f"{path}.patient")
    return FhirAuthorization(token, "Bearer", expires_in, scope, subject, patient)


def _draft_orders(raw: t.Any) -> tuple[dict[str, t.Any], ...]:
    path = "context.draftOrders"
    if raw is None:
        raise InvalidRequest(f"{path} is required for order hooks", field=path)
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        raise InvalidRequest(f"{path} must be a FHIR Bundle", field=path)
    entries = raw.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest(f"{path}.entry must be an array", field=f"{path}.entry")
    resources = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InvalidRequest(
                f"{path}.entry[{i}].resource must be a FHIR resource", field=f"{path}.entry[{i}]"
            )
        # selections and card evidence refer to a draft order as Type/id: it needs a real id
        ident = resource.get("id")
        if not isinstance(ident, str) or not FHIR_ID.fullmatch(ident):
            where = f"{path}.entry[{i}].resource.id"
            raise InvalidRequest(f"{where} must be a FHIR id (1-64 of A-Z a-z 0-9 - .)", field=where)
        resources.append(resource)
    return tuple(resources)


def _selections(raw: t.Any) -> tuple[str, ...]:
    path = "context.selections"
    if raw is None:
        raise InvalidRequest(f"{path} is required for order-select", field=path)
    if not isinstance(raw, list) or not raw or not all(
        isinstance(s, str) and 0 < len(s) <= _MAX_REFERENCE for s in raw
    ):
        raise InvalidRequest(
            f"{path} must be a non-empty array of references (at most {_MAX_REFERENCE} characters each)",
            field=path,
        )
    return tuple(raw)
