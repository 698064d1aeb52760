"""Client-JWT verification (CDS Hooks 2.0.1 "Trusting CDS Clients"): cds_hooks.auth (the verifier and its parts)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from joserfc.errors import SecurityWarning
from joserfc.jwk import RSAKey

from cds_hooks.auth import (
    AuthenticationFailed,
    AuthPolicy,
    ClientAuthenticator,
    InMemoryJtiStore,
    TrustedClient,
)
from cds_hooks.auth.errors import FAILURE_REASONS
from cds_hooks.auth.verifier import VerifiedClient
from tests.support.clock import FakeClock
from tests.support.jwt_factory import (
    DROP,
    JwksServer,
    TestSigner,
    b64url,
    hmac_token,
    jwks_of,
    tamper_payload,
    unsigned_token,
)

NOW = 1_800_000_000.0
ISS = "https://ehr.example.org"
SERVICE_URL = "https://cds.example.org/cds-services/back-pain-after-chemo"
DISCOVERY_URL = "https://cds.example.org/cds-services"


@pytest.fixture
def es_signer(clock: FakeClock) -> TestSigner:
    return TestSigner("ES384", iss=ISS, clock=clock)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    """One RSA 2048 key pair for the module (generation is slow)."""
    return RSAKey.generate_key(2048)


@pytest.fixture
def rs_signer(clock: FakeClock, rsa_key: RSAKey) -> TestSigner:
    return TestSigner("RS384", iss=ISS, clock=clock, key=rsa_key)


@pytest.fixture(params=["es_signer", "rs_signer"])
def signer(request: pytest.FixtureRequest) -> TestSigner:
    """Each registered signer in turn (ES384, then RS384)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def jwks_file(tmp_path: Path, es_signer: TestSigner, rs_signer: TestSigner) -> Path:
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(jwks_of(es_signer, rs_signer)), encoding="utf-8")
    return path


@pytest.fixture
def jti_store(clock: FakeClock) -> InMemoryJtiStore:
    return InMemoryJtiStore(clock=clock)


def make_authenticator(
    jwks_file: Path,
    clock: FakeClock,
    jti_store: InMemoryJtiStore | None = None,
    *,
    tenant: str | None = None,
    **policy: object,
) -> ClientAuthenticator:
    return ClientAuthenticator(
        [TrustedClient(iss=ISS, jwks_file=jwks_file, tenant=tenant)],
        jti_store=jti_store or InMemoryJtiStore(clock=clock),
        policy=AuthPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.fixture
def auth(jwks_file: Path, clock: FakeClock, jti_store: InMemoryJtiStore) -> ClientAuthenticator:
    return make_authenticator(jwks_file, clock, jti_store)


def rejects(auth: ClientAuthenticator, token: str | None, audience: str = SERVICE_URL) -> AuthenticationFailed:
    header = None if token is None else f"Bearer {token}"
    with pytest.raises(AuthenticationFailed) as info:
        auth.verify(header, audience)
    return info.value


# -- valid tokens ------------------------------------------------------------------


def test_valid_token_is_accepted_for_es384_and_rs384(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, jti="jti-1")

    verified = auth.verify(f"Bearer {token}", SERVICE_URL)

    assert verified == VerifiedClient(
        iss=ISS,
        jti="jti-1",
        tenant=None,
        kid=signer.kid,
        expires_at=datetime.fromtimestamp(NOW + 300, tz=UTC),
    )


def test_bearer_scheme_is_case_insensitive(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    assert auth.verify(f"bearer {es_signer.token(SERVICE_URL)}", SERVICE_URL).iss == ISS


def test_sandbox_shaped_token_is_accepted(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    # The sandbox sends iat rounded up to 0.5 s into the future; Epic adds nbf = iat - 5 min and sub.
    token = es_signer.token(SERVICE_URL, iat=NOW + 0.5, nbf=NOW - 300, sub="someone", exp=NOW + 300.5)
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_aud_as_array_containing_the_endpoint_is_accepted(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token([DISCOVERY_URL, SERVICE_URL])
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_typ_is_compared_case_insensitively(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    token = es_signer.token(SERVICE_URL, header_overrides={"typ": "jwt"})
    assert auth.verify(f"Bearer {token}", SERVICE_URL).kid == es_signer.kid


# -- time ------------------------------------------------------------------------


def test_expired_token_is_rejected(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, iat=NOW - 400, exp=NOW - 61)
    assert rejects(auth, token).reason == "expired"


def test_exp_just_past_but_within_leeway_is_accepted(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, iat=NOW - 330, exp=NOW - 30)
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_exp_exactly_at_the_leeway_edge_is_accepted(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, iat=NOW - 360, exp=NOW - 60)
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_iat_half_a_second_in_the_future_is_accepted(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, iat=NOW + 0.5)
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_iat_ten_minutes_in_the_future_is_rejected(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, iat=NOW + 600, exp=NOW + 900)
    assert rejects(auth, token).reason == "iat-in-future"


def test_nbf_in_the_past_is_accepted(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, nbf=NOW - 300)
    assert auth.verify(f"Bearer {token}", SERVICE_URL).iss == ISS


def test_nbf_in_the_future_is_rejected(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL, nbf=NOW + 120)
    assert rejects(auth, token).reason == "not-yet-valid"


def test_max_token_age_rejects_old_iat(jwks_file: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    auth = make_authenticator(jwks_file, clock, max_token_age_seconds=600)
    old = es_signer.token(SERVICE_URL, iat=NOW - 601, exp=NOW + 3600)
    young = es_signer.token(SERVICE_URL, iat=NOW - 599, exp=NOW + 3600)

    assert rejects(auth, old).reason == "too-old"
    assert auth.verify(f"Bearer {young}", SERVICE_URL).iss == ISS


@pytest.mark.parametrize("value", ["1800000300", True, None, 1e300, 10**400, -5, [1]])
def test_non_numeric_or_absurd_exp_is_malformed(
    auth: ClientAuthenticator, es_signer: TestSigner, value: object
) -> None:
    assert rejects(auth, es_signer.token(SERVICE_URL, exp=value)).reason == "malformed"


# -- audience --------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "https://cds.example.org/cds-services/gcsf-order-review",
        SERVICE_URL + "/",
        SERVICE_URL.upper(),
        "http://cds.example.org/cds-services/back-pain-after-chemo",
        [DISCOVERY_URL],
        [],
    ],
)
def test_wrong_aud_is_rejected(auth: ClientAuthenticator, signer: TestSigner, aud: object) -> None:
    assert rejects(auth, signer.token(aud)).reason == "aud-mismatch"  # type: ignore[arg-type]


def test_discovery_token_replayed_on_a_service_url_is_rejected(
    auth: ClientAuthenticator, es_signer: TestSigner
) -> None:
    token = es_signer.token(DISCOVERY_URL)
    assert auth.verify(f"Bearer {token}", DISCOVERY_URL).iss == ISS  # fine where it was meant for

    assert rejects(auth, token, audience=SERVICE_URL).reason == "aud-mismatch"


def test_aud_of_wrong_type_is_malformed(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    assert rejects(auth, es_signer.token({"url": SERVICE_URL})).reason == "malformed"  # type: ignore[arg-type]


# -- issuer, keys, jku -------------------------------------------------------------


def test_unknown_iss_is_rejected(auth: ClientAuthenticator, clock: FakeClock) -> None:
    stranger = TestSigner("ES384", iss="https://evil.example.org", clock=clock)
    failure = rejects(auth, stranger.token(SERVICE_URL))
    assert (failure.reason, failure.iss) == ("unknown-iss", "https://evil.example.org")


def test_token_from_an_unregistered_key_of_a_trusted_iss_is_rejected(
    auth: ClientAuthenticator, clock: FakeClock
) -> None:
    impostor = TestSigner("ES384", iss=ISS, clock=clock)
    failure = rejects(auth, impostor.token(SERVICE_URL))
    assert (failure.reason, failure.kid) == ("unknown-kid", impostor.kid)


def test_impostor_reusing_a_known_kid_fails_the_signature(
    auth: ClientAuthenticator, es_signer: TestSigner, clock: FakeClock
) -> None:
    impostor = TestSigner("ES384", iss=ISS, kid=es_signer.kid, clock=clock)
    assert rejects(auth, impostor.token(SERVICE_URL)).reason == "bad-signature"


def test_missing_kid_is_rejected(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    token = es_signer.token(SERVICE_URL, header_overrides={"kid": DROP})
    assert rejects(auth, token).reason == "missing-kid"


def test_kid_of_a_key_of_the_wrong_type_is_a_key_mismatch(
    auth: ClientAuthenticator, es_signer: TestSigner, rs_signer: TestSigner
) -> None:
    # ES384 token naming the RSA key's kid: the RSA key must not be tried for ECDSA.
    token = es_signer.token(SERVICE_URL, header_overrides={"kid": rs_signer.kid})
    assert rejects(auth, token).reason == "key-mismatch"


@pytest.mark.parametrize("jwk_params", [{"use": "enc"}, {"alg": "ES256"}, {"key_ops": ["sign"]}])
def test_jwk_restrictions_are_honoured(tmp_path: Path, clock: FakeClock, jwk_params: dict[str, object]) -> None:
    signer = TestSigner("ES384", iss=ISS, clock=clock)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [signer.public_jwk(**jwk_params)]}), encoding="utf-8")
    auth = make_authenticator(path, clock)

    assert rejects(auth, signer.token(SERVICE_URL)).reason == "key-mismatch"


def test_ec_key_on_another_curve_is_a_key_mismatch(tmp_path: Path, clock: FakeClock) -> None:
    p256 = TestSigner("ES256", iss=ISS, clock=clock)
    auth = make_authenticator(p256.write_jwks(tmp_path / "jwks.json"), clock)
    token = p256.token(SERVICE_URL)
    header, payload, signature = token.split(".")
    relabelled = f"{b64url({**p256.header(), 'alg': 'ES384'})}.{payload}.{signature}"

    assert rejects(auth, relabelled).reason == "key-mismatch"


def test_rsa_key_shorter_than_2048_bits_is_never_used(tmp_path: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    with pytest.warns(SecurityWarning):  # joserfc warns when generating a short key
        weak = TestSigner("RS384", iss=ISS, clock=clock, rsa_bits=1024)
    token = weak.token(SERVICE_URL)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(weak, es_signer)), encoding="utf-8")
    auth = make_authenticator(path, clock)  # the weak key is dropped at load, without a warning

    assert rejects(auth, token).reason == "unknown-kid"


def test_symmetric_keys_in_a_jwks_are_ignored(tmp_path: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    secret = b"attacker-known-secret-1234567890"
    oct_key = {"kty": "oct", "kid": "shared", "k": b64url(secret)}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [oct_key, es_signer.public_jwk()]}), encoding="utf-8")
    auth = make_authenticator(path, clock, algorithms=("ES384",))
    token = hmac_token({"alg": "HS256", "typ": "JWT", "kid": "shared"}, es_signer.claims(SERVICE_URL), secret)

    assert rejects(auth, token).reason == "alg-not-allowed"
    assert auth.verify(f"Bearer {es_signer.token(SERVICE_URL)}", SERVICE_URL).iss == ISS


@pytest.fixture
def counting_servers(es_signer: TestSigner, clock: FakeClock):
    """The EHR's allow-listed JWKS server and an attacker's one, both counting hits."""
    attacker = TestSigner("ES384", iss=ISS, clock=clock)
    with JwksServer(es_signer.jwks()) as ehr, JwksServer(attacker.jwks()) as evil:
        yield ehr, evil, attacker


def url_authenticator(jwks_url: str, clock: FakeClock, **policy: object) -> ClientAuthenticator:
    session = requests.Session()
    session.trust_env = False
    return ClientAuthenticator(
        [TrustedClient(iss=ISS, jwks_url=jwks_url)],
        jti_store=InMemoryJtiStore(clock=clock),
        policy=AuthPolicy(**policy),  # type: ignore[arg-type]
        session=session,
        clock=clock,
    )


def test_jku_not_on_the_allow_list_is_rejected_and_never_fetched(counting_servers, clock: FakeClock) -> None:
    ehr, evil, attacker = counting_servers
    auth = url_authenticator(ehr.url, clock)
    evil_urls = [
        evil.url,
        ehr.base_url + "/other-jwks.json",
        f"http://127.0.0.1:{ehr.url.split(':')[2].split('/')[0]}@{evil.url[len('http://'):]}",
        ehr.url + "?x=1",
        ehr.url + "#frag",
    ]

    for url in evil_urls:
        token = attacker.token(SERVICE_URL, header_overrides={"jku": url})
        assert rejects(auth, token).reason == "jku-not-allowed"

    assert evil.total_hits == 0
    assert ehr.total_hits == 0


def test_jku_equal_to_the_allow_listed_url_is_accepted(
    counting_servers, es_signer: TestSigner, clock: FakeClock
) -> None:
    ehr, evil, _ = counting_servers
    auth = url_authenticator(ehr.url, clock)

    for _ in range(2):
        token = es_signer.token(SERVICE_URL, header_overrides={"jku": ehr.url})
        assert auth.verify(f"Bearer {token}", SERVICE_URL).kid == es_signer.kid
    assert ehr.hits == {"/jwks.json": 1}
    assert evil.total_hits == 0


def test_jku_with_a_pinned_jwks_file_is_rejected_by_default(
    counting_servers, jwks_file: Path, clock: FakeClock, es_signer: TestSigner
) -> None:
    _, evil, _ = counting_servers
    token = es_signer.token(SERVICE_URL, header_overrides={"jku": evil.url})

    strict = make_authenticator(jwks_file, clock)
    assert rejects(strict, token).reason == "jku-not-allowed"

    sandbox_mode = make_authenticator(jwks_file, clock, allow_jku_with_jwks_file=True)
    assert sandbox_mode.verify(f"Bearer {token}", SERVICE_URL).kid == es_signer.kid
    assert evil.total_hits == 0


@pytest.mark.parametrize(
    ("jku", "same"),
    [
        ("https://EHR.example.org/jwks.json", True),
        ("HTTPS://ehr.example.org:443/jwks.json", True),
        ("https://ehr.example.org/jwks.json", True),
        ("https://ehr.example.org:8443/jwks.json", False),
        ("http://ehr.example.org/jwks.json", False),
        ("https://ehr.example.org/JWKS.json", False),
        ("https://ehr.example.org/jwks.json/", False),
        ("https://ehr.example.org/jwks.json?", True),
        ("https://ehr.example.org/jwks.json?a=1", False),
        ("https://ehr.example.org@evil.example.org/jwks.json", False),
        ("https://evil.example.org/jwks.json#https://ehr.example.org/jwks.json", False),
        ("//ehr.example.org/jwks.json", False),
        ("https://ehr.example.org:bad/jwks.json", False),
    ],
)
def test_jku_comparison_normalises_only_trivially(jku: str, same: bool) -> None:
    from cds_hooks.auth.policy import comparable_url

    assert (comparable_url(jku) == comparable_url("https://ehr.example.org/jwks.json")) is same


def test_keys_embedded_in_the_header_are_never_used(auth: ClientAuthenticator, clock: FakeClock) -> None:
    attacker = TestSigner("ES384", iss=ISS, clock=clock)
    token = attacker.token(
        SERVICE_URL,
        header_overrides={"jwk": attacker.public_jwk(), "x5u": "https://evil.example.org/cert.pem"},
    )
    assert rejects(auth, token).reason == "unknown-kid"


def test_long_header_within_reason_is_accepted(jwks_file: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    auth = make_authenticator(jwks_file, clock, allow_jku_with_jwks_file=True)
    long_jku = "https://ehr.example.org/interconnect/api/epic/2019/Security/Open/PublicKeys/" + "9" * 400
    token = es_signer.token(SERVICE_URL, header_overrides={"jku": long_jku})
    assert auth.verify(f"Bearer {token}", SERVICE_URL).kid == es_signer.kid


# -- algorithms --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(auth: ClientAuthenticator, es_signer: TestSigner, alg: str) -> None:
    token = unsigned_token({**es_signer.header(), "alg": alg}, es_signer.claims(SERVICE_URL))
    assert rejects(auth, token).reason == "alg-not-allowed"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_as_secret_is_rejected(
    auth: ClientAuthenticator, signer: TestSigner, alg: str
) -> None:
    # The classic alg-confusion attack: the public key (PEM or JWK JSON) used as an HMAC secret.
    for secret in (signer.public_pem(), json.dumps(signer.public_jwk()).encode()):
        token = hmac_token({**signer.header(), "alg": alg}, signer.claims(SERVICE_URL), secret)
        assert rejects(auth, token).reason == "alg-not-allowed"


def test_hmac_signature_under_an_asymmetric_alg_label_fails(auth: ClientAuthenticator, rs_signer: TestSigner) -> None:
    forged = hmac_token({**rs_signer.header(), "alg": "HS384"}, rs_signer.claims(SERVICE_URL), rs_signer.public_pem())
    header, payload, signature = forged.split(".")
    relabelled = f"{b64url(rs_signer.header())}.{payload}.{signature}"
    assert rejects(auth, relabelled).reason == "bad-signature"


def test_alg_outside_the_policy_is_rejected(jwks_file: Path, clock: FakeClock, rs_signer: TestSigner) -> None:
    auth = make_authenticator(jwks_file, clock, algorithms=("ES384",))
    assert rejects(auth, rs_signer.token(SERVICE_URL)).reason == "alg-not-allowed"


@pytest.mark.parametrize(
    "algorithms",
    [("HS256",), ("ES384", "hs512"), ("none",), ("ES384", "None"), (), ("XYZ",), "ES384"],
)
def test_policy_listing_none_hmac_or_unknown_algs_is_refused(algorithms: object) -> None:
    with pytest.raises(ValueError):
        AuthPolicy(algorithms=algorithms)  # type: ignore[arg-type]


def test_policy_refuses_negative_or_zero_limits() -> None:
    with pytest.raises(ValueError, match="leeway_seconds"):
        AuthPolicy(leeway_seconds=-1)
    with pytest.raises(ValueError, match="jwks_max_bytes"):
        AuthPolicy(jwks_max_bytes=0)


def test_tampered_payload_fails_the_signature(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(DISCOVERY_URL)
    forged = tamper_payload(token, aud=SERVICE_URL)
    assert rejects(auth, forged).reason == "bad-signature"


def test_signature_from_another_token_fails(auth: ClientAuthenticator, signer: TestSigner) -> None:
    first, second = signer.token(SERVICE_URL).split("."), signer.token(SERVICE_URL).split(".")
    assert rejects(auth, ".".join([first[0], first[1], second[2]])).reason == "bad-signature"


# -- header and claim shape ------------------------------------------------------------


@pytest.mark.parametrize("claim", ["jti", "iat", "exp", "aud"])
def test_missing_required_claim_is_rejected(auth: ClientAuthenticator, signer: TestSigner, claim: str) -> None:
    assert rejects(auth, signer.token(SERVICE_URL, **{claim: DROP})).reason == "missing-claim"


def test_missing_iss_is_rejected(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    assert rejects(auth, es_signer.token(SERVICE_URL, iss=DROP)).reason == "missing-claim"


@pytest.mark.parametrize("jti", ["", 42, None, "x" * 600])
def test_bad_jti_is_malformed(auth: ClientAuthenticator, es_signer: TestSigner, jti: object) -> None:
    assert rejects(auth, es_signer.token(SERVICE_URL, jti=jti)).reason == "malformed"


@pytest.mark.parametrize("typ", ["JWS", "at+jwt", "", DROP, 1])
def test_wrong_or_missing_typ_is_rejected(auth: ClientAuthenticator, es_signer: TestSigner, typ: object) -> None:
    token = es_signer.token(SERVICE_URL, header_overrides={"typ": typ})
    assert rejects(auth, token).reason == "typ"


def test_crit_header_is_rejected(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    token = es_signer.token(SERVICE_URL, header_overrides={"crit": ["exp"], "exp": 1})
    assert rejects(auth, token).reason == "malformed"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing-token"),
        ("", "missing-token"),
        ("   ", "missing-token"),
        ("Bearer", "missing-token"),
        ("Basic dXNlcjpwYXNz", "missing-token"),
        ("Bearer a.b.c extra", "malformed"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer a.b", "malformed"),
        ("Bearer a.b.c.d.e", "malformed"),
        ("Bearer e30.e30.", "alg-not-allowed"),
        ("Bearer !!!.e30.sig", "malformed"),
        ("Bearer " + b64url("[]") + ".e30.c2ln", "malformed"),
        ("Bearer " + b64url({"alg": "ES384"}) + "." + b64url("not json") + ".c2ln", "malformed"),
        ("Bearer " + "A" * 20_000 + ".e30.c2ln", "malformed"),
    ],
)
def test_bad_authorization_header_is_rejected(auth: ClientAuthenticator, header: str | None, reason: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        auth.verify(header, SERVICE_URL)
    assert info.value.reason == reason


# -- tenant ----------------------------------------------------------------------------


def test_tenant_must_match_the_configured_tenant(jwks_file: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    auth = make_authenticator(jwks_file, clock, tenant="hospital-a")

    assert rejects(auth, es_signer.token(SERVICE_URL, tenant="hospital-b")).reason == "tenant"
    assert rejects(auth, es_signer.token(SERVICE_URL)).reason == "tenant"
    verified = auth.verify(f"Bearer {es_signer.token(SERVICE_URL, tenant='hospital-a')}", SERVICE_URL)
    assert verified.tenant == "hospital-a"


def test_tenant_is_passed_through_when_none_is_configured(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    assert auth.verify(f"Bearer {es_signer.token(SERVICE_URL, tenant='t1')}", SERVICE_URL).tenant == "t1"


# -- replay --------------------------------------------------------------------------------


def test_replayed_jti_is_rejected_on_second_use(auth: ClientAuthenticator, signer: TestSigner) -> None:
    token = signer.token(SERVICE_URL)
    auth.verify(f"Bearer {token}", SERVICE_URL)

    failure = rejects(auth, token)

    assert failure.reason == "replay"
    assert rejects(auth, signer.token(SERVICE_URL, jti=failure.jti)).reason == "replay"


def test_jti_is_remembered_until_exp_plus_leeway(es_signer: TestSigner, jwks_file: Path, clock: FakeClock) -> None:
    calls: list[tuple[str, str, datetime]] = []

    class RecordingStore:
        def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
            calls.append((iss, jti, expires_at))
            return True

    auth = ClientAuthenticator(
        [TrustedClient(iss=ISS, jwks_file=jwks_file)], jti_store=RecordingStore(), clock=clock
    )
    auth.verify(f"Bearer {es_signer.token(SERVICE_URL, jti='abc')}", SERVICE_URL)

    assert calls == [(ISS, "abc", datetime.fromtimestamp(NOW + 300 + 60, tz=UTC))]


def test_jti_store_is_not_touched_when_another_check_fails(
    es_signer: TestSigner, jwks_file: Path, clock: FakeClock
) -> None:
    store = InMemoryJtiStore(clock=clock)
    auth = make_authenticator(jwks_file, clock, store)
    rejects(auth, es_signer.token(DISCOVERY_URL, jti="j"))
    assert len(store) == 0


def test_in_memory_jti_store_forgets_expired_entries(clock: FakeClock) -> None:
    store = InMemoryJtiStore(clock=clock)
    until = datetime.fromtimestamp(NOW + 10, tz=UTC)
    assert store.remember(ISS, "a", until) is True
    assert store.remember(ISS, "a", until) is False
    assert store.remember("https://other.example.org", "a", until) is True
    clock.now += 11
    assert store.remember(ISS, "a", until) is True


# -- no token leaks ------------------------------------------------------------------------


def test_failures_never_expose_the_token_and_log_one_line(
    auth: ClientAuthenticator, es_signer: TestSigner, caplog: pytest.LogCaptureFixture
) -> None:
    good = es_signer.token(SERVICE_URL)
    auth.verify(f"Bearer {good}", SERVICE_URL)
    tokens = [
        good,  # replay
        es_signer.token(SERVICE_URL, exp=NOW - 3600),
        es_signer.token(DISCOVERY_URL),
        tamper_payload(es_signer.token(SERVICE_URL), jti="x"),
        unsigned_token({**es_signer.header(), "alg": "none"}, es_signer.claims(SERVICE_URL)),
        hmac_token({**es_signer.header(), "alg": "HS256"}, es_signer.claims(SERVICE_URL), es_signer.public_pem()),
        es_signer.token(SERVICE_URL, header_overrides={"typ": "JWS"}),
        es_signer.token(SERVICE_URL, iss="https://evil.example.org"),
        es_signer.token(SERVICE_URL, header_overrides={"kid": "nope"}),
        es_signer.token(SERVICE_URL, jti=DROP),
        es_signer.token(SERVICE_URL, header_overrides={"jku": "https://evil.example.org/jwks"}),
        "Zm9v.YmFy.YmF6",
    ]
    for token in tokens:
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            failure = rejects(auth, token)

        texts = [str(failure), repr(failure), *map(str, failure.args), *map(str, vars(failure).values())]
        records = [r for r in caplog.records if r.name == "backpain_cds.auth"]
        texts += [r.getMessage() for r in caplog.records]
        assert failure.__cause__ is None and failure.__context__ is None
        assert failure.reason in FAILURE_REASONS
        assert len(records) == 1 and records[0].levelno == logging.WARNING
        assert f"reason={failure.reason}" in records[0].getMessage()
        for secret in (token, token.split(".")[2] or token, f"Bearer {token}"):
            assert not any(secret in text for text in texts), failure.reason


def test_untrusted_ids_are_sanitised_for_logs(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    token = es_signer.token(SERVICE_URL, header_overrides={"kid": "k\nFAKE LOG LINE\x1b[31m" + "z" * 200})
    failure = rejects(auth, token)
    assert failure.reason == "unknown-kid"
    assert failure.kid is not None
    assert "\n" not in failure.kid and "\x1b" not in failure.kid and len(failure.kid) <= 131


def test_logged_ids_are_the_ones_of_the_token(
    auth: ClientAuthenticator, es_signer: TestSigner, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="backpain_cds.auth"):
        rejects(auth, es_signer.token(DISCOVERY_URL, jti="jti-77"))
    assert caplog.records[-1].getMessage() == (
        f"client JWT rejected: reason=aud-mismatch iss={ISS} kid={es_signer.kid} jti=jti-77"
    )


# -- configuration -----------------------------------------------------------------------------


def test_trusted_client_needs_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of jwks_url or jwks_file"):
        TrustedClient(iss=ISS, jwks_url="https://ehr.example.org/jwks", jwks_file=tmp_path / "j.json")
    with pytest.raises(ValueError, match="one of jwks_url or jwks_file is required"):
        TrustedClient(iss=ISS)


@pytest.mark.parametrize(
    "url",
    [
        "http://ehr.example.org/jwks.json",
        "ftp://ehr.example.org/jwks.json",
        "/jwks.json",
        "https://user:pw@ehr.example.org/jwks.json",
        "https://ehr.example.org/jwks.json#x",
        "https://ehr.example.org:99999/jwks.json",
    ],
)
def test_trusted_client_refuses_unsafe_jwks_urls(url: str) -> None:
    with pytest.raises(ValueError, match="jwks_url"):
        TrustedClient(iss=ISS, jwks_url=url)


def test_trusted_client_accepts_https_and_loopback_http() -> None:
    assert TrustedClient(iss=ISS, jwks_url="https://ehr.example.org/jwks.json").jwks_url
    assert TrustedClient(iss=ISS, jwks_url="http://127.0.0.1:8000/jwks.json").jwks_url
    assert TrustedClient(iss=ISS, jwks_file="keys.json").jwks_file == Path("keys.json")  # type: ignore[arg-type]


def test_authenticator_refuses_duplicate_iss_and_bad_files(tmp_path: Path, jwks_file: Path) -> None:
    store = InMemoryJtiStore()
    client = TrustedClient(iss=ISS, jwks_file=jwks_file)
    with pytest.raises(ValueError, match="twice"):
        ClientAuthenticator([client, client], jti_store=store)
    with pytest.raises(ValueError):
        ClientAuthenticator([], jti_store=store)
    bad = tmp_path / "bad.json"
    for content in ("not json", '{"keys": "x"}', '{"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}'):
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match="trusted client"):
            ClientAuthenticator([TrustedClient(iss=ISS, jwks_file=bad)], jti_store=store)
    with pytest.raises(ValueError, match="trusted client"):
        ClientAuthenticator([TrustedClient(iss=ISS, jwks_file=tmp_path / "missing.json")], jti_store=store)


def test_audience_argument_is_required(auth: ClientAuthenticator, es_signer: TestSigner) -> None:
    with pytest.raises(ValueError):
        auth.verify(f"Bearer {es_signer.token(SERVICE_URL)}", "")


def test_jwks_file_is_reread_when_it_changes(jwks_file: Path, clock: FakeClock, es_signer: TestSigner) -> None:
    auth = make_authenticator(jwks_file, clock)
    rotated = TestSigner("ES384", iss=ISS, clock=clock)
    assert rejects(auth, rotated.token(SERVICE_URL)).reason == "unknown-kid"

    jwks_file.write_text(json.dumps(jwks_of(rotated)), encoding="utf-8")
    stat = jwks_file.stat()
    os.utime(jwks_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    assert auth.verify(f"Bearer {rotated.token(SERVICE_URL)}", SERVICE_URL).kid == rotated.kid
    assert rejects(auth, es_signer.token(SERVICE_URL)).reason == "unknown-kid"


def test_broken_rewrite_of_the_jwks_file_keeps_the_previous_keys(
    jwks_file: Path, clock: FakeClock, es_signer: TestSigner
) -> None:
    auth = make_authenticator(jwks_file, clock)
    jwks_file.write_text('{"keys": [', encoding="utf-8")
    assert auth.verify(f"Bearer {es_signer.token(SERVICE_URL)}", SERVICE_URL).kid == es_signer.kid


def test_policy_is_exposed_and_immutable(auth: ClientAuthenticator) -> None:
    assert auth.policy.algorithms == ("ES384", "RS384")
    with pytest.raises(AttributeError):
        auth.policy.leeway_seconds = 0  # type: ignore[misc]
    assert replace(auth.policy, leeway_seconds=5).leeway_seconds == 5
