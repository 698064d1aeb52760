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


def test_openid_connect_needs_issuer_and_jwks_uri() -> None:
    sso = ["launch-ehr", "sso-openid-connect"]
    config = parse_smart_configuration(_doc(capabilities=sso, jwks_uri="https://ehr.example.org/jwks"), ISS)
    assert config.oidc.jwks_uri == "https://ehr.example.org/jwks"
    assert config.oidc.issuer == "https://ehr.example.org"
    for changes in ({"jwks_uri": None}, {"jwks_uri": "https://ehr.example.org/jwks", "issuer": None}):
        with pytest.raises(DiscoveryError, match="issuer and jwks_uri"):
            parse_smart_configuration(_doc(capabilities=sso, **changes), ISS)
    with pytest.raises(DiscoveryError, match="jwks_uri must be an https URL"):
        parse_smart_configuration(_doc(capabilities=sso, jwks_uri="http://ehr.example.org/jwks"), ISS)
    # without sso-openid-connect neither is required (an id_token would then be refused)
    assert parse_smart_configuration(_doc(), ISS).oidc.jwks_uri is None


@pytest.mark.parametrize("advertised, accepted", [
    (None, ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")),
    (["RS256"], ("RS256",)),
    (["HS256", "none", "ES384", "RS256"], ("RS256", "ES384")),
    (["HS256", "none"], ()),
])
def test_id_token_algorithms_are_asymmetric_and_narrowed_to_the_advertised(advertised, accepted) -> None:
    config = parse_smart_configuration(_doc(id_token_signing_alg_values_supported=advertised), ISS)
    assert config.oidc.algorithms == accepted


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
        "launch openid fhirUser patient/Observation.rs patient/Patient.rs"
    )
    assert query_type("Patient/123") == "Patient"
    assert query_type("Observation?patient=1&code=x") == "Observation"
