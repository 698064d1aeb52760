"""Test helpers: generate client keys, publish JWK Sets, sign CDS Hooks client JWTs.

Typical use::

    signer = TestSigner(alg="ES384", iss="https://ehr.example.org")
    path = signer.write_jwks(tmp_path / "jwks.json")     # or serve signer.jwks()
    token = signer.token("https://cds.example.org/cds-services/back-pain-after-chemo")
    headers = {"Authorization": f"Bearer {token}"}

``token(aud, **claims)`` overrides or adds claims; a claim set to ``DROP`` is
removed. ``header_overrides`` does the same for the JOSE header. Attack tokens
(``alg: none``, HMAC with a public key as the secret, tampered payloads) are built
with :func:`unsigned_token`, :func:`hmac_token` and :func:`tamper_payload`.
:class:`JwksServer` serves a JWK Set on a loopback port and counts requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import typing as t
import uuid
from pathlib import Path

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import JWS_HEADER_REGISTRY, HeaderParameter

__all__ = [
    "DROP",
    "TestSigner",
    "JwksServer",
    "b64url",
    "unsigned_token",
    "hmac_token",
    "tamper_payload",
    "jwks_of",
]

#: Pass as a claim or header value to remove it from the token.
DROP: t.Final = object()

_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def b64url(data: bytes | str | dict[str, t.Any]) -> str:
    """Base64url-encode bytes, text, or a dict as compact JSON, without padding."""
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _apply(base: dict[str, t.Any], overrides: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    result = dict(base)
    for name, value in (overrides or {}).items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


class TestSigner:
    """A fake CDS client: one fresh key pair, its JWK Set, and a token factory.

    :param alg: ``ES256``/``ES384``/``ES512`` (EC) or ``RS*``/``PS*`` (RSA)
    :param kid: key id (random if omitted)
    :param iss: issuer put in every token
    :param jku: if set, sent as the ``jku`` header
    :param tenant: if set, sent as the ``tenant`` claim
    :param lifetime: ``exp - iat`` in seconds (the sandbox uses 300)
    :param clock: seconds since the epoch, for ``iat``/``exp``
    :param rsa_bits: RSA modulus size
    :param jwk_params: extra members published in the public JWK (e.g. ``{"use": "sig"}``)
    :param key: reuse this private key instead of generating one (RSA generation is slow);
        its ``kid`` and JWK members are replaced by ``kid`` and ``jwk_params``
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        alg: str = "ES384",
        *,
        kid: str | None = None,
        iss: str = "https://ehr.example.org",
        jku: str | None = None,
        tenant: str | None = None,
        lifetime: int = 300,
        clock: t.Callable[[], float] = time.time,
        rsa_bits: int = 2048,
        jwk_params: t.Mapping[str, t.Any] | None = None,
        key: ECKey | RSAKey | None = None,
    ) -> None:
        self.alg = alg
        self.kid = kid or str(uuid.uuid4())
        self.iss = iss
        self.jku = jku
        self.tenant = tenant
        self.lifetime = lifetime
        self.clock = clock
        params = {"kid": self.kid, "use": "sig", **(jwk_params or {})}
        if key is not None:
            members = key.as_dict(private=True)
            private = {name: value for name, value in members.items() if name not in ("kid", "use", "alg")}
            self.key = type(key).import_key({**private, **params})
        elif alg.startswith("ES"):
            self.key: ECKey | RSAKey = ECKey.generate_key(_CURVES[alg], parameters=params)  # type: ignore[arg-type]
        else:
            self.key = RSAKey.generate_key(rsa_bits, parameters=params)  # type: ignore[arg-type]

    # -- keys ------------------------------------------------------------------

    def public_jwk(self, **extra: t.Any) -> dict[str, t.Any]:
        """The public JWK (no private members), with ``extra`` members merged in."""
        return {**self.key.as_dict(private=False), **extra}

    def jwks(self) -> dict[str, t.Any]:
        """A JWK Set holding this signer's public key."""
        return {"keys": [self.public_jwk()]}

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo), e.g. for alg-confusion attacks."""
        return self.key.as_pem(private=False)

    def write_jwks(self, path: Path) -> Path:
        """Write :meth:`jwks` to ``path`` and return it."""
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    # -- tokens ----------------------------------------------------------------

    def header(self, header_overrides: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        """The JOSE header: ``alg``, ``typ: JWT``, ``kid`` (+ ``jku`` if set), then overrides."""
        base: dict[str, t.Any] = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        if self.jku is not None:
            base["jku"] = self.jku
        return _apply(base, header_overrides)

    def claims(self, aud: str | list[str], /, **overrides: t.Any) -> dict[str, t.Any]:
        """The payload: ``iss aud exp iat jti`` (+ ``tenant`` if set), then overrides."""
        now = int(self.clock())
        base: dict[str, t.Any] = {
            "iss": self.iss,
            "aud": aud,
            "exp": now + self.lifetime,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        if self.tenant is not None:
            base["tenant"] = self.tenant
        return _apply(base, overrides)

    def token(
        self,
        aud: str | list[str],
        /,
        *,
        header_overrides: t.Mapping[str, t.Any] | None = None,
        **claim_overrides: t.Any,
    ) -> str:
        """Sign a compact JWT for ``aud`` with this signer's private key.

        The header's ``alg`` may be overridden only to another algorithm this key
        can sign with; use :func:`unsigned_token` / :func:`hmac_token` for attacks.
        """
        return self.sign(self.header(header_overrides), self.claims(aud, **claim_overrides))

    def sign(self, header: dict[str, t.Any], claims: dict[str, t.Any]) -> str:
        """Sign an arbitrary header and payload (no defaults added, header values not validated)."""
        payload = json.dumps(claims, separators=(",", ":"))
        registry = jws.JWSRegistry(
            header_registry=_permissive_header_registry(header),
            algorithms=[header["alg"]],
            strict_check_header=False,
        )
        return jws.serialize_compact(header, payload, self.key, registry=registry)

    def authorization(self, aud: str | list[str], /, **kwargs: t.Any) -> str:
        """``"Bearer <token>"``, ready for the Authorization header."""
        return f"Bearer {self.token(aud, **kwargs)}"


def _accept_anything(value: t.Any) -> None:
    return None


def _permissive_header_registry(header: t.Mapping[str, t.Any]) -> dict[str, HeaderParameter]:
    """Let the signer emit any header (bad ``typ``, odd ``jku``, ``crit``) so the verifier can be tested."""
    names = set(JWS_HEADER_REGISTRY) | set(header)
    return {name: HeaderParameter(name, _accept_anything, required=(name == "alg")) for name in names}


def jwks_of(*signers: TestSigner) -> dict[str, t.Any]:
    """One JWK Set with the public keys of several signers (key rotation, multi-key sets)."""
    return {"keys": [signer.public_jwk() for signer in signers]}


def unsigned_token(header: dict[str, t.Any], claims: dict[str, t.Any], signature: str = "") -> str:
    """Build ``header.payload.signature`` without signing (``alg: none`` attacks, garbage)."""
    return f"{b64url(header)}.{b64url(claims)}.{signature}"


def hmac_token(header: dict[str, t.Any], claims: dict[str, t.Any], secret: bytes) -> str:
    """HMAC-sign a token with ``secret`` (e.g. a public key PEM: the alg-confusion attack).

    Uses the standard library directly because a JOSE library (rightly) refuses
    to use a PEM public key as an HMAC secret.
    """
    digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), digests[header["alg"]]).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper_payload(token: str, **changes: t.Any) -> str:
    """Return ``token`` with its payload changed but the original signature kept."""
    header_segment, payload_segment, signature = token.split(".")
    padded = payload_segment + "=" * (-len(payload_segment) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    return f"{header_segment}.{b64url(_apply(claims, changes))}.{signature}"


class JwksServer:
    """Serve a JWK Set over HTTP on 127.0.0.1 in a thread, counting requests per path.

    Use as a context manager. ``url`` is ``http://127.0.0.1:<port>/jwks.json``;
    set :attr:`jwks` (or :attr:`status`/:attr:`body`) to change what it serves.
    Every path is answered from the same document; :attr:`hits` counts by path.
    """

    def __init__(self, jwks: dict[str, t.Any] | None = None, path: str = "/jwks.json", port: int = 0) -> None:
        self.port = port  #: 0: any free port
        self.jwks: dict[str, t.Any] | None = jwks if jwks is not None else {"keys": []}
        self.path = path
        self.status = 200
        self.body: bytes | None = None  # raw body, overrides jwks
        self.headers: dict[str, str] = {}
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def start(self) -> JwksServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with server._lock:
                    server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.body if server.body is not None else json.dumps(server.jwks).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
