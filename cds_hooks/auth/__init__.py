"""Client-JWT verification (CDS Hooks 2.0.1, "Trusting CDS Clients").

:mod:`~cds_hooks.auth.verifier` (:class:`ClientAuthenticator`, the checks in order),
:mod:`~cds_hooks.auth.token` (the parts of a compact JWS), :mod:`~cds_hooks.auth.policy` (what is
trusted), :mod:`~cds_hooks.auth.jwks` (the trusted clients' key sets),
:mod:`~cds_hooks.auth.replay` (``jti`` replay protection), :mod:`~cds_hooks.auth.errors` (the
failure and its reasons) and :mod:`~cds_hooks.auth.warm` (a worker's warm start).

The names below are the ones the service's wiring (``backpain_cds``) uses; they are re-exported
here so that it does not depend on the split. Everything else is imported from its module.
"""

from __future__ import annotations

from cds_hooks.auth.errors import AuthenticationFailed
from cds_hooks.auth.policy import AuthPolicy, TrustedClient
from cds_hooks.auth.replay import InMemoryJtiStore, JtiStore
from cds_hooks.auth.verifier import ClientAuthenticator

__all__ = [
    "AuthenticationFailed",
    "AuthPolicy",
    "ClientAuthenticator",
    "InMemoryJtiStore",
    "JtiStore",
    "TrustedClient",
]
