"""An in-repo test EHR: a SMART authorization server on authlib's server components + FHIR proxy.

Built on ``authlib.integrations.flask_oauth2.AuthorizationServer`` with the RFC 6749
authorization-code grant and RFC 7636 ``CodeChallenge(required=True)`` (PKCE enforced; codes
single use, 60 s). Each ``launch`` value is registered with :meth:`TestEhr.add_launch` and
carries its context (patient, encounter, appContext, fhirContext, need_patient_banner) into
the token response, or a failure to simulate (denied consent, token endpoint error).
``{base}/fhir`` is the FHIR base (the ``iss``): ``.well-known/smart-configuration`` is served
here, everything else is proxied to the sekmet-fhir test server, only with a Bearer token this
EHR issued and only for that token's patient. Every request is recorded in ``hits``.

Runs on a werkzeug server in a thread on a free loopback port::

    with TestEhr(fhir_server.base_url, redirect_uri=...) as ehr:
        launch = ehr.add_launch(patient="p1")
"""

from __future__ import annotations

import secrets
import threading
import time
import typing as t
from dataclasses import dataclass, field

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

CODE_SECONDS = 60


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
    created: float = field(default_factory=time.monotonic)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.monotonic() - self.created > CODE_SECONDS


class _User:
    id = "Practitioner/test-ehr-clinician"


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

    def discovery(self) -> dict[str, t.Any]:
        document = {
            "issuer": self.base_url,
            "authorization_endpoint": f"{self.base_url}/auth/authorize",
            "token_endpoint": f"{self.base_url}/auth/token",
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs"],
            "response_types_supported": ["code"],
            "capabilities": [
                "launch-ehr", "client-public", "client-confidential-symmetric",
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
                ehr.codes[code] = _Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope or "",
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    launch=ehr.launches[data["launch"]],
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
                return status, body, headers

        def save_token(token: dict[str, t.Any], req: t.Any) -> None:
            pass  # create_token_response records the token with its launch

        server = AuthorizationServer(app, query_client=lambda cid: ehr.client if cid == ehr.client.client_id else None,
                                     save_token=save_token)
        server.register_grant(Grant, [CodeChallenge(required=True)])

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
