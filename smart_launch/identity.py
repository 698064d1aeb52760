"""The signed-in user: the EHR's OpenID Connect ``id_token``, validated, reduced to ``fhirUser``.

The launch asks for ``openid fhirUser`` with a ``nonce`` (SMART App Launch 2.2, SMART.md §1.3,
§1.4). When the token response carries an ``id_token`` it is validated per OpenID Connect Core
§3.1.3.7 with joserfc before the session exists (SMART.md §1.9):

* signature against the EHR's JWKS: the ``jwks_uri`` of its smart-configuration (required with
  ``sso-openid-connect``), fetched with ``requests`` (timeouts, no redirects, 64 KiB at most),
  cached per EHR for an hour and fetched again, at most once a minute, for an unknown ``kid``
  (key rotation); only public RSA and EC keys are used;
* algorithm: asymmetric only (RS*, PS*, ES*), narrowed to ``id_token_signing_alg_values_supported``
  when the EHR lists it; ``none`` and HS* never (no algorithm confusion with a public key);
* claims: ``iss`` == the discovery ``issuer``, ``aud`` contains our ``client_id`` (with ``azp``
  == ``client_id`` when there are several audiences or an ``azp``), ``exp`` in the future and
  ``iat`` present (60 s leeway), ``sub`` present, and ``nonce`` equal to the one sent (the
  launch stores only its SHA-256 digest, used up with the state);
* ``at_hash``, when the token carries one (optional in the code flow, §3.1.3.6): it must be the
  left half of the access token's hash under the token's algorithm (SHA-256/384/512), so an
  id_token cannot be paired with another response's access token.

A token that fails any of this is an :class:`IdTokenError` (the callback refuses the session).
What survives is the ``fhirUser`` reference (Patient, Practitioner, PractitionerRole,
RelatedPerson or Person, relative or absolute) or ``None``; the ``id_token`` itself is never
stored, logged or sent to the browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
import typing as t
from dataclasses import dataclass

import orjson
import requests
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidKeyIdError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import KeySet

#: the only algorithms an id_token may use (OIDC's default RS256 among them)
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY_SECONDS = 60
JWKS_TTL_SECONDS = 3600
JWKS_REFRESH_SECONDS = 60  #: an unknown kid fetches the JWKS again at most this often
_MAX_JWKS_BYTES = 64 * 1024
_MAX_ID_TOKEN = 16 * 1024
_MAX_CACHED = 64
_FHIR_USER = re.compile(
    r"^(?:https?://[^\s/]+(?:/[^\s/]+)*/)?(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)"
    r"/[A-Za-z0-9\-.]{1,64}$"
)


class IdTokenError(Exception):
    """The id_token is not valid (``status`` 403: a forged or misdirected identity) or cannot be
    checked (``status`` 502: the EHR's keys are unreachable or unpublished)."""

    def __init__(self, reason: str, *, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason  #: for the page and the log: never the token or its claims
        self.status = status


@dataclass(frozen=True)
class OidcSettings:
    """What discovery said about the EHR's OpenID Connect (kept with the pending launch)."""

    issuer: str | None
    jwks_uri: str | None
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS


def accepted_algorithms(advertised: t.Sequence[str]) -> tuple[str, ...]:
    """The asymmetric algorithms, narrowed to what the EHR advertises (when it does)."""
    if not advertised:
        return ASYMMETRIC_ALGORITHMS
    return tuple(alg for alg in ASYMMETRIC_ALGORITHMS if alg in advertised)


def new_nonce() -> tuple[str, str]:
    """A fresh nonce (256 bits) and the digest the launch stores."""
    nonce = secrets.token_urlsafe(32)
    return nonce, nonce_digest(nonce)


def nonce_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class JwksCache:
    """Each EHR's public keys, fetched from its ``jwks_uri`` and cached per (iss, jwks_uri)."""

    def __init__(
        self,
        *,
        session_factory: t.Callable[[], requests.Session],
        timeout_seconds: float,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._timeout = timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, KeySet]] = {}
        self.fetches = 0  #: how many times a JWKS was downloaded (tests, metrics)

    def key_set(self, iss: str, jwks_uri: str, *, refresh: bool = False) -> KeySet:
        """The cached key set, or a fresh one (``refresh``: after an unknown ``kid``)."""
        slot = (iss, jwks_uri)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(slot)
        if cached is not None:
            fetched_at, keys = cached
            age = now - fetched_at
            if age < JWKS_TTL_SECONDS and (not refresh or age < JWKS_REFRESH_SECONDS):
                return keys
        keys = self._fetch(jwks_uri)
        with self._lock:
            if len(self._cache) >= _MAX_CACHED and slot not in self._cache:
                self._cache.pop(min(self._cache, key=lambda k: self._cache[k][0]))
            self._cache[slot] = (self._clock(), keys)
        return keys

    def _fetch(self, jwks_uri: str) -> KeySet:
        self.fetches += 1
        try:
            with self._session_factory() as http, http.get(
                jwks_uri,
                headers={"Accept": "application/json"},
                timeout=(self._timeout, self._timeout),
                allow_redirects=False,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise IdTokenError(f"the EHR's signing keys answered HTTP {response.status_code}",
                                       status=502)
                body = bytearray()
                for chunk in response.iter_content(chunk_size=16 * 1024):
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        raise IdTokenError("the EHR's signing keys document is too large", status=502)
        except requests.RequestException as exc:
            raise IdTokenError(f"the EHR's signing keys are unreachable ({type(exc).__name__})",
                               status=502) from None
        try:
            document = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise IdTokenError("the EHR's signing keys are not JSON", status=502) from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise IdTokenError("the EHR's signing keys are not a JWK set", status=502)
        public = [
            entry for entry in entries
            if isinstance(entry, dict) and entry.get("kty") in ("RSA", "EC")
            and entry.get("use", "sig") == "sig" and "d" not in entry
        ]
        if not public:
            raise IdTokenError("the EHR publishes no RSA or EC signing key", status=502)
        try:
            return KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError):
            raise IdTokenError("the EHR's signing keys cannot be read", status=502) from None


_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _at_hash_matches(at_hash: t.Any, access_token: str | None, alg: t.Any) -> bool:
    """OIDC Core §3.1.3.6: base64url of the left half of the access token's hash, the hash being
    the one of the id_token's ``alg`` (RS256/ES256/PS256: SHA-256, and so on)."""
    digest = _HASHES.get(str(alg)[-3:]) if isinstance(alg, str) else None
    if not isinstance(at_hash, str) or access_token is None or digest is None:
        return False
    full = digest(access_token.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(full[: len(full) // 2]).rstrip(b"=").decode()
    return secrets.compare_digest(expected, at_hash)


class IdTokenValidator:
    """Validates id_tokens against the EHR's keys and the launch's nonce."""

    def __init__(self, jwks: JwksCache) -> None:
        self.jwks = jwks

    def fhir_user(
        self, id_token: t.Any, *, iss: str, oidc: OidcSettings, client_id: str, nonce_hash: str | None, now: int,
        access_token: str | None = None,
    ) -> str | None:
        """The token's ``fhirUser`` (``None`` when it names none); :raises IdTokenError:."""
        if not isinstance(id_token, str) or not id_token or len(id_token) > _MAX_ID_TOKEN:
            raise IdTokenError("the identity token is not a JWT")
        if id_token.count(".") != 2:
            raise IdTokenError("the identity token is not a signed JWT (JWS compact form)")
        if not oidc.jwks_uri or not oidc.issuer:
            raise IdTokenError("the EHR sent an identity token but publishes no issuer and jwks_uri "
                               "to check it with", status=502)
        if not oidc.algorithms:
            raise IdTokenError("the EHR signs identity tokens with no algorithm this app accepts")
        token = self._decode(id_token, iss=iss, oidc=oidc)
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": oidc.issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise IdTokenError("the identity token has expired") from None
        except JoseError as exc:
            raise IdTokenError(f"the identity token's claims are wrong ({exc.error}: "
                               f"{str(exc.description)[:80]})") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
            raise IdTokenError("the identity token was issued to another client (azp)")
        sent = claims.get("nonce")
        if nonce_hash is None or not isinstance(sent, str) or not secrets.compare_digest(
            nonce_digest(sent), nonce_hash
        ):
            raise IdTokenError("the identity token's nonce is not the one this sign-in sent")
        if "at_hash" in claims and not _at_hash_matches(claims["at_hash"], access_token, token.header.get("alg")):
            raise IdTokenError("the identity token does not belong to the access token it came with (at_hash)")
        user = claims.get("fhirUser")
        if isinstance(user, str) and _FHIR_USER.match(user) and len(user) <= 1024:
            return user
        return None

    def _decode(self, id_token: str, *, iss: str, oidc: OidcSettings) -> t.Any:
        assert oidc.jwks_uri is not None
        for refresh in (False, True):
            keys = self.jwks.key_set(iss, oidc.jwks_uri, refresh=refresh)
            try:
                return jwt.decode(id_token, keys, algorithms=list(oidc.algorithms))
            except InvalidKeyIdError:
                if refresh:
                    raise IdTokenError("the identity token is signed with a key the EHR does not "
                                       "publish") from None
            except UnsupportedAlgorithmError:
                raise IdTokenError("the identity token is signed with an algorithm this app does not "
                                   f"accept (only {', '.join(oidc.algorithms)})") from None
            except JoseError as exc:
                raise IdTokenError(f"the identity token's signature is not valid ({exc.error})") from None
            except (ValueError, TypeError):
                raise IdTokenError("the identity token is not a JWT") from None
        raise AssertionError("unreachable")  # pragma: no cover
