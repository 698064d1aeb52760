"""The SMART blueprint: ``/smart/launch`` → EHR authorize → ``/smart/callback`` → ``/smart/view``.

EHR launch per SMART App Launch 2.2 (SMART.md §1) on authlib's OAuth 2 client:

* ``/smart/launch?iss=&launch=``: both required; ``iss`` must be a configured
  ``[[smart.ehrs]]`` FHIR base (only a trailing ``/`` is ignored). Both are checked before any
  network call. Then discovery (:mod:`smart_launch.discovery`), and a 302 to the
  ``authorization_endpoint`` with ``response_type=code``, ``client_id``, ``redirect_uri`` =
  ``{public_base_url}/smart/callback``, ``launch`` unchanged, v2 scopes (:func:`smart_scope`:
  ``launch openid fhirUser`` and ``patient/<Type>.rs``), a ``nonce`` (256 bits, stored as a
  digest with the state), ``state`` (256 bits, single use, 10 minutes, bound to this browser),
  ``aud`` = ``iss`` and PKCE S256.
* ``/smart/callback``: the state and its browser binding are checked (and the state, with its
  nonce, used up) before anything else; then ``error=``; then the code is exchanged (public
  client, or ``client_secret_basic`` when a secret is configured); then an ``id_token``, if the
  EHR sent one, is validated (:mod:`smart_launch.identity`) or the session is refused.
* ``/smart/view/<view id>``: the detail view for that launch, in that browser only, with the
  signed-in user's ``fhirUser`` in its header when a valid id_token named one.

The browser holds one opaque cookie (a random browser id: ``Secure; HttpOnly; SameSite=None;
Partitioned`` so it survives EHR iframes) and the view id in the URL, so several launches in
one browser (several patients in tabs) never share a slot. Tokens, the PKCE verifier and the
launch value stay in the SQL store (:mod:`smart_launch.session_store`); nothing of them reaches
the browser. The id_token is read once, in the callback, and kept nowhere: only its validated
``fhirUser`` reference is stored (encrypted) and shown. Logs carry reasons, never tokens,
id_tokens, codes, states, nonces or patient ids.
"""

from __future__ import annotations

import logging
import secrets
import time
import typing as t

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from fhir_mapping.client import FhirAccessError
from fhir_mapping.extract import MalformedResource
from smart_launch.app_context import AppContextSigner
from smart_launch.config import LAUNCH_SECONDS, EhrRegistration, SmartConfig
from smart_launch.discovery import DiscoveryError, fetch_smart_configuration
from smart_launch.identity import IdTokenError, IdTokenValidator, JwksCache, new_nonce
from smart_launch.pages import SmartError, apply_headers, browser_cookie, render_page
from smart_launch.session_store import SmartStore, SmartStoreError
from smart_launch.views import DetailViewBuilder, PatientMissing

log = logging.getLogger("smart_launch.launch")

BROWSER_COOKIE = "bpc_browser"
_MAX_PARAM = 4096


def smart_scope(resource_types: t.Iterable[str]) -> str:
    """SMART v2 scopes: ``launch openid fhirUser`` and read+search on each type the view reads.

    ``openid fhirUser`` asks for an ``id_token`` naming the signed-in user (SMART.md §1.4); the
    view shows its ``fhirUser`` only after validating it (:mod:`smart_launch.identity`: the
    EHR's JWKS, ``iss``, ``aud``, ``exp``, the ``nonce`` sent), and an EHR that grants no
    ``openid`` simply gets a view without the user line.
    """
    scopes = ["launch", "openid", "fhirUser"]
    scopes += [f"patient/{rtype}.rs" for rtype in sorted(set(resource_types))]
    return " ".join(scopes)


def create_smart_blueprint(
    config: SmartConfig,
    store: SmartStore,
    builder: DetailViewBuilder,
    signer: AppContextSigner,
    *,
    http_session_factory: t.Callable[[], requests.Session] = requests.Session,
) -> Blueprint:
    """The blueprint; the caller registers it and has created the store's schema."""
    bp = Blueprint("smart", __name__, url_prefix="/smart", template_folder="templates",
                   static_folder="static", static_url_path="/static")
    scope = smart_scope(builder.resource_types())
    id_tokens = IdTokenValidator(JwksCache(session_factory=http_session_factory,
                                           timeout_seconds=config.timeout_seconds))

    def oauth_session(ehr: EhrRegistration) -> OAuth2Session:
        return OAuth2Session(
            client_id=ehr.client_id,
            client_secret=ehr.client_secret,
            scope=scope,
            redirect_uri=config.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if ehr.confidential else "none",
        )

    @bp.errorhandler(SmartError)
    def _smart_error(exc: SmartError) -> Response:
        log.info("SMART request refused", extra={"status": exc.status, "reason": exc.log_reason})
        return render_page("smart_error.html", config, status=exc.status, error=exc)

    @bp.errorhandler(SmartStoreError)
    def _store_error(exc: SmartStoreError) -> Response:
        log.error("SMART store unavailable: %s", exc)
        return render_page("smart_error.html", config, status=503, error=SmartError(
            503, "Temporarily unavailable", "The app's database cannot be reached. Try again shortly.",
            "store unavailable"))

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # class name only: a message may quote a token or clinical content
        log.error("SMART page failed: %s", exc.__class__.__name__)
        return render_page("smart_error.html", config, status=500, error=SmartError(
            500, "Something went wrong", "The detail view could not be shown. Use the record in "
            "the EHR; the service log has the details.", "unexpected"))

    @bp.after_request
    def _headers(response: Response) -> Response:
        return apply_headers(response, config)

    @bp.get("/launch")
    def launch() -> WerkzeugResponse:  # flask.redirect is typed as werkzeug's Response
        iss = request.args.get("iss", "")
        launch_value = request.args.get("launch", "")
        if not iss or not launch_value:
            raise SmartError(400, "The app was not launched by an EHR",
                             "Open it from the EHR: the launch needs both an iss and a launch "
                             "parameter.", "missing iss or launch")
        if len(iss) > _MAX_PARAM or len(launch_value) > _MAX_PARAM:
            raise SmartError(400, "Launch refused", "The launch parameters are too long.", "too long")
        ehr = config.ehr_for(iss)
        if ehr is None:
            raise SmartError(400, "This EHR is not registered",
                             "The FHIR server that launched the app is not configured for it "
                             "([[smart.ehrs]]), so the app did not contact it.", "unknown iss")
        with http_session_factory() as http:
            try:
                discovery = fetch_smart_configuration(iss, session=http,
                                                      timeout_seconds=config.timeout_seconds)
            except DiscoveryError as exc:
                raise SmartError(502, "The EHR's sign-in service cannot be used", exc.reason,
                                 "discovery failed") from None
        state = secrets.token_urlsafe(32)
        nonce, nonce_hash = new_nonce()
        verifier = secrets.token_urlsafe(64)
        browser_id = _browser_id() or secrets.token_urlsafe(32)
        with oauth_session(ehr) as client:
            url, _ = client.create_authorization_url(
                discovery.authorization_endpoint, state=state, code_verifier=verifier,
                aud=iss, launch=launch_value, nonce=nonce,
            )
        now = int(time.time())
        store.save_launch(state=state, browser_id=browser_id, iss=iss, launch=launch_value,
                          code_verifier=verifier, issuer=discovery.issuer,
                          token_endpoint=discovery.token_endpoint, now=now,
                          expires_at=now + LAUNCH_SECONDS, nonce_hash=nonce_hash,
                          oidc=discovery.oidc)
        response = redirect(url, code=302)
        browser_cookie(response, BROWSER_COOKIE, browser_id,
                       max_age=max(LAUNCH_SECONDS, config.session_seconds))
        return response

    @bp.get("/callback")
    def callback() -> WerkzeugResponse:
        state = request.args.get("state", "")
        if not state or len(state) > _MAX_PARAM:
            raise SmartError(400, "Sign-in failed", "The EHR's answer has no state.", "no state")
        pending, reason = store.claim_launch(state=state, browser_id=_browser_id(),
                                             now=int(time.time()))
        if pending is None:
            raise SmartError(400, "This sign-in is no longer valid",
                             "It has expired, was already used, or was opened in another browser. "
                             "Open the app again from the EHR.", reason)
        callback_iss = request.args.get("iss")
        if callback_iss and pending.issuer and callback_iss != pending.issuer:
            raise SmartError(400, "Sign-in failed", "The answer came from another authorization "
                             "server than the one the app asked.", "callback iss mismatch")
        error = request.args.get("error")
        if error:
            if error == "access_denied":
                raise SmartError(403, "Access was not granted",
                                 "The EHR did not authorise the app. Nothing was read.", "access_denied")
            raise SmartError(400, "The EHR refused the sign-in",
                             f"The EHR answered with the error code {error[:64]!r}.", "authorize error")
        code = request.args.get("code", "")
        if not code or len(code) > _MAX_PARAM:
            raise SmartError(400, "Sign-in failed", "The EHR's answer has no code.", "no code")
        ehr = config.ehr_for(pending.iss)
        if ehr is None:
            raise SmartError(400, "This EHR is not registered", "The EHR is no longer configured.",
                             "iss removed")
        with oauth_session(ehr) as client:
            try:
                token = client.fetch_token(
                    pending.token_endpoint, grant_type="authorization_code", code=code,
                    code_verifier=pending.code_verifier, redirect_uri=config.redirect_uri,
                    timeout=config.timeout_seconds, allow_redirects=False,
                )
            except OAuthError as exc:
                raise SmartError(502, "The EHR did not issue access",
                                 f"The EHR's token endpoint refused the exchange ({str(exc.error)[:64]}).",
                                 "token endpoint error") from None
            except (requests.RequestException, ValueError):
                raise SmartError(502, "The EHR's sign-in service cannot be reached",
                                 "The token endpoint did not answer usefully.", "token endpoint down") from None
        token = dict(token)
        if not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise SmartError(502, "The EHR did not issue access", "The token response has no "
                             "access token.", "no access token")
        if str(token.get("token_type", "")).lower() != "bearer":
            raise SmartError(502, "The EHR did not issue access", "The token is not a Bearer "
                             "token.", "token_type")
        fhir_user = None
        id_token = token.pop("id_token", None)
        if id_token is not None:
            try:
                fhir_user = id_tokens.fhir_user(
                    id_token, iss=pending.iss, oidc=pending.oidc, client_id=ehr.client_id,
                    nonce_hash=pending.nonce_hash, now=int(time.time()), access_token=token["access_token"],
                )
            except IdTokenError as exc:
                if exc.status == 502:
                    raise SmartError(502, "The EHR's sign-in cannot be checked",
                                     f"The app could not verify who is signed in: {exc.reason}. "
                                     "Nothing was read.", f"id_token unverifiable: {exc.reason}") from None
                raise SmartError(403, "Sign-in refused: the identity could not be verified",
                                 f"The EHR's answer named a signed-in user, but {exc.reason}. The app "
                                 "does not open a session on an identity it cannot verify; nothing "
                                 "was read. Open the app again from the EHR, and tell its support "
                                 "if this repeats.", f"id_token invalid: {exc.reason}") from None
        if not isinstance(token.get("patient"), str) or not token["patient"]:
            raise SmartError(400, "No patient in context", "Open the app from a patient's chart.",
                             "no patient")
        view_id = secrets.token_urlsafe(32)
        browser_id = _browser_id()
        assert browser_id is not None  # claim_launch checked it
        now = int(time.time())
        lifetime = config.session_seconds
        expires_in = token.get("expires_in")
        if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
            lifetime = min(lifetime, expires_in)  # no view outlives its access token
        store.save_session(view_id=view_id, browser_id=browser_id, iss=pending.iss, token=token,
                           now=now, expires_at=now + lifetime, fhir_user=fhir_user)
        log.info("SMART launch completed (%s)",
                 "id_token validated" if id_token is not None else "no id_token",
                 extra={"scope": token.get("scope", "")})
        return redirect(f"{config.public_base_url.rstrip('/')}/smart/view/{view_id}", code=303)

    def load_detail(view_id: str) -> t.Any:
        session, reason = store.load_session(view_id=view_id[:_MAX_PARAM], browser_id=_browser_id(),
                                             now=int(time.time()))
        if session is None:
            raise SmartError(401, "This view has expired",
                             "Open the app again from the EHR.", reason)
        handle = signer.verify(session.app_context, patient_id=session.patient)
        try:
            return builder.build(session, handle)
        except PatientMissing:
            raise SmartError(400, "No patient in context", "Open the app from a patient's chart.",
                             "no patient") from None
        except FhirAccessError as exc:
            status = exc.status_code
            if status in (401, 403):
                raise SmartError(403, "The EHR refused to share the record",
                                 "The app's access was refused. Open the app again from the EHR.",
                                 f"FHIR HTTP {status}") from None
            raise SmartError(502, "The patient's record cannot be read right now",
                             "The EHR's FHIR server did not answer usefully. Nothing is shown "
                             "rather than an incomplete picture: check the record in the EHR.",
                             f"FHIR failed: {exc.reason}") from None
        except MalformedResource:
            raise SmartError(502, "The patient's record cannot be read",
                             "The EHR returned a resource that is not valid FHIR R4.",
                             "malformed resource") from None

    @bp.get("/view/<view_id>")
    def view(view_id: str) -> Response:
        detail = load_detail(view_id)
        return render_page("smart_view.html", config, status=200, view=detail, view_id=view_id,
                           style_hashes=detail.timeline.style_hashes)

    @bp.get("/view/<view_id>/handout")
    def handout(view_id: str) -> Response:
        detail = load_detail(view_id)
        dates = [e for e in detail.timeline.events if e.kind.startswith("gcsf-") or e.kind == "chemotherapy"]
        return render_page("smart_handout.html", config, status=200, view=detail, view_id=view_id,
                           dates=dates)

    return bp


def _browser_id() -> str | None:
    value = request.cookies.get(BROWSER_COOKIE)
    if value and 20 <= len(value) <= 128:
        return value
    return None
