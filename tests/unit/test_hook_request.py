from __future__ import annotations

import pytest

from cds_hooks.errors import InvalidRequest
from cds_hooks.hook_request import parse_hook_request
from tests.support import hook_requests as hr


def test_a_sandbox_shaped_patient_view_request_parses():
    request = parse_hook_request(hr.patient_view("smart-1288992", fhir_server="https://ehr.example.org/fhir"))
    assert request.hook == "patient-view"
    assert request.patient_id == "smart-1288992"
    assert request.user_id == "Practitioner/COREPRACTITIONER1"
    assert request.fhir_authorization is None


def test_order_select_keeps_draft_orders_and_selections():
    request = parse_hook_request(hr.order_select())
    assert request.selections == ("MedicationRequest/request-123",)
    assert request.draft_orders[0]["id"] == "request-123"


def test_unknown_fields_and_extensions_are_tolerated():
    body = hr.patient_view(extension={"com.example": {"x": 1}}, futureField=True)
    body["context"]["somethingNew"] = "ok"
    assert parse_hook_request(body).patient_id == "p1"


def _mutate(body, path, value):
    node = body
    *parents, last = path
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return body


@pytest.mark.parametrize(
    ("factory", "path", "value", "field"),
    [
        (hr.patient_view, ["hook"], KeyError, "hook"),
        (hr.patient_view, ["hook"], 5, "hook"),
        (hr.patient_view, ["hookInstance"], KeyError, "hookInstance"),
        (hr.patient_view, ["hookInstance"], "has spaces in it", "hookInstance"),
        (hr.patient_view, ["context"], KeyError, "context"),
        (hr.patient_view, ["context"], [], "context"),
        (hr.patient_view, ["context", "patientId"], KeyError, "context.patientId"),
        (hr.patient_view, ["context", "patientId"], "../../etc", "context.patientId"),
        (hr.patient_view, ["context", "patientId"], "a&code=x", "context.patientId"),
        (hr.patient_view, ["context", "userId"], KeyError, "context.userId"),
        (hr.patient_view, ["context", "userId"], "Device/1", "context.userId"),
        (hr.patient_view, ["fhirServer"], "not-a-url", "fhirServer"),
        (hr.patient_view, ["prefetch"], [], "prefetch"),
        (hr.patient_view, ["prefetch"], {"patient": "text"}, "prefetch.patient"),
        (hr.encounter_start, ["context", "encounterId"], KeyError, "context.encounterId"),
        (hr.order_select, ["context", "draftOrders"], KeyError, "context.draftOrders"),
        (hr.order_select, ["context", "draftOrders"], {"resourceType": "Patient"}, "context.draftOrders"),
        (hr.order_select, ["context", "selections"], KeyError, "context.selections"),
        (hr.order_select, ["context", "selections"], [], "context.selections"),
        (hr.order_select, ["context", "userId"], "Patient/1", "context.userId"),
        (hr.order_sign, ["context", "draftOrders"], KeyError, "context.draftOrders"),
    ],
)
def test_an_invalid_request_names_the_field(factory, path, value, field):
    with pytest.raises(InvalidRequest) as info:
        parse_hook_request(_mutate(factory(), path, value))
    assert info.value.field == field


def test_fhir_authorization_requires_fhir_server_and_all_its_fields():
    auth = {"access_token": "secret-token", "token_type": "Bearer", "expires_in": 30,
            "scope": "patient/*.read", "subject": "cds-client"}
    body = hr.patient_view(fhirAuthorization=auth)
    with pytest.raises(InvalidRequest) as info:
        parse_hook_request(body)
    assert info.value.field == "fhirServer"
    body["fhirServer"] = "https://ehr.example.org/fhir"
    request = parse_hook_request(body)
    assert request.fhir_authorization.access_token == "secret-token"
    assert "secret-token" not in repr(request.fhir_authorization)
    for missing in ("access_token", "token_type", "expires_in", "scope", "subject"):
        bad = hr.patient_view(fhirServer="https://ehr.example.org/fhir", fhirAuthorization={k: v for k, v in auth.items() if k != missing})
        with pytest.raises(InvalidRequest) as info:
            parse_hook_request(bad)
        assert info.value.field == f"fhirAuthorization.{missing}"


def test_a_null_prefetch_value_is_allowed():
    assert parse_hook_request(hr.patient_view(prefetch={"patient": None})).prefetch == {"patient": None}
