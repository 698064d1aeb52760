"""Hypothesis strategies for hostile hook requests (shared by the hostile-input campaign and
the lazy-decoding equivalence tests).

The requests are valid CDS Hooks calls built from ``tools.harness.scenarios``, then mutated:
one field replaced, deleted or extended with a random JSON value, or prefetch keys replaced by
random values (Bundles of FHIR-ish resources with wrongly typed fields, junk, nulls, ...).
"""

from __future__ import annotations

import copy
import typing as t
from datetime import UTC, datetime

from hypothesis import strategies as st

from backpain_cds.replay import prefetch_from_resources
from tests.support import hook_requests as hr
from tools.harness import scenarios

FHIR_SERVER = "https://ehr.example.org/fhir/r4"  # not allow-listed: never contacted
FAKE_ACCESS_TOKEN = "fake-access-token-Qx7Zr2-DO-NOT-LOG"
PV = "back-pain-after-chemo"
ORDERS = "gcsf-order-review"


# --- strategies ---------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "Patient/p1", "2026-01-01", "2026-13-45T99:99:99Z", "-1", "NaN", "Bundle",
                     "OperationOutcome", "draft", "active", "http://loinc.org", "72514-3", "M54.50"]),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)

_RESOURCE_TYPES = ["Patient", "Condition", "Observation", "Procedure", "MedicationRequest",
                   "MedicationAdministration", "MedicationStatement", "Medication", "ServiceRequest",
                   "ImagingStudy", "DiagnosticReport", "QuestionnaireResponse", "Encounter", "OperationOutcome", "Bundle", "Basic"]
_FHIR_FIELDS = ["id", "status", "code", "subject", "valueInteger", "valueQuantity", "valueString",
                "valueCodeableConcept", "effectiveDateTime", "effectivePeriod", "onsetDateTime",
                "onsetPeriod", "recordedDate", "performedDateTime", "performedPeriod", "authoredOn",
                "clinicalStatus", "verificationStatus", "category", "medicationCodeableConcept",
                "medicationReference", "dosageInstruction", "dosage", "intent", "component",
                "interpretation", "referenceRange", "bodySite", "note", "entry", "link", "issue",
                "started", "modality", "conclusionCode", "birthDate", "gender", "item", "answer", "authored",
                "encounter"]


@st.composite
def fhirish_resources(draw) -> dict[str, t.Any]:
    """A resource of a type we read, with FHIR field names holding values of any JSON type."""
    resource: dict[str, t.Any] = {"resourceType": draw(st.sampled_from(_RESOURCE_TYPES))}
    for name in draw(st.lists(st.sampled_from(_FHIR_FIELDS), max_size=6, unique=True)):
        resource[name] = draw(json_values)
    return resource


def _bundle(entries: list[t.Any]) -> dict[str, t.Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


prefetch_values = st.one_of(
    st.none(),
    st.just(hr.operation_outcome()),
    st.just(_bundle([])),
    fhirish_resources(),
    st.lists(fhirish_resources(), max_size=4).map(lambda rs: _bundle([{"resource": r} for r in rs])),
    st.lists(st.one_of(json_values, fhirish_resources().map(lambda r: {"resource": r})), max_size=4).map(_bundle),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(lambda d: {**d, "resourceType": "Bundle"}),
    json_values,
)


def json_paths(value: t.Any, prefix: tuple[t.Any, ...] = ()) -> t.Iterator[tuple[t.Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from json_paths(child, (*prefix, index))


def mutate(draw, body: dict[str, t.Any], paths: list[tuple[t.Any, ...]]) -> dict[str, t.Any]:
    """Replace, delete or extend the value at one path with a random JSON value."""
    body = copy.deepcopy(body)
    path = draw(st.sampled_from(paths))
    parent: t.Any = body
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "replace":
        parent[key] = draw(json_values)
    elif action == "delete":
        del parent[key]
    else:
        target = parent[key]
        if isinstance(target, dict):
            target[draw(st.text(max_size=10))] = draw(json_values)
        elif isinstance(target, list):
            target.append(draw(json_values))
        else:
            parent[key] = [target, draw(json_values)]
    return body


_NOW = datetime.now(UTC)


def valid_request(catalog, kind: str, score: int) -> tuple[str, dict[str, t.Any]]:
    resources = scenarios.mscc("p1", _NOW) if score > 7 else scenarios.gcsf_bone_pain("p1", _NOW, score=score)
    auth = {"fhirServer": FHIR_SERVER, "fhirAuthorization": {
        "access_token": FAKE_ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "backpain-cds", "patient": "p1"}}
    if kind == "patient-view":
        body = hr.patient_view("p1", **auth)
    elif kind == "encounter-start":
        body = hr.encounter_start("p1", "e1", **auth)
    elif kind == "order-select":
        body = hr.order_select("p1", [hr.draft_medication_request("d1", "pegfilgrastim 6 mg")], **auth)
    else:
        body = hr.order_sign("p1", [hr.draft_medication_request("d1", "naproxen 500 mg tablet")], **auth)
    service_id = PV if kind in ("patient-view", "encounter-start") else ORDERS
    body["prefetch"] = prefetch_from_resources(catalog.resolve(service_id, kind), resources)
    return service_id, body


def set_field(body: dict[str, t.Any], resource_id: str, field: str, value: t.Any) -> dict[str, t.Any]:
    """Set ``field`` of every resource with ``resource_id`` (prefetch and draft orders)."""
    body = copy.deepcopy(body)
    found = 0
    resources = [e.get("resource") for e in body["context"].get("draftOrders", {}).get("entry", [])]
    for value_ in body["prefetch"].values():
        if isinstance(value_, dict) and value_.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value_["entry"]]
        elif isinstance(value_, dict):
            resources.append(value_)
    for resource in resources:
        if resource.get("id") == resource_id:
            resource[field] = copy.deepcopy(value)
            found += 1
    assert found, resource_id
    return body


_KINDS = st.sampled_from(["patient-view", "encounter-start", "order-select", "order-sign"])


@st.composite
def mutated_requests(draw, catalog, *, where: str) -> tuple[str, dict[str, t.Any]]:
    """A valid hook request with one field (outside prefetch, or inside it) mutated."""
    service_id, body = valid_request(catalog, draw(_KINDS), draw(st.integers(0, 10)))
    paths = [p for p in json_paths(body) if p]
    if where == "envelope":
        paths = [p for p in paths if p[0] != "prefetch" or len(p) <= 2]
    else:
        paths = [p for p in paths if p[0] == "prefetch" and len(p) >= 2]
    return service_id, mutate(draw, body, paths)


@st.composite
def requests_with_random_prefetch(draw, catalog) -> tuple[str, dict[str, t.Any]]:
    """A valid envelope whose prefetch keys hold random values (Bundles, junk, nulls...)."""
    service_id, body = valid_request(catalog, draw(_KINDS), 5)
    keys = list(body["prefetch"])
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=len(keys), unique=True))
    for key in chosen:
        if draw(st.booleans()) and key in body["prefetch"]:
            body["prefetch"][key] = draw(prefetch_values)
        else:
            body["prefetch"].pop(key, None)
    return service_id, body
