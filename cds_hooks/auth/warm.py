"""Warm start for signed calls (issue 13): key sets fetched and JWT verification run before a worker accepts.

The first signed call of a worker used to pay for the trusted client's JWK Set fetch and for
the first pass through signature verification (imports, joserfc registries, the first
OpenSSL verification of each curve). :mod:`backpain_cds.warm` calls the two functions here:

- :class:`KeySetPrefetch` fetches the key set of every trusted client with a ``jwks_url``
  into the authenticator's own cache, in background threads; the caller waits a bounded time.
  A fetch still running then carries on in the background (the first call waits for it, as it
  would have fetched anyway); a failed fetch is reported once and does not count against the
  refetch rate limit, so the first call tries again. Nothing here ever stops start-up.
- :func:`exercise_verification` signs one token per allowed algorithm with a **throwaway**
  key generated in this process and verifies it with a **separate** :class:`ClientAuthenticator`
  that trusts only that key, under a random issuer and audience no client uses, with its own
  in-memory JWT-id store. The real authenticator never sees the throwaway key or token, so
  nothing it would refuse becomes accepted; nothing unsigned is ever verified.

No Flask imports here.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from cds_hooks.auth.jwks import MIN_RSA_BITS, JwksError, UrlKeySource
from cds_hooks.auth.policy import SUPPORTED_ALGORITHMS, AuthPolicy, TrustedClient
from cds_hooks.auth.replay import InMemoryJtiStore
from cds_hooks.auth.verifier import ClientAuthenticator

__all__ = ["KeySetWarmUp", "KeySetPrefetch", "exercise_verification"]

#: Throwaway keys by (kty, curve): generated once per process -- in the gunicorn master before
#: the fork when warm start is on, so workers inherit them -- and trusted by nothing but the
#: throwaway authenticator of :func:`exercise_verification`.
_THROWAWAY_KEYS: dict[tuple[str, str | None], ECKey | RSAKey] = {}
_KEYS_LOCK = threading.Lock()


@dataclass(frozen=True)
class KeySetWarmUp:
    """What happened to one trusted client's key set at warm-up.

    ``problem`` is None when the set is cached; otherwise a short reason without the URL's
    path or query (``HTTP 503``, ``ConnectionError``, ``still fetching``).
    """

    iss: str
    host: str
    problem: str | None


class KeySetPrefetch:
    """Fetch every ``jwks_url`` key set not cached yet, in background threads (:meth:`start`),
    and report after waiting at most a given time (:meth:`wait`).

    Clients sharing one URL share one fetch. Never raises.
    """

    def __init__(self, authenticator: ClientAuthenticator) -> None:
        self._sources: dict[int, tuple[UrlKeySource, list[str]]] = {}
        for iss in authenticator.issuers:
            source = authenticator.key_source(iss)
            if isinstance(source, UrlKeySource):
                self._sources.setdefault(id(source), (source, []))[1].append(iss)
        self._problems: dict[int, str | None] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> KeySetPrefetch:
        for key, (source, _issuers) in self._sources.items():
            thread = threading.Thread(target=self._fetch, args=(key, source), name="jwks-warm-up", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _fetch(self, key: int, source: UrlKeySource) -> None:
        try:
            source.prefetch()
            self._problems[key] = None
        except JwksError as exc:
            self._problems[key] = str(exc).removeprefix(f"{source.url}: ")
        except Exception as exc:  # noqa: BLE001 - a warm-up never fails the start
            self._problems[key] = exc.__class__.__name__

    def wait(self, seconds: float) -> list[KeySetWarmUp]:
        """Wait for the fetches, ``seconds`` at most in all; one entry per client with a ``jwks_url``."""
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        report: list[KeySetWarmUp] = []
        for key, (source, issuers) in self._sources.items():
            problem = self._problems.get(key, "still fetching")
            host = urlsplit(source.url).hostname or ""
            report.extend(KeySetWarmUp(iss, host, problem) for iss in issuers)
        return report


def _throwaway_key(kty: str, curve: str | None) -> ECKey | RSAKey:
    with _KEYS_LOCK:
        key = _THROWAWAY_KEYS.get((kty, curve))
        if key is None:
            params = {"kid": f"warm-up-{kty}-{curve or MIN_RSA_BITS}", "use": "sig"}
            if kty == "EC":
                key = ECKey.generate_key(curve, parameters=params)  # type: ignore[arg-type]
            else:
                key = RSAKey.generate_key(MIN_RSA_BITS, parameters=params)  # type: ignore[arg-type]
            _THROWAWAY_KEYS[(kty, curve)] = key
        return key


def exercise_verification(policy: AuthPolicy) -> int:
    """Verify one throwaway token per algorithm of ``policy``; return how many were verified.

    :raises Exception: if a throwaway token is not accepted (a bug: the caller logs it)
    """
    issuer = f"urn:uuid:{uuid.uuid4()}"  # never a configured client
    audience = f"urn:uuid:{uuid.uuid4()}"
    keys = {alg: _throwaway_key(*SUPPORTED_ALGORITHMS[alg]) for alg in policy.algorithms}
    public = {key.kid: key.as_dict(private=False) for key in keys.values()}
    with tempfile.TemporaryDirectory(prefix="backpain-cds-warm-") as tmp:
        path = Path(tmp) / "jwks.json"
        path.write_text(json.dumps({"keys": list(public.values())}), encoding="utf-8")
        verifier = ClientAuthenticator([TrustedClient(iss=issuer, jwks_file=path)],
                                       jti_store=InMemoryJtiStore(), policy=policy)
        try:
            for alg, key in keys.items():
                now = int(time.time())
                claims = {"iss": issuer, "aud": audience, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
                token = jws.serialize_compact({"alg": alg, "typ": "JWT", "kid": key.kid},
                                              json.dumps(claims), key, algorithms=[alg])
                verifier.verify(f"Bearer {token}", audience)
        finally:
            verifier.close()
    return len(keys)
