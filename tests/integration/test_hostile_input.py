"""Hostile and malformed input through the whole app (Flask test client, SQLite in tmp).

Properties, checked with hypothesis over request bodies, prefetch values, FHIR-ish resources
with wrong types, feedback bodies and Authorization headers:

* the status is one of 200/400/401/404/412/413 -- never a 500;
* neither the EHR's ``fhirAuthorization.access_token`` nor the client JWT appears in any
  response (body or headers) nor in any log line, as written by the service's JSON formatter
  or as the raw message;
* feedback is all or nothing: a rejected body leaves the feedback table unchanged.

Plus the fixed limits: JSON nesting depth, body size, Content-Type, service id syntax.
"""

from __future__ import annotations

import json
import logging
import time
import typing as t
import uuid
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backpain_cds.app import create_app, load_service_catalog
from backpain_cds.logs import JsonFormatter
from backpain_cds.settings import Settings
from cds_hooks.limits import MAX_JSON_DEPTH, json_depth, json_depth_exceeds
from fhir_mapping.knowledge import load_knowledge
from tests.support import hook_requests as hr
from tests.support.hostile_requests import (
    FAKE_ACCESS_TOKEN,
    ORDERS,
    PV,
    json_paths,
    json_values,
    mutate,
    mutated_requests,
    requests_with_random_prefetch,
    set_field,
    valid_request,
)
from tests.support.jwt_factory import TestSigner, b64url

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
ALLOWED_STATUSES = {200, 400, 401, 404, 412, 413}
CAMPAIGN = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --- the app, the log capture -------------------------------------------------------------


class _Capture(logging.Handler):
    """Keeps every record as the service would write it (JSON line) and as raw text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.formatter_ = JsonFormatter()
        self.lines: list[str] = []
        self.last_error: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.last_error = list(getattr(record, "traceback", []) or [])
        try:
            raw = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is still checked as text
            raw = str(record.msg)
        self.lines.append(self.formatter_.format(record))
        self.lines.append(raw)

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def log_capture():
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(old_level)


@pytest.fixture(scope="module")
def signer():
    return TestSigner(alg="ES384", iss=ISS)


@pytest.fixture(scope="module")
def dev_app(tmp_path_factory, log_capture):
    tmp = tmp_path_factory.mktemp("hostile-dev")
    return create_app(Settings.from_mapping({
        "database_url": f"sqlite:///{tmp / 'dev.sqlite3'}",
        "validate_responses": True,
        "limits": {"max_body_bytes": 1_000_000},
    }))


@pytest.fixture(scope="module")
def secured_app(tmp_path_factory, signer, log_capture):
    tmp = tmp_path_factory.mktemp("hostile-secured")
    jwks = signer.write_jwks(tmp / "jwks.json")
    return create_app(Settings.from_mapping({
        "public_base_url": BASE,
        "database_url": f"sqlite:///{tmp / 'sec.sqlite3'}",
        "validate_responses": True,
        "limits": {"max_body_bytes": 1_000_000},
        "auth": {"trusted_clients": [{"iss": ISS, "jwks_file": str(jwks)}]},
    }))


@pytest.fixture(scope="module")
def catalog():
    return load_service_catalog(load_knowledge())


def _feedback_count(app) -> int:
    store = app.extensions["backpain_cds"]["store"]
    return len(store.feedback_rows()) + len(store.unmatched_feedback_rows())


def _check_status(response, log_capture: _Capture) -> None:
    status = response.status_code
    assert status in ALLOWED_STATUSES, (status, log_capture.last_error, response.get_data(as_text=True))


def _assert_no_secret(response, log_capture: _Capture, secrets: t.Sequence[str]) -> None:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    logged = log_capture.text()
    for secret in secrets:
        assert secret not in response.get_data(as_text=True), "a token was echoed in the response body"
        assert secret not in headers, "a token was echoed in a response header"
        assert secret not in logged, "a token reached the log"


# --- the campaign ---------------------------------------------------------------------------


def _post_hook(client, signer, service_id: str, body: t.Any):
    path = f"/cds-services/{service_id}"
    token = signer.token(BASE + path)
    response = client.post(path, data=orjson.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    return response, token


def test_the_unmutated_requests_are_answered(secured_app, signer, catalog, log_capture):
    client = secured_app.test_client()
    for kind in ("patient-view", "encounter-start", "order-select", "order-sign"):
        service_id, body = valid_request(catalog, kind, 5)
        response, token = _post_hook(client, signer, service_id, body)
        assert response.status_code == 200, response.get_data(as_text=True)
        _assert_no_secret(response, log_capture, [FAKE_ACCESS_TOKEN, token])


@pytest.mark.parametrize("where", ["envelope", "prefetch"])
def test_a_request_with_one_field_mutated_never_fails_with_500(secured_app, signer, catalog, log_capture, where):
    client = secured_app.test_client()

    @CAMPAIGN
    @given(mutated_requests(catalog, where=where))
    def run(case):
        service_id, body = case
        log_capture.last_error = []
        response, token = _post_hook(client, signer, service_id, body)
        _check_status(response, log_capture)
        assert response.status_code != 401
        _assert_no_secret(response, log_capture, [FAKE_ACCESS_TOKEN, token])

    run()


def test_random_prefetch_values_never_fail_with_500(secured_app, signer, catalog, log_capture):
    client = secured_app.test_client()

    @CAMPAIGN
    @given(requests_with_random_prefetch(catalog))
    def run(case):
        service_id, body = case
        log_capture.last_error = []
        response, token = _post_hook(client, signer, service_id, body)
        _check_status(response, log_capture)
        _assert_no_secret(response, log_capture, [FAKE_ACCESS_TOKEN, token])

    run()


def test_arbitrary_json_and_bytes_as_a_hook_body(dev_app, log_capture):
    client = dev_app.test_client()

    @CAMPAIGN
    @given(st.one_of(json_values.map(orjson.dumps), st.binary(max_size=200)), st.sampled_from([PV, ORDERS]))
    def run(raw, service_id):
        response = client.post(f"/cds-services/{service_id}", data=raw, content_type="application/json")
        assert response.status_code in {400, 412}, (response.status_code, raw)

    run()


# --- feedback: all or nothing ----------------------------------------------------------------


def _valid_entry(draw) -> dict[str, t.Any]:
    if draw(st.booleans()):
        return {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-01-02T03:04:05Z",
                "acceptedSuggestions": [{"id": str(uuid.uuid4())}]}
    return {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-02T03:04:05+01:00",
            "overrideReason": {"reason": {"code": "not-relevant", "system": "http://example.org/reasons"},
                               "userComment": "patient already imaged"}}


@st.composite
def feedback_bodies(draw) -> tuple[dict[str, t.Any], bool]:
    """(body, whether every entry was left valid): valid entries with at most one mutated."""
    entries = [_valid_entry(draw) for _ in range(draw(st.integers(1, 4)))]
    body = {"feedback": entries}
    if draw(st.booleans()):
        return body, True
    paths = [p for p in json_paths(body) if p]
    return mutate(draw, body, paths), False


def test_feedback_is_all_or_nothing(dev_app, log_capture):
    client = dev_app.test_client()
    path = f"/cds-services/{PV}/feedback"

    @CAMPAIGN
    @given(feedback_bodies())
    def run(case):
        body, untouched = case
        before = _feedback_count(dev_app)
        response = client.post(path, json=body)
        after = _feedback_count(dev_app)
        assert response.status_code in {200, 400}, response.get_data(as_text=True)
        if response.status_code == 200:
            answer = response.get_json()
            assert after - before == answer["stored"] + answer["unmatched"]
            assert response.get_json()["received"] == len(body["feedback"])
        else:
            assert after == before, "a rejected feedback body stored something"
        if untouched:
            assert response.status_code == 200

    run()


def test_arbitrary_json_as_feedback_stores_nothing_unless_valid(dev_app):
    client = dev_app.test_client()
    path = f"/cds-services/{PV}/feedback"

    @CAMPAIGN
    @given(st.one_of(json_values, st.fixed_dictionaries({"feedback": st.lists(json_values, max_size=4)})))
    def run(body):
        before = _feedback_count(dev_app)
        response = client.post(path, data=orjson.dumps(body), content_type="application/json")
        assert response.status_code in {200, 400}
        if response.status_code != 200:
            assert _feedback_count(dev_app) == before

    run()


def test_one_invalid_entry_among_valid_ones_stores_none(dev_app):
    client = dev_app.test_client()
    good = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-02T03:04:05Z",
            "overrideReason": {"userComment": "n/a"}}
    bad = {**good, "card": str(uuid.uuid4()), "outcomeTimestamp": "yesterday"}
    before = _feedback_count(dev_app)
    response = dev_app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": [good, good | {"card": str(uuid.uuid4())}, bad]})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback[2].outcomeTimestamp"]
    assert _feedback_count(dev_app) == before
    assert client.post(f"/cds-services/{PV}/feedback", json={"feedback": [good]}).status_code == 200


# --- Authorization headers -------------------------------------------------------------------

_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@st.composite
def jwt_like(draw) -> str:
    header = draw(st.one_of(
        st.dictionaries(st.sampled_from(["alg", "typ", "kid", "jku", "crit", "b64", "x5u"]), json_values, max_size=5),
        st.fixed_dictionaries({"alg": st.sampled_from(["none", "HS256", "ES384", "RS384", "NONE", ""]),
                               "typ": st.sampled_from(["JWT", "jwt", "at+jwt"]), "kid": st.text(max_size=8)}),
    ))
    claims = draw(st.dictionaries(st.sampled_from(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant"]), json_values, max_size=7))
    signature = draw(st.text(st.sampled_from("abcXYZ019-_"), max_size=40))
    return f"{b64url(header)}.{b64url(claims)}.{signature}"


@st.composite
def authorization_headers(draw, signer) -> str:
    aud = f"{BASE}/cds-services/{PV}"
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(_header_text)
    if choice == 1:
        return "Bearer " + draw(_header_text)
    if choice == 2:
        return draw(st.sampled_from(["Bearer ", "bearer ", "Basic ", "Bearer  "])) + draw(jwt_like())
    if choice == 3:  # a real signature over random claims
        claims = draw(st.dictionaries(st.sampled_from(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant"]), json_values, max_size=7))
        return "Bearer " + signer.sign(signer.header(), claims)
    if choice == 4:  # a valid token for another URL, or one character changed
        token = signer.token(aud + draw(st.sampled_from(["/feedback", "x", "/"])))
        return f"Bearer {token}"
    token = signer.token(aud)
    position = draw(st.integers(0, len(token) - 1))
    replacement = draw(st.sampled_from("AbZ09-_.="))
    if token[position] == replacement:
        replacement = "Q" if replacement != "Q" else "R"
    return "Bearer " + token[:position] + replacement + token[position + 1:]


def test_random_authorization_headers_are_always_401(secured_app, signer, catalog, log_capture):
    client = secured_app.test_client()
    _, body = valid_request(catalog, "patient-view", 5)
    raw = orjson.dumps(body)

    @CAMPAIGN
    @given(authorization_headers(signer))
    def run(header):
        response = client.post(f"/cds-services/{PV}", data=raw, content_type="application/json",
                               headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.data == b""
        secret = header.split(" ", 1)[-1].strip()
        if len(secret) >= 20:
            assert secret not in log_capture.text()

    run()


# --- fixed limits ----------------------------------------------------------------------------


def _nested(depth: int, leaf: t.Any = 1) -> t.Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"extension": value}
    return value


def test_nesting_up_to_the_limit_is_accepted_and_deeper_is_400(dev_app):
    client = dev_app.test_client()
    for depth in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1):
        body = hr.patient_view(prefetch={})
        body["extension"] = _nested(depth - 1)  # the envelope object is the first level
        assert json_depth(body) == depth
        response = client.post(f"/cds-services/{PV}", json=body)
        # at the limit the body passes the check and fails later (no prefetch, no fhirServer)
        assert response.status_code == (412 if depth == MAX_JSON_DEPTH else 400), depth
        assert response.get_json()["resourceType"] == "OperationOutcome"
    # deeper than orjson's own limit (1024): still a 400, never a RecursionError
    response = client.post(f"/cds-services/{PV}", data=_deep_text(1100), content_type="application/json")
    assert response.status_code == 400


def _deep_text(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 12))
def test_the_byte_level_depth_check_agrees_with_a_tree_walk(value, limit):
    raw = orjson.dumps(value)
    assert json_depth_exceeds(raw, limit) == (json_depth(value) > limit)


@pytest.mark.parametrize("text", ['"[[[\\"]]]"', '{"a\\\\":"[\\\\\\"{"}', '["]]]]", {"x": "}}}"}]', '"\\u005b"'])
def test_the_depth_check_ignores_brackets_and_escapes_inside_strings(text):
    raw = text.encode()
    value = orjson.loads(raw)
    assert json_depth_exceeds(raw, json_depth(value)) is False
    if json_depth(value):
        assert json_depth_exceeds(raw, json_depth(value) - 1) is True


def test_a_body_over_max_body_bytes_is_413_operation_outcome(dev_app):
    body = hr.patient_view(prefetch={}, extension={"padding": "x" * 1_100_000})
    response = dev_app.test_client().post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 413
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("content_type, expected", [
    ("application/json", 412),
    ("application/json; charset=utf-8", 412),
    ("application/fhir+json", 412),
    ("application/fhir+json;charset=UTF-8", 412),
    (None, 412),
    ("text/plain", 415),
    ("application/x-www-form-urlencoded", 415),
    ("multipart/form-data; boundary=x", 415),
    ("application/xml", 415),
])
def test_content_type(dev_app, content_type, expected):
    headers = {"Content-Type": content_type} if content_type else {}
    response = dev_app.test_client().post(f"/cds-services/{PV}", data=orjson.dumps(hr.patient_view()),
                                          headers=headers)
    assert response.status_code == expected, response.get_data(as_text=True)
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("service_id", ["a" * 65, "bad id", "x;y", "caf\u00e9", "<script>", "%00"])
def test_a_service_id_that_cannot_be_an_id_is_404_without_echo(dev_app, service_id):
    response = dev_app.test_client().post(f"/cds-services/{service_id}", json=hr.patient_view())
    assert response.status_code == 404
    assert service_id not in response.get_data(as_text=True)
    response = dev_app.test_client().post(f"/cds-services/{service_id}/feedback", json={"feedback": []})
    assert response.status_code == 404


def test_an_unknown_well_formed_service_id_is_404_without_echo(dev_app):
    response = dev_app.test_client().post("/cds-services/no-such-service-Zk3", json=hr.patient_view())
    assert response.status_code == 404
    assert "no-such-service-Zk3" not in response.get_data(as_text=True)


def test_a_malformed_service_id_is_404_even_without_a_token(secured_app):
    assert secured_app.test_client().post("/cds-services/" + "a" * 65, json={}).status_code == 404
    assert secured_app.test_client().post(f"/cds-services/{PV}", json={}).status_code == 401


def test_unknown_fields_and_extensions_are_tolerated(dev_app, catalog):
    _, body = valid_request(catalog, "patient-view", 5)
    body["extension"] = {"org.example.anything": {"deep": [1, {"x": None}]}}
    body["context"]["extension"] = {"org.example": True}
    body["somethingNew"] = [1, 2, 3]
    body["prefetch"]["unusedKey"] = {"resourceType": "Basic"}
    response = dev_app.test_client().post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_bad_prefetch_key_is_not_echoed_in_the_error(dev_app):
    body = hr.patient_view(prefetch={"<img src=x>" + "k" * 80: 42})
    response = dev_app.test_client().post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["prefetch"]
    assert "<img" not in response.get_data(as_text=True)


# --- crashes the campaign once found in fhir_mapping/ and assessment/: each is one field of a
# --- valid request set to a wrongly typed value; now a 400 naming the resource and the field.

WRONGLY_TYPED_FIELDS = [
    # (hook, pain score (>7: MSCC scenario), resource id, field, value, where it crashes)
    ("patient-view", 5, "p1-peg", "status", ["completed"],
     "TypeError at fhir_mapping/medications.py:46 (unhashable status in status_skip)"),
    ("patient-view", 5, "p1-peg", "medicationReference", "Medication/x",
     "AttributeError at fhir_mapping/medications.py:75 (medicationReference not an object)"),
    ("patient-view", 5, "p1-pain", "code", {"coding": ["72514-3"]},
     "AttributeError at fhir_mapping/matcher.py:92 (a coding that is not an object)"),
    ("patient-view", 5, "p1-pain", "code", {"coding": [{"system": ["http://loinc.org"], "code": "72514-3"}]},
     "TypeError at fhir_mapping/matcher.py:96 (unhashable coding.system)"),
    ("patient-view", 5, "p1-backpain", "code", "M54.50",
     "AttributeError at fhir_mapping/matcher.py:109 (CodeableConcept that is a string)"),
    ("patient-view", 5, "p1-chemo", "status", {"value": "completed"},
     "TypeError at fhir_mapping/procedures.py:21 (unhashable Procedure.status)"),
    ("patient-view", 5, "p1-cancer", "verificationStatus", "confirmed",
     "AttributeError at fhir_mapping/conditions.py:22 (verificationStatus not an object)"),
    ("patient-view", 5, "p1-cancer", "clinicalStatus", {"coding": ["active"]},
     "AttributeError at fhir_mapping/conditions.py:35 (clinicalStatus coding not an object)"),
    ("patient-view", 5, "p1-pain", "status", ["final"],
     "TypeError at fhir_mapping/observations.py:46 (unhashable Observation.status)"),
    ("patient-view", 9, "p1-retention", "clinicalStatus", {"coding": [{"code": {"x": 1}}]},
     "TypeError in find_red_flags, assessment/rules/mscc_red_flags.py (non-string status reaches the rules)"),
    ("patient-view", 5, "p1-chemo", "id", ["p1-chemo"],
     "card evidence 'Procedure' is not a Type/id reference: schema ValidationError (a 200 with "
     "invalid evidence when validate_responses is off)"),
    ("order-select", 5, "d1", "medicationCodeableConcept", 1,
     "AttributeError at fhir_mapping/matcher.py:109 via medications.py:94 (draft order)"),
]


@pytest.mark.parametrize(
    "hook, score, resource_id, field, value",
    [pytest.param(*case[:5], id=f"{case[2]}.{case[3]}-{i}") for i, case in enumerate(WRONGLY_TYPED_FIELDS)],
)
def test_a_wrongly_typed_fhir_field_is_a_400_naming_the_resource(dev_app, catalog, hook, score, resource_id, field, value):
    service_id, body = valid_request(catalog, hook, score)
    response = dev_app.test_client().post(f"/cds-services/{service_id}", json=set_field(body, resource_id, field, value))
    assert response.status_code == 400, response.get_data(as_text=True)
    issue = response.get_json()["issue"][0]
    assert "is not valid FHIR R4" in issue["diagnostics"]
    if field != "id":
        assert resource_id in issue["diagnostics"] and field in issue["diagnostics"]


# --- values a database or a library refuses: invalid input, never a 500 (issue 9) -----------
# --- each on SQLite and on PostgreSQL (make_any_db_app: the second run skips without a server,
# --- or fails with BACKPAIN_CDS_REQUIRE_SERVERS=1); examples first, then the class.

_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z, the largest a datetime holds
_MAX_JTI = 256  # the seen_jti.jti column
DB_CAMPAIGN = settings(max_examples=60, deadline=None, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture
def secured_any_db_app(make_any_db_app, signer, tmp_path):
    """The secured app (one trusted client) on SQLite and on PostgreSQL."""
    return make_any_db_app(
        public_base_url=BASE,
        limits={"max_body_bytes": 1_000_000},
        auth={"trusted_clients": [{"iss": ISS, "jwks_file": str(signer.write_jwks(tmp_path / "jwks.json"))}]},
    )


def _post_with_claims(client, signer, service_id: str, raw: bytes, **claims):
    path = f"/cds-services/{service_id}"
    token = signer.token(BASE + path, **claims)
    return client.post(path, data=raw, content_type="application/json", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("claims", [
    {"exp": 253402300800}, {"exp": 10**20}, {"iat": 10**20},
    {"nbf": 10**20}, {"exp": -1}, {"jti": "j" * 257}, {"jti": "a\x00b"},
    {"jti": "a\ud800b"}, {"exp": float("inf")}, {"iat": float("nan")},
])
def test_out_of_range_claims_and_unstorable_jti_are_401(secured_any_db_app, signer, catalog, claims):
    service_id, body = valid_request(catalog, "patient-view", 5)
    response = _post_with_claims(secured_any_db_app.test_client(), signer, service_id, orjson.dumps(body), **claims)
    assert response.status_code == 401, (claims, response.status_code)
    assert response.data == b""


def test_the_largest_storable_claims_are_accepted(secured_any_db_app, signer, catalog):
    service_id, body = valid_request(catalog, "patient-view", 5)
    client = secured_any_db_app.test_client()
    for claims in ({"exp": _MAX_NUMERIC_DATE}, {"jti": "j" * _MAX_JTI}, {"jti": "\U0001F600" * _MAX_JTI},
                   {"iat": 0, "nbf": 0}):
        response = _post_with_claims(client, signer, service_id, orjson.dumps(body), **claims)
        assert response.status_code == 200, (claims, response.status_code)


_FAR = 86_400  # timestamps drawn stay a day away from now, so the clock cannot decide a case

_numeric_dates = st.one_of(
    st.integers(_MAX_NUMERIC_DATE - 3, _MAX_NUMERIC_DATE + 3),
    st.floats(_MAX_NUMERIC_DATE - 2, _MAX_NUMERIC_DATE + 2),
    st.integers(_MAX_NUMERIC_DATE + 1, 10**40),
    st.integers(-(10**20), 0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2 * _MAX_NUMERIC_DATE),
)


def _date_ok(value: float, *, future: bool, now: float) -> bool:
    """The service's contract: a finite NumericDate in 1970..9999, on the right side of now."""
    if not (value == value and 0 <= value <= _MAX_NUMERIC_DATE):  # NaN, infinities, out of range
        return False
    return value > now if future else value < now


def test_numeric_dates_across_and_past_the_representable_range(secured_any_db_app, signer, catalog):
    """exp / iat / nbf drawn around 9999-12-31, far past it, negative, NaN, infinite: 200 exactly
    when every one is a representable date on the right side of now, else 401; never a 500."""
    service_id, body = valid_request(catalog, "patient-view", 5)
    raw = orjson.dumps(body)
    client = secured_any_db_app.test_client()

    @DB_CAMPAIGN
    @given(st.fixed_dictionaries({}, optional={"exp": _numeric_dates, "iat": _numeric_dates, "nbf": _numeric_dates}))
    def run(dates):
        now = time.time()
        assume(all(not (now - _FAR < v < now + _FAR) for v in dates.values() if v == v))
        response = _post_with_claims(client, signer, service_id, raw, **dates)
        expected = (
            _date_ok(dates.get("exp", now + _FAR), future=True, now=now)
            and _date_ok(dates.get("iat", now - _FAR), future=False, now=now)
            and ("nbf" not in dates or _date_ok(dates["nbf"], future=False, now=now))
        )
        assert response.status_code == (200 if expected else 401), (dates, response.status_code)

    run()


@st.composite
def jti_values(draw) -> str:
    """Lengths at the edges that matter (0, a few, around the column's 256, around the
    validator's old 512); any characters, one position possibly set to U+0000, a lone surrogate,
    an astral or a control character."""
    n = draw(st.sampled_from([0, 1, 2, 3, 128, 255, _MAX_JTI, _MAX_JTI + 1, _MAX_JTI + 2, 300, 512, 513]))
    chars = draw(st.lists(st.characters(), min_size=n, max_size=n))
    special = draw(st.sampled_from([None, "\x00", "\ud800", "\udfff", "\U0001F600", "\x7f"]))
    if chars and special is not None:
        chars[draw(st.integers(0, n - 1))] = special
    return "".join(chars)


def _jti_contract(jti: str) -> str | None:
    """What the service sees (a JSON round trip pairs adjacent surrogates), if it may accept it."""
    seen = json.loads(json.dumps(jti))
    try:
        seen.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no database can store it
        return None
    return seen if 1 <= len(seen) <= _MAX_JTI and "\x00" not in seen else None


def test_jti_lengths_and_characters_at_the_column_boundary(secured_any_db_app, signer, catalog):
    """jti of any characters at and around the lengths that matter (see ``jti_values``): 200
    exactly when the seen_jti column can hold it (and it is new), 401 otherwise; never a 500 on
    either database."""
    service_id, body = valid_request(catalog, "patient-view", 5)
    raw = orjson.dumps(body)
    client = secured_any_db_app.test_client()
    accepted: set[str] = set()

    @DB_CAMPAIGN
    @given(jti_values())
    def run(jti):
        seen = _jti_contract(jti)
        response = _post_with_claims(client, signer, service_id, raw, jti=jti)
        expected = 200 if seen is not None and seen not in accepted else 401  # a second use is a replay
        assert response.status_code == expected, (len(jti), ascii(jti[:20]), response.status_code)
        if response.status_code == 200:
            accepted.add(seen)

    run()


BAD_FHIR_SERVERS = ["http://[::1/fhir", "http://[127.0.0.1]:18090/fhir", "http://h:99999/fhir"]


@pytest.mark.parametrize("server", BAD_FHIR_SERVERS)
def test_unparseable_fhir_server_is_400(secured_any_db_app, signer, catalog, server):
    client = secured_any_db_app.test_client()
    service_id, body = valid_request(catalog, "patient-view", 5)
    body["fhirServer"] = server
    response, _ = _post_hook(client, signer, service_id, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["resourceType"] == "OperationOutcome"


_url_like = st.tuples(
    st.sampled_from(["http", "https", "HTTP", "ftp", "", "http:", "file"]),
    st.sampled_from(["://", ":/", ":///", "//", ""]),
    st.sampled_from(["[::1", "[::1]", "[127.0.0.1]", "127.0.0.1", "[v1.x]", "h", "", "[", "]", "[::1]]",
                     "u@h", "u:p@[::1]", "ex ample", "[fe80::1%25eth0]", "\u00e9.example", "h\x00"]),
    st.sampled_from(["", ":", ":0", ":80", ":99999", ":-1", ":18090", ":abc", ":65536", ":+80", ":8\u0660"]),
    st.sampled_from(["/fhir", "", "/", "/%00", "?x#y", "/fhir\n", "\\fhir", "/[x]"]),
).map("".join)


def _parses_as_http_url(value: str) -> bool:
    """The contract: urllib reads it as an absolute http(s) URL with a host and a usable port."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def test_any_fhir_server_string_is_a_400_or_answered_never_a_500(secured_any_db_app, signer, catalog):
    """fhirServer built from URL pieces (brackets, ports, schemes) or arbitrary text: a value
    that is not an absolute http(s) URL is 400 naming fhirServer; the rest are answered (the
    prefetch is complete; a server off the allow-list is never contacted)."""
    client = secured_any_db_app.test_client()
    service_id, body = valid_request(catalog, "patient-view", 5)

    @DB_CAMPAIGN
    @given(st.one_of(_url_like, st.text(max_size=40)))
    def run(server):
        response, _ = _post_hook(client, signer, service_id, {**body, "fhirServer": server})
        assert response.status_code in {200, 400, 412}, (server, response.status_code)
        if not _parses_as_http_url(server):
            assert response.status_code == 400, (server, response.status_code)
        if response.status_code == 400:
            assert response.get_json()["issue"][0]["expression"] == ["fhirServer"], server

    run()


# --- long free text: every text matcher examines at most the cap (issue 9, Found 2 class) -------


def test_a_400_kb_drug_text_is_examined_only_up_to_the_cap(tmp_path, signer, catalog, monkeypatch):
    """A signed call whose MedicationRequest text is "heparin " * 50,000 (400 KB; 64 KB of it
    took 9.5 s before the cap), with a CarePlan activity, an ImagingStudy and a Condition as long:
    every configured pattern and the clinical-text component get at most ``max_chars``
    characters, and the matcher's caches keep nothing longer."""
    import dataclasses
    from datetime import UTC, datetime

    from backpain_cds.replay import prefetch_from_resources
    from fhir_mapping import clinical_text
    from fhir_mapping.matcher import matcher_for
    from tests.support.recording_patterns import instrument
    from tools.harness import scenarios

    log: list[tuple[str, int]] = []
    base = load_knowledge()
    knowledge = dataclasses.replace(base, matching=instrument(base.matching, log))
    cap = knowledge.matching.text.max_chars
    real_findings = clinical_text.findings
    monkeypatch.setattr(clinical_text, "findings",
                        lambda text, config=None: log.append(("clinical text", len(text))) or real_findings(text, config))
    app = create_app(Settings.from_mapping({
        "public_base_url": BASE,
        "database_url": f"sqlite:///{tmp_path / 'long.sqlite3'}",
        "validate_responses": True,
        "auth": {"trusted_clients": [{"iss": ISS, "jwks_file": str(signer.write_jwks(tmp_path / "jwks.json"))}]},
    }), knowledge=knowledge)
    now = datetime.now(UTC)
    long_text = "heparin " * 50_000
    assert len(long_text) == 400_000
    resources = scenarios.gcsf_bone_pain("p1", now, score=5) + [
        {"resourceType": "MedicationRequest", "id": "long-med", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "authoredOn": now.isoformat(),
         "medicationCodeableConcept": {"text": long_text}},
        {"resourceType": "MedicationRequest", "id": "long-gcsf", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "authoredOn": now.isoformat(),
         "medicationCodeableConcept": {"text": "pegfilgrastim " * 30_000},
         "dosageInstruction": [{"text": "on-body injector " * 25_000}]},
        {"resourceType": "CarePlan", "id": "long-plan", "status": "active", "intent": "plan",
         "subject": {"reference": "Patient/p1"}, "created": now.isoformat(),
         "activity": [{"detail": {"status": "scheduled", "description": "chemo " * 70_000}}]},
        {"resourceType": "ImagingStudy", "id": "long-study", "status": "available",
         "subject": {"reference": "Patient/p1"}, "started": now.isoformat(),
         "description": "MRI " * 100_000},
        {"resourceType": "Condition", "id": "long-condition", "subject": {"reference": "Patient/p1"},
         "code": {"text": "no " + "back pain " * 40_000}},
    ]
    body = hr.patient_view("p1", prefetch=prefetch_from_resources(catalog.resolve(PV, "patient-view"), resources))
    response, _ = _post_hook(app.test_client(), signer, PV, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert log, "no text matcher ran"
    assert max(length for _, length in log) <= cap
    examined = {name for name, length in log if length == cap}  # these got a capped long text
    assert {"[[medication.drug]] anticoagulant text", "[medication] on_body_injector_text",
            "[chemotherapy_order] text", "[[imaging]] spine-mri text", "clinical text"} <= examined, examined
    matcher = matcher_for(knowledge.valuesets, knowledge.matching)
    for cache in (matcher._text_cache, matcher._concept_cache, matcher.patterns._drugs, matcher.patterns._chemo):
        strings = [k for key in cache.data for k in (key if isinstance(key, tuple) else (key,)) if isinstance(k, str)]
        assert all(len(k) <= cap for k in strings)


# --- chunked bodies are counted while they stream (issue 9, Found 5) --------------------------
class _Stream:
    """A chunked request body as a WSGI server hands it over: no length, read until empty."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) - self.pos if size is None or size < 0 else size
        chunk = self.data[self.pos:self.pos + min(size, 8192)]
        self.pos += len(chunk)
        self.read_bytes += len(chunk)
        return chunk


def _post_chunked(app, path: str, data: bytes):
    from werkzeug.test import EnvironBuilder

    stream = _Stream(data)
    environ = EnvironBuilder(path=path, method="POST", headers={"Content-Type": "application/json",
                                                                "Transfer-Encoding": "chunked"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    with app.request_context(environ):
        response = app.full_dispatch_request()
    return response, stream


@pytest.mark.parametrize("path", [f"/cds-services/{PV}", f"/cds-services/{PV}/feedback"])
def test_a_chunked_body_over_the_limit_is_413_and_not_read_past_it(dev_app, path):
    limit = dev_app.config["MAX_CONTENT_LENGTH"]
    data = orjson.dumps({"feedback": []}) + b" " * (limit + 10_000) + b"garbage"
    response, stream = _post_chunked(dev_app, path, data)
    assert response.status_code == 413
    assert response.get_json()["issue"][0]["code"] == "too-costly"
    assert stream.read_bytes <= limit + 1 + 8192  # counted while streaming, stopped at the limit


def test_a_chunked_body_under_the_limit_is_read_whole(dev_app):
    entry = {"card": str(uuid.uuid4()), "outcome": "overridden",
             "overrideReason": {"userComment": "fine"}, "outcomeTimestamp": "2026-01-02T03:04:05Z"}
    response, _ = _post_chunked(dev_app, f"/cds-services/{PV}/feedback",
                                orjson.dumps({"feedback": [entry]}) + b" " * 500_000)
    assert response.status_code == 200
