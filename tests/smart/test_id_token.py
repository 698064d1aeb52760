"""The OpenID Connect id_token: validated against the EHR's keys, or the session is refused.

Each forged or misdirected id_token comes from the test EHR's token endpoint (authlib's
OpenIDCode extension, one claim changed or signed the wrong way) in an otherwise valid launch:
the callback answers a readable 403 page, opens no session and reads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest

from smart_launch import identity
from tests.smart.conftest import CLIENT_ID, MSCC, patient_of, run_launch

pytestmark = pytest.mark.fhir_server


def _refused(flow, ehr, browser, status: int = 403) -> str:
    answer = flow.callback
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "Traceback" not in html
    assert "Location" not in answer.headers and flow.view is None
    store = browser.application.extensions["smart_launch"]["store"]
    assert store.raw_rows()["smart_session"] == []  # no session
    assert not [path for _, path in ehr.hits if path.startswith("/fhir/") and ".well-known" not in path]
    for id_token in ehr.id_tokens:
        assert id_token not in html
    return html


@pytest.mark.parametrize(
    "claims, words",
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "another-client"}, "aud"),
        ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, "azp"),
        ({"azp": "another-client"}, "azp"),
        ({"nonce": "not-the-nonce-this-sign-in-sent"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"sub": None}, "sub"),
        # the access token's hash, but of another token (22 characters: SHA-256's left half)
        ({"at_hash": "47DEQpj8HBSa-_TImW-5JA"}, "at_hash"),
        ({"at_hash": 12345}, "at_hash"),
    ],
    ids=["wrong-iss", "wrong-aud", "other-azp", "azp-alone", "wrong-nonce", "no-nonce", "expired", "no-sub",
         "wrong-at_hash", "at_hash-not-a-string"],
)
def test_an_id_token_with_wrong_claims_refuses_the_session(browser, ehr, claims, words) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), id_token_claims=claims))
    html = _refused(flow, ehr, browser)
    assert "identity could not be verified" in html and words in html


@pytest.mark.parametrize(
    "signer, words",
    [
        ("stranger", "signature is not valid"),  # another key under the EHR's kid
        ("unknown-kid", "key the EHR does not publish"),
        ("none", "algorithm this app does not accept"),  # unsigned
        ("hs256", "algorithm this app does not accept"),  # HMAC: the algorithm-confusion forgery
    ],
)
def test_an_id_token_not_signed_by_the_ehr_refuses_the_session(browser, ehr, signer, words) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), id_token_signer=signer))
    assert len(ehr.id_tokens) == 1
    html = _refused(flow, ehr, browser)
    assert words in html


def test_a_token_response_id_token_that_is_no_jwt_refuses_the_session(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), extra={"id_token": "not-a-jwt"}))
    assert "not a signed JWT" in _refused(flow, ehr, browser)


def test_an_es256_id_token_is_accepted(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), id_token_signer="es256"))
    assert flow.view is not None and flow.view.status_code == 200
    assert "Practitioner/test-ehr-clinician" in flow.view.get_data(as_text=True)


@pytest.mark.parametrize("signer", ["rs256", "es256"])
def test_the_at_hash_of_the_real_access_token_is_accepted(browser, ehr, signer) -> None:
    """authlib's OpenIDCode puts ``at_hash`` in the id_token: the check passes on a real pair."""
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), id_token_signer=signer))
    assert flow.view is not None and flow.view.status_code == 200
    payload = ehr.id_tokens[-1].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims.get("at_hash"), str) and len(claims["at_hash"]) == 22


def test_at_hash_follows_the_algorithm_s_hash() -> None:
    """OIDC Core §3.1.3.6: the hash is the one of the algorithm's size (256/384/512 bits), the
    value the base64url of its left half; an algorithm naming no such hash is refused."""
    token = "access-token"
    for alg, name in (("RS256", "sha256"), ("ES384", "sha384"), ("PS512", "sha512")):
        full = hashlib.new(name, token.encode()).digest()
        expected = base64.urlsafe_b64encode(full[: len(full) // 2]).rstrip(b"=").decode()
        assert identity._at_hash_matches(expected, token, alg)
        assert not identity._at_hash_matches(expected, token + "x", alg)
    assert not identity._at_hash_matches("x", None, "RS256")
    assert not identity._at_hash_matches("x", token, "EdDSA")  # no hash named: refused


def test_an_algorithm_the_ehr_does_not_advertise_is_refused(browser, ehr) -> None:
    ehr.discovery_overrides = {"id_token_signing_alg_values_supported": ["RS256"]}
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), id_token_signer="es256"))
    assert "algorithm this app does not accept (only RS256)" in _refused(flow, ehr, browser)


def test_the_fhir_user_is_escaped_and_a_non_reference_is_not_shown(browser, ehr) -> None:
    odd = "https://ehr.example/<b>x</b>/Practitioner/p1"
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), fhir_user=odd))
    html = flow.view.get_data(as_text=True)
    assert "https://ehr.example/&lt;b&gt;x&lt;/b&gt;/Practitioner/p1" in html and "<b>x" not in html
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), fhir_user="root"))
    assert flow.view.status_code == 200
    assert "data-user" not in flow.view.get_data(as_text=True)


# --- the EHR's keys ------------------------------------------------------------------------------


def test_the_jwks_is_fetched_once_per_ehr_and_again_for_a_rotated_key(browser, ehr, monkeypatch) -> None:
    for _ in range(2):
        assert run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC))).view.status_code == 200
    assert [path for _, path in ehr.hits].count("/auth/jwks") == 1  # cached
    ehr.rotate_keys()
    # within a minute of the last fetch an unknown kid does not fetch again (no fetch storms)
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert flow.callback.status_code == 403 and flow.view is None
    assert "key the EHR does not publish" in flow.callback.get_data(as_text=True)
    assert [path for _, path in ehr.hits].count("/auth/jwks") == 1
    monkeypatch.setattr(identity, "JWKS_REFRESH_SECONDS", 0)
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert flow.view is not None and flow.view.status_code == 200
    assert [path for _, path in ehr.hits].count("/auth/jwks") == 2


@pytest.mark.parametrize(
    "setup, words",
    [
        ({"jwks_down": True}, "HTTP 503"),
        ({"jwks_override": b"x" * (65 * 1024)}, "too large"),
        ({"jwks_override": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}}, "no RSA or EC"),
        ({"jwks_override": b"<html>"}, "not JSON"),
    ],
    ids=["down", "too-large", "symmetric-only", "not-json"],
)
def test_unusable_ehr_keys_are_a_502_page_and_no_session(browser, ehr, setup, words) -> None:
    for key, value in setup.items():
        setattr(ehr, key, value)
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    html = _refused(flow, ehr, browser, status=502)
    assert "cannot be checked" in html and words in html


def test_an_id_token_from_an_ehr_without_published_keys_is_refused(browser, ehr) -> None:
    ehr.discovery_overrides = {"jwks_uri": None, "capabilities": ["launch-ehr", "client-public"]}
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert ehr.id_tokens
    assert "publishes no issuer and jwks_uri" in _refused(flow, ehr, browser, status=502)


def test_sso_openid_connect_without_jwks_uri_is_refused_at_discovery(browser, ehr) -> None:
    ehr.discovery_overrides = {"jwks_uri": None}
    answer = browser.get("/smart/launch", query_string={"iss": ehr.fhir_url,
                                                        "launch": ehr.add_launch(patient_of(MSCC))})
    assert answer.status_code == 502
    assert "jwks_uri" in answer.get_data(as_text=True)
    assert ehr.authorize_requests == []


def test_the_nonce_is_single_use_with_its_state(browser, ehr) -> None:
    """A replayed callback is refused at the state (before the token endpoint); the nonce went
    with it, so an id_token minted for it can never open a second session."""
    from tests.smart.conftest import local_path

    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert flow.view.status_code == 200
    assert browser.get(local_path(flow.callback_url)).status_code == 400
    assert len(ehr.token_requests) == 1
