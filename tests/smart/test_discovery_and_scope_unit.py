"""Discovery document checks and granted-scope parsing, on hand-built inputs."""

from __future__ import annotations

import pytest

from smart_launch.discovery import DiscoveryError, parse_smart_configuration
from smart_launch.launch import smart_scope
from smart_launch.views import granted_types, query_type

ISS = "https://ehr.example.org/fhir/r4"


def _doc(**changes):
    doc = {
        "authorization_endpoint": "https://ehr.example.org/auth/authorize",
        "token_endpoint": "https://ehr.example.org/auth/token",
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "client-public"],
        "issuer": "https://ehr.example.org",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_a_complete_document_is_accepted() -> None:
    config = parse_smart_configuration(_doc(), ISS)
    assert config.token_endpoint == "https://ehr.example.org/auth/token"
    assert config.issuer == "https://ehr.example.org"


def test_relative_endpoints_resolve_against_the_fhir_base() -> None:
    config = parse_smart_configuration(_doc(authorization_endpoint="auth/authorize"), ISS)
    assert config.authorization_endpoint == f"{ISS}/auth/authorize"


@pytest.mark.parametrize("changes", [
    {"code_challenge_methods_supported": ["plain"]},
    {"code_challenge_methods_supported": "S256"},
    {"grant_types_supported": None},
    {"capabilities": None},
    {"token_endpoint": "http://ehr.example.org/token"},
    {"token_endpoint": "javascript:alert(1)"},
    {"authorization_endpoint": ""},
])
def test_incomplete_or_unsafe_documents_are_refused(changes) -> None:
    with pytest.raises(DiscoveryError):
        parse_smart_configuration(_doc(**changes), ISS)


def test_a_non_object_is_refused() -> None:
    with pytest.raises(DiscoveryError):
        parse_smart_configuration(["S256"], ISS)


def test_loopback_http_endpoints_are_allowed_for_development() -> None:
    config = parse_smart_configuration(_doc(token_endpoint="http://127.0.0.1:9/token"), ISS)
    assert config.token_endpoint == "http://127.0.0.1:9/token"


@pytest.mark.parametrize("scope, types", [
    ("launch patient/Observation.rs patient/Patient.r", {"Observation"}),
    ("patient/*.rs openid", None),
    ("user/*.read", None),
    ("patient/Condition.read patient/Procedure.cruds", {"Condition", "Procedure"}),
    ("patient/Observation.rs?category=laboratory", {"Observation"}),
    ("launch openid", set()),
    ("patient/Observation.sr", set()),  # out of order: not a valid v2 scope
])
def test_granted_types(scope, types) -> None:
    assert granted_types(scope) == types


def test_requested_scope_and_query_types() -> None:
    assert smart_scope(["Observation", "Patient", "Observation"]) == (
        "launch patient/Observation.rs patient/Patient.rs"
    )
    assert query_type("Patient/123") == "Patient"
    assert query_type("Observation?patient=1&code=x") == "Observation"
