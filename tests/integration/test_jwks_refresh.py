"""JWK Set fetching and caching against a real loopback HTTP server: cds_hooks.auth.jwks via cds_hooks.auth.verifier.

Time is an injected clock; nothing sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests

from cds_hooks.auth import (
    AuthenticationFailed,
    AuthPolicy,
    ClientAuthenticator,
    InMemoryJtiStore,
    TrustedClient,
)
from cds_hooks.auth.jwks import JwksError, UrlKeySource, fetch_jwk_set, parse_jwk_set
from tests.support.clock import FakeClock
from tests.support.jwt_factory import JwksServer, TestSigner, jwks_of

NOW = 1_800_000_000.0
ISS = "https://ehr.example.org"
AUD = "https://cds.example.org/cds-services/back-pain-after-chemo"
TTL = 3600
MIN_REFRESH = 60


@pytest.fixture
def signer(clock: FakeClock) -> TestSigner:
    return TestSigner("ES384", iss=ISS, clock=clock)


@pytest.fixture
def server(signer: TestSigner) -> Iterator[JwksServer]:
    with JwksServer(signer.jwks()) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # loopback only: never via a proxy from the environment
        yield s


def authenticator(
    clients: list[TrustedClient], clock: FakeClock, session: requests.Session, **policy: object
) -> ClientAuthenticator:
    settings: dict[str, object] = {"jwks_ttl_seconds": TTL, "jwks_min_refresh_seconds": MIN_REFRESH, **policy}
    return ClientAuthenticator(
        clients,
        jti_store=InMemoryJtiStore(clock=clock),
        policy=AuthPolicy(**settings),  # type: ignore[arg-type]
        session=session,
        clock=clock,
    )


@pytest.fixture
def auth(server: JwksServer, clock: FakeClock, session: requests.Session) -> ClientAuthenticator:
    return authenticator([TrustedClient(iss=ISS, jwks_url=server.url)], clock, session)


def accept(auth: ClientAuthenticator, signer: TestSigner) -> None:
    assert auth.verify(signer.authorization(AUD), AUD).kid == signer.kid


def reason(auth: ClientAuthenticator, signer: TestSigner) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        auth.verify(signer.authorization(AUD), AUD)
    return info.value.reason


def test_nothing_is_fetched_before_the_first_call(auth: ClientAuthenticator, server: JwksServer) -> None:
    assert server.total_hits == 0


def test_key_set_is_cached_two_verifications_one_fetch(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    clock.advance(TTL - 1)
    accept(auth, signer)

    assert server.hits == {"/jwks.json": 1}


def test_key_set_is_refetched_after_the_ttl(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    clock.advance(TTL)
    accept(auth, signer)
    accept(auth, signer)

    assert server.total_hits == 2


def test_rotated_key_is_accepted_after_one_refetch(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    rotated = TestSigner("ES384", iss=ISS, clock=clock)
    server.jwks = jwks_of(rotated)  # the EHR publishes a new key and retires the old one
    clock.advance(MIN_REFRESH)

    accept(auth, rotated)
    accept(auth, rotated)

    assert server.total_hits == 2
    assert reason(auth, signer) == "unknown-kid"  # retired key: no longer trusted, no extra fetch
    assert server.total_hits == 2


def test_rotation_inside_the_min_refresh_interval_waits_for_it(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    rotated = TestSigner("ES384", iss=ISS, clock=clock)
    server.jwks = jwks_of(signer, rotated)
    clock.advance(MIN_REFRESH - 1)

    assert reason(auth, rotated) == "unknown-kid"
    assert server.total_hits == 1

    clock.advance(1)
    accept(auth, rotated)
    assert server.total_hits == 2


def test_random_unknown_kids_cause_at_most_one_fetch_per_interval(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    strangers = [TestSigner("ES384", iss=ISS, clock=clock) for _ in range(5)]
    fetches = []

    for step in range(6):  # three full intervals, in half-interval steps
        clock.advance(MIN_REFRESH / 2)
        for i in range(40):
            stranger = strangers[i % len(strangers)]
            token = stranger.token(AUD, header_overrides={"kid": f"random-{step}-{i}"})
            with pytest.raises(AuthenticationFailed) as info:
                auth.verify(f"Bearer {token}", AUD)
            assert info.value.reason == "unknown-kid"
        fetches.append(server.total_hits)

    assert fetches == [1, 2, 2, 3, 3, 4]
    accept(auth, signer)  # the real client is unaffected
    assert server.total_hits == 4


def test_clients_sharing_a_jwks_url_share_one_cache(
    server: JwksServer, clock: FakeClock, session: requests.Session
) -> None:
    first = TestSigner("ES384", iss="https://ehr.example.org/a", clock=clock)
    second = TestSigner("RS384", iss="https://ehr.example.org/b", clock=clock)
    server.jwks = jwks_of(first, second)
    auth = authenticator(
        [TrustedClient(iss=first.iss, jwks_url=server.url), TrustedClient(iss=second.iss, jwks_url=server.url)],
        clock,
        session,
    )

    accept(auth, first)
    accept(auth, second)

    assert server.total_hits == 1


def test_concurrent_first_calls_fetch_once(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner
) -> None:
    tokens = [signer.authorization(AUD) for _ in range(16)]
    errors: list[BaseException] = []

    def call(header: str) -> None:
        try:
            auth.verify(header, AUD)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert server.total_hits == 1


# -- failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"oops"),
        (404, b"{}"),
        (200, b"<html>not json</html>"),
        (200, b'{"not": "a jwks"}'),
        (200, b'{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0c2VjcmV0"}]}'),
        (200, b"[]"),
    ],
)
def test_unusable_response_means_jwks_unavailable_and_is_retried_only_after_the_interval(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock, status: int, body: bytes
) -> None:
    server.status, server.body = status, body

    assert reason(auth, signer) == "jwks-unavailable"
    assert reason(auth, signer) == "jwks-unavailable"
    assert server.total_hits == 1

    server.status, server.body = 200, None
    clock.advance(MIN_REFRESH)
    accept(auth, signer)
    assert server.total_hits == 2


def test_redirects_are_not_followed(
    server: JwksServer, signer: TestSigner, clock: FakeClock, session: requests.Session
) -> None:
    with JwksServer() as redirector:
        redirector.status = 302
        redirector.headers = {"Location": server.url}
        auth = authenticator([TrustedClient(iss=ISS, jwks_url=redirector.url)], clock, session)

        assert reason(auth, signer) == "jwks-unavailable"
        assert redirector.total_hits == 1
    assert server.total_hits == 0


def test_oversized_key_set_is_refused(
    server: JwksServer, signer: TestSigner, clock: FakeClock, session: requests.Session
) -> None:
    padding = [signer.public_jwk(kid=f"pad-{i}") for i in range(50)]
    server.jwks = {"keys": [*padding, signer.public_jwk()]}
    size = len(json.dumps(server.jwks))
    auth = authenticator([TrustedClient(iss=ISS, jwks_url=server.url)], clock, session, jwks_max_bytes=size - 1)

    assert reason(auth, signer) == "jwks-unavailable"

    roomy = authenticator([TrustedClient(iss=ISS, jwks_url=server.url)], clock, session, jwks_max_bytes=size)
    accept(roomy, signer)


def test_oversized_body_is_cut_off_while_streaming(session: requests.Session) -> None:
    with JwksServer() as server:
        server.body = b'{"keys": [' + b" " * 5000 + b"]}"
        server.send_length = False  # so only the streaming cap can catch it
        with pytest.raises(JwksError, match="larger than 1000 bytes"):
            fetch_jwk_set(session, server.url, timeout=5, max_bytes=1000)
        source = UrlKeySource(
            server.url, session=session, ttl_seconds=TTL, min_refresh_seconds=0, timeout_seconds=5, max_bytes=1000
        )
        with pytest.raises(JwksError, match="larger than 1000 bytes"):
            source.current()


def test_unreachable_jwks_url_is_jwks_unavailable(
    signer: TestSigner, clock: FakeClock, session: requests.Session
) -> None:
    with JwksServer() as gone:
        url = gone.url
    auth = authenticator([TrustedClient(iss=ISS, jwks_url=url)], clock, session, jwks_timeout_seconds=2)
    assert reason(auth, signer) == "jwks-unavailable"


def test_expired_cache_is_used_for_one_more_ttl_while_the_ehr_is_down(
    auth: ClientAuthenticator, server: JwksServer, signer: TestSigner, clock: FakeClock
) -> None:
    accept(auth, signer)
    server.status, server.body = 503, b"down"

    clock.advance(TTL)
    accept(auth, signer)  # refetch fails: stale keys still trusted
    clock.advance(TTL - 1)
    accept(auth, signer)  # (rate limit passed, second failed attempt)
    assert server.total_hits == 3

    clock.advance(1)
    assert reason(auth, signer) == "jwks-unavailable"

    server.status, server.body = 200, None
    clock.advance(MIN_REFRESH)
    accept(auth, signer)


def test_parse_keeps_only_public_members(signer: TestSigner) -> None:
    private = {**signer.key.as_dict(private=True), "kid": "k1"}
    keys = parse_jwk_set({"keys": [private]}, source="test")
    (key,) = keys.find("k1")
    assert not key.is_private
    assert "d" not in key.as_dict()
