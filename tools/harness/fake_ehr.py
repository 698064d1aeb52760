"""An in-repo test EHR: a SMART authorization server on authlib's server components + FHIR proxy.

Built on ``authlib.integrations.flask_oauth2.AuthorizationServer`` with the RFC 6749
authorization-code grant and RFC 7636 ``CodeChallenge(required=True)`` (PKCE enforced; codes
single use, 60 s) and authlib's OpenID Connect ``OpenIDCode`` extension: with ``openid`` in
the scope the token response carries an ``id_token`` signed RS256 (or ES256) with this EHR's
key, with ``iss`` = its ``issuer``, ``aud`` = the client id, the ``nonce`` the app sent (a
nonce is accepted once) and, with ``fhirUser`` in the scope, the launch's ``fhirUser``. The
public keys are served at ``jwks_uri``; discovery lists ``sso-openid-connect``, ``issuer``
and ``jwks_uri``. Each ``launch`` value is registered with :meth:`TestEhr.add_launch` and
carries its context (patient, encounter, appContext, fhirContext, need_patient_banner,
fhirUser) into the token response, or a failure to simulate (denied consent, token endpoint
error, no ``openid`` granted, a forged id_token: wrong claims, a stranger's key, ``none``, HS256).
``{base}/fhir`` is the FHIR base (the ``iss``): ``.well-known/smart-configuration`` is served
here, everything else is proxied to the sekmet-fhir test server, only with a Bearer token this
EHR issued and only for that token's patient. Every request is recorded in ``hits``.

Runs on a werkzeug server in a thread on a free loopback port::

    with TestEhr(fhir_server.base_url, redirect_uri=...) as ehr:
        launch = ehr.add_launch(patient="p1")
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
import typing as t
from dataclasses import dataclass, field

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from joserfc.util import json_b64encode
from werkzeug.serving import make_server

CODE_SECONDS = 60
ID_TOKEN_SECONDS = 300
CLINICIAN = "Practitioner/test-ehr-clinician"


@dataclass
class Launch:
    patient: str
    encounter: str | None = None
    app_context: str | None = None
    fhir_context: list[dict[str, t.Any]] | None = None
    need_patient_banner: bool = True
    deny: bool = False
    token_error: bool = False
    scope: str | None = None  #: grant this scope instead of the requested one
    extra: dict[str, t.Any] | None = None  #: more token-response fields (e.g. an id_token)
    fhir_user: str | None = CLINICIAN  #: the signed-in user's fhirUser claim
    openid: bool = True  #: False: grant neither openid nor fhirUser (no id_token)
    #: id_token claims to override (e.g. ``{"iss": "https://other"}``, ``{"exp": 0}``)
    id_token_claims: dict[str, t.Any] | None = None
    #: how the id_token is signed: "rs256"/"es256" (this EHR's keys), "stranger" (another key
    #: with this EHR's kid: a bad signature), "unknown-kid" (another key and kid), "none"
    #: (unsigned), "hs256" (HMAC, the algorithm-confusion forgery)
    id_token_signer: str = "rs256"


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == ("client_secret_basic" if self.client_secret else "none")
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    launch: Launch
    nonce: str | None = None
    created: float = field(default_factory=time.monotonic)
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return time.monotonic() - self.created > CODE_SECONDS


class _User:
    id = CLINICIAN


@functools.cache
def _keys() -> tuple[RSAKey, ECKey, RSAKey, RSAKey]:
    """The EHR's RSA and EC signing keys, a stranger's key with the RSA key's kid, and one with
    a kid of its own (made once per process: RSA key generation is slow)."""
    rsa = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
    ec = ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, auto_kid=True)
    stranger = RSAKey.generate_key(2048, {"kid": rsa.kid}, auto_kid=False)
    return rsa, ec, stranger, RSAKey.generate_key(2048, auto_kid=True)


class _OpenID(OpenIDCode):
    """authlib's OpenID Connect extension, signing with the EHR's keys (or forging, on request).

    authlib ≥ 1.7 builds the id_token from ``resolve_client_private_key``, ``get_client_claims``,
    ``get_client_algorithm`` and ``get_encode_header``; older versions (the pyproject's lower
    bound) from ``get_jwt_config``. Both are given, from the launch being answered.
    """

    def __init__(self, ehr: TestEhr) -> None:
        super().__init__(require_nonce=False)
        self.ehr = ehr
        self._current = threading.local()  # the launch whose id_token is being made

    def process_token(self, grant: t.Any, response: t.Any) -> t.Any:
        launch = grant.request.authorization_code.launch
        self._current.launch = launch
        token = super().process_token(grant, response)
        if token.get("id_token") and launch.id_token_signer in ("none", "hs256"):
            token["id_token"] = self._forge(token["id_token"], launch.id_token_signer)
        return token

    def exists_nonce(self, nonce: str, req: t.Any) -> bool:
        return nonce in self.ehr.used_nonces

    def resolve_client_private_key(self, client: t.Any) -> t.Any:
        signer = self._current.launch.id_token_signer
        return {"rs256": self.ehr.rsa_key, "es256": self.ehr.ec_key, "stranger": self.ehr.stranger_key,
                "unknown-kid": self.ehr.unknown_kid_key}.get(signer, self.ehr.rsa_key)

    def get_client_algorithm(self, client: t.Any) -> str:
        return "ES256" if self._current.launch.id_token_signer == "es256" else "RS256"

    def get_encode_header(self, client: t.Any) -> dict[str, str]:
        key = self.resolve_client_private_key(client)
        return {"alg": self.get_client_algorithm(client), "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: t.Any) -> dict[str, t.Any]:
        return {"iss": self.ehr.base_url, "aud": client.get_client_id(),
                "exp": int(time.time()) + ID_TOKEN_SECONDS}

    def get_jwt_config(self, grant: t.Any) -> dict[str, t.Any]:  # authlib < 1.7
        key = self.resolve_client_private_key(grant.client)
        return {"key": key.as_dict(private=True), "alg": self.get_client_algorithm(grant.client),
                "kid": key.kid, "iss": self.ehr.base_url, "exp": ID_TOKEN_SECONDS}

    def get_audiences(self, req: t.Any) -> str:  # authlib < 1.7
        return str(req.client.get_client_id())

    def generate_user_info(self, user: t.Any, scope: str) -> dict[str, t.Any]:
        launch = self._current.launch
        info: dict[str, t.Any] = {"sub": "test-ehr-clinician"}
        if "fhirUser" in scope.split() and launch.fhir_user:
            info["fhirUser"] = launch.fhir_user
        info.update(launch.id_token_claims or {})
        return info

    def _forge(self, signed: str, how: str) -> str:
        claims = jwt.decode(signed, self.ehr.rsa_key, algorithms=["RS256"]).claims
        if how == "hs256":  # an HMAC keyed with something public
            secret = OctKey.import_key(self.ehr.client.client_id.encode() * 4)
            return jwt.encode({"alg": "HS256", "kid": self.ehr.rsa_key.kid}, claims, secret, ["HS256"])
        # alg "none": joserfc warns on it (rightly), so the unsigned token is put together here
        return (json_b64encode({"alg": "none", "typ": "JWT"}).decode() + "."
                + json_b64encode(claims).decode() + ".")


class TestEhr:
    """See the module docstring. ``hits`` lists ``(method, path)`` of every request received."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        fhir_upstream: str,
        *,
        redirect_uri: str,
        client_id: str = "backpain-cds",
        client_secret: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """``host`` is the name in the EHR's URLs (``localhost`` makes the EHR another *site* than an
        app on 127.0.0.1, as a real EHR embedding the app is); the server binds 127.0.0.1."""
        self.fhir_upstream = fhir_upstream.rstrip("/")
        self.client = _Client(client_id, client_secret, [redirect_uri])
        self.launches: dict[str, Launch] = {}
        self.codes: dict[str, _Code] = {}
        self.tokens: dict[str, Launch] = {}
        self.hits: list[tuple[str, str]] = []
        self.token_requests: list[dict[str, t.Any]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.discovery_overrides: dict[str, t.Any] = {}
        self.fhir_down = False
        self.jwks_down = False
        self.jwks_override: t.Any = None  #: served at jwks_uri instead of the keys (JSON or bytes)
        self.id_tokens: list[str] = []  #: every id_token issued
        self.used_nonces: set[str] = set()
        self.rsa_key, self.ec_key, self.stranger_key, self.unknown_kid_key = _keys()
        self._http = requests.Session()
        self._http.trust_env = False  # loopback only
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def fhir_url(self) -> str:
        """The FHIR base: what the EHR sends as ``iss``."""
        return f"{self.base_url}/fhir"

    def start(self) -> TestEhr:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def __enter__(self) -> TestEhr:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_launch(self, patient: str, **context: t.Any) -> str:
        """Register a launch; return its opaque ``launch`` value."""
        launch_id = secrets.token_urlsafe(16)
        self.launches[launch_id] = Launch(patient=patient, **context)
        return launch_id

    def rotate_keys(self) -> None:
        """A new RSA signing key (new kid) replaces the old one in the JWKS and in use."""
        self.rsa_key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)

    def jwks(self) -> dict[str, t.Any]:
        """The public keys (``jwks_uri``)."""
        return dict(KeySet([self.rsa_key, self.ec_key]).as_dict(private=False))

    def discovery(self) -> dict[str, t.Any]:
        document = {
            "issuer": self.base_url,
            "jwks_uri": f"{self.base_url}/auth/jwks",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "authorization_endpoint": f"{self.base_url}/auth/authorize",
            "token_endpoint": f"{self.base_url}/auth/token",
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs"],
            "response_types_supported": ["code"],
            "capabilities": [
                "launch-ehr", "client-public", "client-confidential-symmetric", "sso-openid-connect",
                "context-ehr-patient", "context-ehr-encounter", "context-banner", "context-style",
                "permission-v2", "permission-patient",
            ],
        }
        for key, value in self.discovery_overrides.items():
            if value is None:
                document.pop(key, None)
            else:
                document[key] = value
        return document

    # --- the Flask app ------------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask("test_ehr")
        ehr = self

        class Grant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic"]

            def save_authorization_code(self, code: str, req: t.Any) -> None:
                data = req.payload.data
                launch = ehr.launches[data["launch"]]
                scope = req.payload.scope or ""
                if not launch.openid:  # an EHR that grants no identity
                    scope = " ".join(s for s in scope.split() if s not in ("openid", "fhirUser"))
                if data.get("nonce"):
                    ehr.used_nonces.add(data["nonce"])
                ehr.codes[code] = _Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=scope,
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    launch=launch,
                    nonce=data.get("nonce"),
                )

            def query_authorization_code(self, code: str, client: t.Any) -> _Code | None:
                item = ehr.codes.get(code)
                if item and item.client_id == client.client_id and not item.is_expired():
                    return item
                return None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                ehr.codes.pop(authorization_code.code, None)  # single use

            def authenticate_user(self, authorization_code: _Code) -> _User:
                return _User()

            def create_token_response(self) -> t.Any:
                launch = self.request.authorization_code.launch
                status, body, headers = super().create_token_response()
                body = dict(body)
                if launch.scope is not None:
                    body["scope"] = launch.scope
                body["patient"] = launch.patient
                body["need_patient_banner"] = launch.need_patient_banner
                body["smart_style_url"] = f"{ehr.base_url}/style.json"
                for key, value in (("encounter", launch.encounter), ("appContext", launch.app_context),
                                   ("fhirContext", launch.fhir_context)):
                    if value is not None:
                        body[key] = value
                body.update(launch.extra or {})
                ehr.tokens[body["access_token"]] = launch
                if body.get("id_token"):
                    ehr.id_tokens.append(body["id_token"])
                return status, body, headers

        def save_token(token: dict[str, t.Any], req: t.Any) -> None:
            pass  # create_token_response records the token with its launch

        server = AuthorizationServer(app, query_client=lambda cid: ehr.client if cid == ehr.client.client_id else None,
                                     save_token=save_token)
        server.register_grant(Grant, [CodeChallenge(required=True), _OpenID(ehr)])

        @app.before_request
        def _record() -> None:
            with ehr._lock:
                ehr.hits.append((request.method, request.path))

        @app.get("/ehr/chart")
        def chart() -> Response:
            """An EHR page that embeds the app's launch URL in an iframe (as an EHR sidebar does)."""
            from html import escape
            from urllib.parse import urlencode

            launch_url = request.args["app"] + "?" + urlencode(
                {"iss": ehr.fhir_url, "launch": request.args["launch"]})
            page = (
                "<!doctype html><html><head><title>Test EHR chart</title></head><body>"
                "<h1>Test EHR</h1>"
                f'<iframe id="app" name="app" src="{escape(launch_url)}" width="420" height="1400"></iframe>'
                "</body></html>"
            )
            return Response(page, mimetype="text/html")

        @app.get("/fhir/.well-known/smart-configuration")
        def smart_configuration() -> Response:
            return jsonify(ehr.discovery())

        @app.get("/auth/jwks")
        def jwks() -> Response:
            if ehr.jwks_down:
                return Response("keys unavailable", status=503)
            if isinstance(ehr.jwks_override, bytes):
                return Response(ehr.jwks_override, mimetype="application/json")
            return jsonify(ehr.jwks() if ehr.jwks_override is None else ehr.jwks_override)

        @app.get("/auth/authorize")
        def authorize() -> t.Any:
            ehr.authorize_requests.append(dict(request.args))
            launch = ehr.launches.get(request.args.get("launch", ""))
            if launch is None:
                return jsonify(error="invalid_request", error_description="unknown launch"), 400
            if (request.args.get("aud") or "").rstrip("/") != ehr.fhir_url:
                return jsonify(error="invalid_request", error_description="aud is not this FHIR base"), 400
            if request.args.get("code_challenge_method") != "S256":
                return jsonify(error="invalid_request", error_description="PKCE S256 required"), 400
            user = _User()
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                return jsonify(error=error.error, error_description=error.description), 400
            return server.create_authorization_response(grant=grant, grant_user=None if launch.deny else user)

        @app.post("/auth/token")
        def token() -> t.Any:
            ehr.token_requests.append(
                {"form": dict(request.form), "basic": request.authorization is not None}
            )
            item = ehr.codes.get(request.form.get("code", ""))
            if item is not None and item.launch.token_error:
                return jsonify(error="invalid_grant", error_description="simulated failure"), 400
            return server.create_token_response()

        @app.get("/fhir/<path:path>")
        def fhir(path: str) -> Response:
            auth = request.headers.get("Authorization", "")
            launch = ehr.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
            if launch is None:
                return Response('{"resourceType":"OperationOutcome"}', status=401)
            if ehr.fhir_down:
                return Response("upstream down", status=503)
            patient_param = request.args.get("patient")
            reads_other = path.startswith("Patient/") and path != f"Patient/{launch.patient}"
            if (patient_param is not None and patient_param != launch.patient) or reads_other:
                return Response('{"resourceType":"OperationOutcome"}', status=403)
            query = request.query_string.decode()
            upstream = ehr._http.get(
                f"{ehr.fhir_upstream}/{path}" + (f"?{query}" if query else ""),
                headers={"Accept": "application/fhir+json"}, timeout=30,
            )
            body = upstream.content.replace(ehr.fhir_upstream.encode(), ehr.fhir_url.encode())
            return Response(body, status=upstream.status_code, mimetype="application/fhir+json")

        return app
