"""JWK Sets of trusted CDS clients: parsing, file and URL sources, caching.

A CDS client (EHR) publishes the public keys it signs its JWTs with as a JWK Set
(CDS Hooks 2.0.1, "Trusting CDS Clients"). This module turns such a set into
public joserfc keys indexed by ``kid`` and keeps it fresh:

- :class:`FileKeySource` reads a pre-registered set from disk at start-up and
  re-reads it when the file's mtime or size changes.
- :class:`UrlKeySource` fetches an allow-listed URL with ``requests`` (timeout,
  size cap, no redirects), caches it for a TTL, and refetches on an unknown
  ``kid`` -- but never more than once per ``min_refresh_seconds`` per URL, so a
  caller sending random ``kid`` values cannot make us hammer the EHR.

Only asymmetric keys (``RSA``, ``EC``) are ever imported, and only their public
members: a symmetric (``oct``) key in a set is ignored, so a published key can
never become an HMAC secret. No Flask imports here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import typing as t
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

__all__ = [
    "JwksError",
    "JwkSet",
    "KeySource",
    "FileKeySource",
    "UrlKeySource",
    "parse_jwk_set",
    "fetch_jwk_set",
    "MIN_RSA_BITS",
]

logger = logging.getLogger("backpain_cds.jwks")

PublicKey = RSAKey | ECKey

#: RSA keys with a shorter modulus are ignored (NIST SP 800-131A).
MIN_RSA_BITS = 2048

#: Public members kept per key type; everything else (``d``, ``p``, ``k``, ...) is dropped.
_PUBLIC_MEMBERS: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"kty", "kid", "use", "alg", "key_ops", "n", "e"}),
    "EC": frozenset({"kty", "kid", "use", "alg", "key_ops", "crv", "x", "y"}),
}


class JwksError(Exception):
    """A JWK Set could not be obtained or is not a usable JWK Set.

    The message names the source (URL or path) and the problem; it never
    contains key material.
    """


@dataclass(frozen=True)
class JwkSet:
    """Public signature-verification keys of one JWK Set, indexed by ``kid``."""

    by_kid: Mapping[str, tuple[PublicKey, ...]]

    def find(self, kid: str) -> tuple[PublicKey, ...]:
        """Return every key published under ``kid`` (normally one; empty if none)."""
        return self.by_kid.get(kid, ())

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.by_kid.values())


def parse_jwk_set(data: object, *, source: str) -> JwkSet:
    """Validate a decoded JSON document as a JWK Set and import its public keys.

    Keys that are not ``RSA``/``EC``, have no ``kid``, are RSA keys shorter than
    :data:`MIN_RSA_BITS`, or fail to import are skipped (RFC 7517 section 5 lets
    a reader ignore keys it does not understand).

    :param data: the decoded JSON document
    :param source: URL or path, used in error messages and logs
    :raises JwksError: if ``data`` is not a JWK Set or holds no usable key
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError(f"{source}: not a JWK Set (expected an object with a 'keys' array)")
    by_kid: dict[str, list[PublicKey]] = {}
    skipped = 0
    for entry in data["keys"]:
        key = _import_public_key(entry)
        if key is None:
            skipped += 1
            continue
        by_kid.setdefault(t.cast(str, key.kid), []).append(key)
    if skipped:
        logger.info("JWK Set %s: ignored %d unusable key(s)", source, skipped)
    if not by_kid:
        raise JwksError(f"{source}: JWK Set holds no usable RSA or EC key with a 'kid'")
    return JwkSet({kid: tuple(keys) for kid, keys in by_kid.items()})


def _import_public_key(entry: object) -> PublicKey | None:
    if not isinstance(entry, dict):
        return None
    kty = entry.get("kty")
    kid = entry.get("kid")
    if not isinstance(kty, str) or kty not in _PUBLIC_MEMBERS:
        return None
    if not isinstance(kid, str) or not kid:
        return None
    if kty == "RSA" and _rsa_modulus_bits(entry.get("n")) < MIN_RSA_BITS:
        return None
    public = {name: value for name, value in entry.items() if name in _PUBLIC_MEMBERS[kty]}
    try:
        key = JWKRegistry.import_key(public)
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, (RSAKey, ECKey)) or key.is_private:
        return None
    return key


def _rsa_modulus_bits(n: object) -> int:
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def fetch_jwk_set(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
) -> JwkSet:
    """GET ``url`` and parse the body as a JWK Set.

    Redirects are not followed, the body is read in chunks up to ``max_bytes``,
    and any status other than 200 is an error.

    :raises JwksError: on any network, HTTP, size, JSON or JWK Set problem
    """
    try:
        with session.get(
            url,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            headers={"Accept": "application/jwk-set+json, application/json"},
        ) as response:
            if response.status_code != 200:
                raise JwksError(f"{url}: HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise JwksError(f"{url}: body larger than {max_bytes} bytes")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise JwksError(f"{url}: body larger than {max_bytes} bytes")
    except requests.RequestException as exc:
        raise JwksError(f"{url}: {type(exc).__name__}") from exc
    try:
        data = json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JwksError(f"{url}: body is not JSON") from exc
    return parse_jwk_set(data, source=url)


class KeySource(t.Protocol):
    """Where the keys of one trusted client come from."""

    def current(self) -> JwkSet:
        """Return the keys to use now (loading or refetching as the source's rules allow).

        :raises JwksError: if no keys can be obtained
        """
        ...

    def refresh_for_unknown_kid(self) -> JwkSet | None:
        """Try to reload because a token named a ``kid`` we do not know.

        Return the new set, or ``None`` if a reload is not allowed right now or
        brought nothing new.
        """
        ...


class FileKeySource:
    """A pre-registered JWK Set file, loaded at construction, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._keys = self._load()

    def _stat(self) -> tuple[int, int]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise JwksError(f"{self.path}: cannot read JWK Set file ({exc.strerror})") from exc
        return (stat.st_mtime_ns, stat.st_size)

    def _load(self) -> JwkSet:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise JwksError(f"{self.path}: cannot read JWK Set file") from exc
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise JwksError(f"{self.path}: not JSON") from exc
        return parse_jwk_set(data, source=str(self.path))

    def current(self) -> JwkSet:
        """Return the keys, re-reading the file if its mtime or size changed.

        If the changed file cannot be read or parsed, the last good keys stay in
        use and a warning is logged (a half-written file must not lock out the EHR).
        """
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._keys = self._load()
                    self._stamp = stamp
                    logger.info("reloaded JWK Set file %s", self.path)
            except JwksError as exc:
                logger.warning("keeping previous keys: %s", exc)
            return self._keys

    def refresh_for_unknown_kid(self) -> JwkSet | None:
        """Files are re-read only on change (see :meth:`current`); nothing to do."""
        return None


class UrlKeySource:
    """A JWK Set fetched from one allow-listed URL and cached.

    Fetch rules (all times from the injected ``clock``):

    - the first use fetches; a cached set is reused until ``ttl_seconds`` old;
    - on an unknown ``kid`` the set is refetched once, if the last fetch
      attempt is at least ``min_refresh_seconds`` old;
    - every fetch attempt, successful or not, counts for that interval, so this
      source never sends more than one request per ``min_refresh_seconds``;
    - if a refetch after TTL expiry fails, the expired set stays in use for up
      to one more TTL (an EHR outage of its key endpoint must not lock it out),
      after which verification fails until a fetch succeeds.
    """

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session,
        ttl_seconds: float,
        min_refresh_seconds: float,
        timeout_seconds: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._session = session
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: JwkSet | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        #: number of HTTP fetch attempts made (for metrics and tests)
        self.fetch_count = 0

    def _may_attempt(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _fetch(self, now: float) -> JwkSet:
        self._attempted_at = now
        self.fetch_count += 1
        keys = fetch_jwk_set(self._session, self.url, timeout=self._timeout, max_bytes=self._max_bytes)
        self._keys = keys
        self._fetched_at = now
        logger.info("fetched JWK Set %s (%d keys)", self.url, len(keys))
        return keys

    def prefetch(self) -> None:
        """Fetch the set now unless a fresh one is cached (warm start, before any call).

        Unlike :meth:`current`, a failed attempt does not count against
        ``min_refresh_seconds`` and is not logged here: the caller logs it once, and the
        first real call may try again at once.

        :raises JwksError: if the set cannot be fetched
        """
        with self._lock:
            now = self._clock()
            if self._keys is not None and self._fetched_at is not None and now - self._fetched_at < self._ttl:
                return
            attempted = self._attempted_at
            try:
                self._fetch(now)
            except JwksError:
                self._attempted_at = attempted
                raise

    def current(self) -> JwkSet:
        """Return the cached set, fetching it when absent or older than the TTL.

        :raises JwksError: if there is no usable set and none can be fetched now
        """
        with self._lock:
            now = self._clock()
            fresh = self._fetched_at is not None and now - self._fetched_at < self._ttl
            if self._keys is not None and fresh:
                return self._keys
            problem = f"{self.url}: last fetch failed and the next attempt is rate-limited"
            if self._may_attempt(now):
                try:
                    return self._fetch(now)
                except JwksError as exc:
                    logger.warning("JWK Set fetch failed: %s", exc)
                    problem = str(exc)
            if self._keys is not None and self._fetched_at is not None and now - self._fetched_at < 2 * self._ttl:
                return self._keys
            raise JwksError(problem)

    def refresh_for_unknown_kid(self) -> JwkSet | None:
        """Refetch now unless the last attempt was less than ``min_refresh_seconds`` ago."""
        with self._lock:
            now = self._clock()
            if not self._may_attempt(now):
                return None
            try:
                return self._fetch(now)
            except JwksError as exc:
                logger.warning("JWK Set refresh failed: %s", exc)
                return None
