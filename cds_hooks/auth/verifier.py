"""Verify the signed JWT a CDS client (EHR) sends (CDS Hooks 2.0.1, "Trusting CDS Clients").

Every call carries ``Authorization: Bearer <JWT>``. :class:`ClientAuthenticator`
checks it in this order and raises :class:`AuthenticationFailed` with a short
machine ``reason`` at the first problem:

1. header shape: ``Bearer`` + one compact JWS (``missing-token``, ``malformed``);
2. unverified JOSE header: ``alg`` on the allow-list, never ``none`` or HMAC
   (``alg-not-allowed``); ``typ`` is ``JWT`` (``typ``); ``kid`` present
   (``missing-kid``); no ``crit``/``b64`` (``malformed``);
3. unverified ``iss`` -- read only to choose the client and its keys -- is a
   configured trusted client (``unknown-iss``);
4. ``jku``, if sent, equals that client's configured ``jwks_url``; it is never
   fetched itself (``jku-not-allowed``);
5. ``kid`` selects a key of the right type (``unknown-kid`` after at most one
   rate-limited refresh, ``key-mismatch``, ``jwks-unavailable``);
6. signature, verified by joserfc (``bad-signature``);
7. claims, now trusted: ``iss aud exp iat jti`` present (``missing-claim``),
   ``aud`` (``aud-mismatch``), ``exp`` (``expired``), ``nbf``
   (``not-yet-valid``), ``iat`` (``iat-in-future``, ``too-old``), ``tenant``;
8. ``jti`` not seen before (``replay``).

Each failure is logged once (logger ``backpain_cds.auth``, WARNING) with reason,
iss, kid and jti. The token and the Authorization header are never logged, put
in an exception message, or kept in an attribute. No Flask imports here.

The pieces live in the sibling modules of :mod:`cds_hooks.auth`: ``errors``
(:class:`AuthenticationFailed`, the reasons), ``policy`` (:class:`TrustedClient`,
:class:`AuthPolicy`, the algorithms), ``replay`` (:class:`JtiStore`,
:class:`InMemoryJtiStore`), ``token`` (reading and checking the parts of a compact JWS) and
``jwks`` (the key sources). This module holds :class:`ClientAuthenticator`, which runs the
steps above in order.
"""

from __future__ import annotations

import logging
import time
import typing as t
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError

from cds_hooks.auth.errors import AuthenticationFailed
from cds_hooks.auth.jwks import FileKeySource, JwksError, KeySource, PublicKey, UrlKeySource
from cds_hooks.auth.policy import AuthPolicy, TrustedClient, comparable_url, is_forbidden_alg
from cds_hooks.auth.replay import JtiStore
from cds_hooks.auth.token import (
    MAX_ID_CHARS,
    MAX_JTI_CHARS,
    MAX_TIMESTAMP,
    REQUIRED_CLAIMS,
    bearer_token,
    is_timestamp,
    json_object,
    key_fits,
    read_unverified,
    single_alg_registry,
)

__all__ = [
    "ClientAuthenticator",
    "VerifiedClient",
]

logger = logging.getLogger("backpain_cds.auth")


@dataclass(frozen=True)
class VerifiedClient:
    """Who called us, after every check passed."""

    iss: str
    jti: str
    tenant: str | None
    kid: str
    expires_at: datetime


class ClientAuthenticator:
    """Verify ``Authorization: Bearer <JWT>`` headers from trusted CDS clients.

    File-based key sets are loaded here (a bad file is a ``ValueError``);
    URL-based ones are fetched on first use, or before it by a worker's warm-up
    (:mod:`cds_hooks.auth.warm`). Thread-safe.

    :param clients: the trusted clients (at least one; ``iss`` unique)
    :param jti_store: replay protection, shared by all instances in production
    :param policy: verification rules
    :param session: HTTP session for JWKS fetches (a new one if omitted)
    :param clock: seconds since the epoch; injected by tests
    """

    def __init__(
        self,
        clients: Sequence[TrustedClient],
        *,
        jti_store: JtiStore,
        policy: AuthPolicy = AuthPolicy(),
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not clients:
            raise ValueError("ClientAuthenticator needs at least one trusted client")
        self._policy = policy
        self._jti_store = jti_store
        self._clock = clock
        self._session = session if session is not None else requests.Session()
        self._clients: dict[str, TrustedClient] = {}
        self._sources: dict[str, KeySource] = {}
        url_sources: dict[tuple[object, ...] | None, UrlKeySource] = {}
        for client in clients:
            if not isinstance(client, TrustedClient):
                raise ValueError(f"not a TrustedClient: {client!r}")
            if client.iss in self._clients:
                raise ValueError(f"trusted client {client.iss!r} is configured twice")
            self._clients[client.iss] = client
            if client.jwks_url is not None:
                comparable = comparable_url(client.jwks_url)
                if comparable not in url_sources:
                    url_sources[comparable] = UrlKeySource(
                        client.jwks_url,
                        session=self._session,
                        ttl_seconds=policy.jwks_ttl_seconds,
                        min_refresh_seconds=policy.jwks_min_refresh_seconds,
                        timeout_seconds=policy.jwks_timeout_seconds,
                        max_bytes=policy.jwks_max_bytes,
                        clock=clock,
                    )
                self._sources[client.iss] = url_sources[comparable]
            else:
                assert client.jwks_file is not None  # guaranteed by TrustedClient
                try:
                    self._sources[client.iss] = FileKeySource(client.jwks_file)
                except JwksError as exc:
                    raise ValueError(f"trusted client {client.iss!r}: {exc}") from exc
        self._owns_session = session is None
        self._registries = {alg: single_alg_registry(alg) for alg in policy.algorithms}

    def close(self) -> None:
        """Close the HTTP session if this authenticator created it."""
        if self._owns_session:
            self._session.close()

    @property
    def policy(self) -> AuthPolicy:
        """The rules this authenticator applies."""
        return self._policy

    @property
    def issuers(self) -> tuple[str, ...]:
        """The ``iss`` of every trusted client."""
        return tuple(self._clients)

    def key_source(self, iss: str) -> KeySource:
        """The key source of a trusted client (the worker's key-set warm-up, :mod:`cds_hooks.auth.warm`)."""
        return self._sources[iss]

    def verify(self, authorization_header: str | None, audience: str) -> VerifiedClient:
        """Verify the Authorization header of a call to the endpoint whose public URL is ``audience``.

        :param authorization_header: the raw header value, or None if absent
        :param audience: the exact URL the client must have put in ``aud``
            (built from configuration, never from the request)
        :raises AuthenticationFailed: on any problem; logged once at WARNING
        """
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        try:
            return self._verify(authorization_header, audience)
        except AuthenticationFailed as failure:
            logger.warning(
                "client JWT rejected: reason=%s iss=%s kid=%s jti=%s",
                failure.reason,
                failure.iss,
                failure.kid,
                failure.jti,
            )
            raise

    # -- steps -----------------------------------------------------------------

    def _verify(self, authorization_header: str | None, audience: str) -> VerifiedClient:
        token = bearer_token(authorization_header)
        unverified = read_unverified(token)
        header, ids = unverified.header, unverified.ids

        alg = header.get("alg")
        if not isinstance(alg, str) or is_forbidden_alg(alg) or alg not in self._policy.algorithms:
            raise AuthenticationFailed("alg-not-allowed", **ids)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthenticationFailed("typ", **ids)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("missing-kid", **ids)
        if len(kid) > MAX_ID_CHARS or "crit" in header or "b64" in header:
            raise AuthenticationFailed("malformed", **ids)

        iss = unverified.claims.get("iss")
        if iss is None:
            raise AuthenticationFailed("missing-claim", **ids)
        if not isinstance(iss, str):
            raise AuthenticationFailed("malformed", **ids)
        client = self._clients.get(iss)
        if client is None:
            raise AuthenticationFailed("unknown-iss", **ids)

        self._check_jku(header, client, ids)
        keys = self._candidate_keys(client, kid, alg, ids)
        claims = self._verified_claims(token, keys, alg, ids)
        return self._check_claims(claims, client, kid, audience, ids)

    def _check_jku(self, header: dict[str, t.Any], client: TrustedClient, ids: dict[str, object]) -> None:
        if "jku" not in header:
            return
        jku = header["jku"]
        if client.jwks_url is None:
            # Keys are pinned in a file: the jku is never fetched either way.
            if not self._policy.allow_jku_with_jwks_file:
                raise AuthenticationFailed("jku-not-allowed", **ids)
            return
        expected = comparable_url(client.jwks_url)
        if not isinstance(jku, str) or expected is None or comparable_url(jku) != expected:
            raise AuthenticationFailed("jku-not-allowed", **ids)

    def _candidate_keys(
        self, client: TrustedClient, kid: str, alg: str, ids: dict[str, object]
    ) -> list[PublicKey]:
        source = self._sources[client.iss]
        failure: AuthenticationFailed | None = None
        try:
            keys = source.current().find(kid)
        except JwksError:
            failure = AuthenticationFailed("jwks-unavailable", **ids)
        if failure is not None:
            raise failure
        if not keys:
            refreshed = source.refresh_for_unknown_kid()
            keys = refreshed.find(kid) if refreshed is not None else ()
        if not keys:
            raise AuthenticationFailed("unknown-kid", **ids)
        usable = [key for key in keys if key_fits(key, alg)]
        if not usable:
            raise AuthenticationFailed("key-mismatch", **ids)
        return usable

    def _verified_claims(
        self, token: str, keys: list[PublicKey], alg: str, ids: dict[str, object]
    ) -> dict[str, t.Any]:
        registry = self._registries[alg]
        payload: bytes | None = None
        reason = "bad-signature"
        for key in keys:
            try:
                payload = jws.deserialize_compact(token, key, registry=registry).payload
                break
            except BadSignatureError:
                continue
            except (JoseError, ValueError, TypeError):
                reason = "malformed"  # e.g. a registered header with an invalid value
                break
        if payload is None:
            raise AuthenticationFailed(reason, **ids)
        claims = json_object(payload)
        if claims is None:
            raise AuthenticationFailed("malformed", **ids)
        return claims

    def _check_claims(
        self,
        claims: dict[str, t.Any],
        client: TrustedClient,
        kid: str,
        audience: str,
        ids: dict[str, object],
    ) -> VerifiedClient:
        ids = {"iss": claims.get("iss"), "kid": kid, "jti": claims.get("jti")}
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise AuthenticationFailed("missing-claim", **ids)
        iss, jti, aud, tenant = claims["iss"], claims["jti"], claims["aud"], claims.get("tenant")
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
        if (
            iss != client.iss
            or not isinstance(jti, str)
            or not jti
            or len(jti) > MAX_JTI_CHARS
            or "\x00" in jti
            or not is_timestamp(exp)
            or not is_timestamp(iat)
            or (nbf is not None and not is_timestamp(nbf))
            or (tenant is not None and not isinstance(tenant, str))
        ):
            raise AuthenticationFailed("malformed", **ids)

        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise AuthenticationFailed("malformed", **ids)
        if audience not in audiences:
            raise AuthenticationFailed("aud-mismatch", **ids)

        policy = self._policy
        now = self._clock()
        if now > exp + policy.leeway_seconds:
            raise AuthenticationFailed("expired", **ids)
        if nbf is not None and nbf > now + policy.iat_future_leeway_seconds:
            raise AuthenticationFailed("not-yet-valid", **ids)
        if iat > now + policy.iat_future_leeway_seconds:
            raise AuthenticationFailed("iat-in-future", **ids)
        if policy.max_token_age_seconds is not None and now - iat > policy.max_token_age_seconds:
            raise AuthenticationFailed("too-old", **ids)
        if client.tenant is not None and tenant != client.tenant:
            raise AuthenticationFailed("tenant", **ids)

        # exp is at most 9999-12-31T23:59:59Z; adding the leeway must not overflow datetime
        remember_until = datetime.fromtimestamp(
            min(exp + policy.leeway_seconds, MAX_TIMESTAMP), tz=UTC
        )
        if not self._jti_store.remember(iss, jti, remember_until):
            raise AuthenticationFailed("replay", **ids)
        return VerifiedClient(
            iss=iss,
            jti=jti,
            tenant=tenant,
            kid=kid,
            expires_at=datetime.fromtimestamp(exp, tz=UTC),
        )
