"""Server-side SMART state in the service's SQL database: pending launches and view sessions.

The browser holds only an opaque browser id (cookie) and, in the view's URL, an opaque view id;
the database keeps their SHA-256 hashes, never the values. The PKCE verifier, the ``launch``
value, the access token and the signed-in user's ``fhirUser`` reference are stored encrypted
(Fernet, key derived from ``[smart] secret``); the OpenID Connect ``nonce`` only as its SHA-256
digest, with the state it is used up with. The ``id_token`` itself is never stored.
Times are epoch seconds (portable between SQLite and PostgreSQL).

Tables live in their own :class:`sqlalchemy.MetaData` on the service's engine; the database
gets them from the service's schema migrations (``backpain_cds/migrations``), like every table.
"""

from __future__ import annotations

import base64
import hashlib
import json
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from smart_launch.identity import OidcSettings

metadata = sa.MetaData()

launch_state = sa.Table(
    "smart_launch_state",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("browser_hash", sa.String(64), nullable=False),
    sa.Column("iss", sa.String(1024), nullable=False),
    sa.Column("launch_enc", sa.Text, nullable=False),
    sa.Column("verifier_enc", sa.Text, nullable=False),
    sa.Column("issuer", sa.String(1024)),
    sa.Column("token_endpoint", sa.String(2048), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("used_at", sa.BigInteger),
    # OpenID Connect (added after the first release: nullable, migration 0002_smart_openid)
    sa.Column("nonce_hash", sa.String(64)),
    sa.Column("jwks_uri", sa.String(2048)),
    sa.Column("id_token_algs", sa.String(256)),  #: accepted algorithms, space-separated
)

view_session = sa.Table(
    "smart_session",
    metadata,
    sa.Column("view_hash", sa.String(64), primary_key=True),
    sa.Column("browser_hash", sa.String(64), nullable=False),
    sa.Column("iss", sa.String(1024), nullable=False),
    sa.Column("patient", sa.String(256)),
    sa.Column("encounter", sa.String(256)),
    sa.Column("token_enc", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False, default=""),
    sa.Column("need_patient_banner", sa.Boolean, nullable=False, default=False),
    sa.Column("smart_style_url", sa.Text),
    sa.Column("app_context", sa.Text),
    sa.Column("fhir_context", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("fhir_user_enc", sa.Text),  #: the validated id_token's fhirUser (added later)
)


class SmartStoreError(RuntimeError):
    """The database could not be used."""


@dataclass(frozen=True)
class PendingLaunch:
    """A claimed authorization request (its state has just been used up)."""

    iss: str
    launch: str
    code_verifier: str
    issuer: str | None
    token_endpoint: str
    nonce_hash: str | None = None
    jwks_uri: str | None = None
    id_token_algorithms: tuple[str, ...] = ()

    @property
    def oidc(self) -> OidcSettings:
        return OidcSettings(self.issuer, self.jwks_uri, self.id_token_algorithms)


@dataclass(frozen=True)
class ViewSession:
    """One completed launch: what the token response said, and the token (decrypted)."""

    iss: str
    patient: str | None
    encounter: str | None
    access_token: str
    scope: str
    need_patient_banner: bool
    smart_style_url: str | None
    app_context: str | None
    fhir_context: list[t.Any]
    expires_at: int
    fhir_user: str | None = None  #: from a validated id_token


def digest(value: str) -> str:
    """The stored form of a state, browser id or view id."""
    return hashlib.sha256(value.encode()).hexdigest()


class SmartStore:
    """Launch states (single use, time-limited, bound to a browser) and view sessions."""

    def __init__(self, engine: sa.Engine, secret: str) -> None:
        self.engine = engine
        key = hashlib.sha256(b"backpain-cds.smart.store:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    # --- launches ---------------------------------------------------------------------------
    def save_launch(
        self,
        *,
        state: str,
        browser_id: str,
        iss: str,
        launch: str,
        code_verifier: str,
        issuer: str | None,
        token_endpoint: str,
        now: int,
        expires_at: int,
        nonce_hash: str | None = None,
        oidc: OidcSettings | None = None,
    ) -> None:
        row = {
            "state_hash": digest(state),
            "browser_hash": digest(browser_id),
            "iss": iss,
            "launch_enc": self._encrypt(launch),
            "verifier_enc": self._encrypt(code_verifier),
            "issuer": issuer,
            "token_endpoint": token_endpoint,
            "created_at": now,
            "expires_at": expires_at,
            "used_at": None,
            "nonce_hash": nonce_hash,
            "jwks_uri": oidc.jwks_uri if oidc else None,
            "id_token_algs": " ".join(oidc.algorithms) if oidc else None,
        }
        with self._begin() as conn:
            conn.execute(launch_state.delete().where(launch_state.c.expires_at < now - 86400))
            conn.execute(launch_state.insert(), row)

    def claim_launch(self, *, state: str, browser_id: str | None, now: int) -> tuple[PendingLaunch | None, str]:
        """Use up a state: ``(launch, "")`` or ``(None, reason)``; the reason is for the log."""
        state_hash = digest(state)
        with self._begin() as conn:
            row = conn.execute(
                sa.select(launch_state).where(launch_state.c.state_hash == state_hash)
            ).first()
            if row is None:
                return None, "unknown state"
            if browser_id is None or digest(browser_id) != row.browser_hash:
                return None, "state not bound to this browser"
            if row.used_at is not None:
                return None, "state already used"
            if row.expires_at <= now:
                return None, "state expired"
            claimed = conn.execute(
                launch_state.update()
                .where(launch_state.c.state_hash == state_hash, launch_state.c.used_at.is_(None))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:
                return None, "state already used"
        try:
            return (
                PendingLaunch(
                    iss=row.iss,
                    launch=self._decrypt(row.launch_enc),
                    code_verifier=self._decrypt(row.verifier_enc),
                    issuer=row.issuer,
                    token_endpoint=row.token_endpoint,
                    nonce_hash=row.nonce_hash,
                    jwks_uri=row.jwks_uri,
                    id_token_algorithms=tuple((row.id_token_algs or "").split()),
                ),
                "",
            )
        except InvalidToken:
            return None, "stored launch cannot be decrypted (secret changed)"

    # --- view sessions ----------------------------------------------------------------------
    def save_session(
        self,
        *,
        view_id: str,
        browser_id: str,
        iss: str,
        token: t.Mapping[str, t.Any],
        now: int,
        expires_at: int,
        fhir_user: str | None = None,
    ) -> None:
        """Keep the named fields of the token response (never its ``id_token``)."""
        fhir_context = token.get("fhirContext")
        row = {
            "view_hash": digest(view_id),
            "browser_hash": digest(browser_id),
            "iss": iss,
            "patient": _text(token.get("patient")),
            "encounter": _text(token.get("encounter")),
            "token_enc": self._encrypt(str(token["access_token"])),
            "scope": _text(token.get("scope")) or "",
            "need_patient_banner": token.get("need_patient_banner") is True,
            "smart_style_url": _text(token.get("smart_style_url")),
            "app_context": _text(token.get("appContext")),
            "fhir_context": json.dumps(fhir_context if isinstance(fhir_context, list) else []),
            "created_at": now,
            "expires_at": expires_at,
            "fhir_user_enc": self._encrypt(fhir_user) if fhir_user else None,
        }
        with self._begin() as conn:
            conn.execute(view_session.delete().where(view_session.c.expires_at < now))
            conn.execute(view_session.insert(), row)

    def load_session(self, *, view_id: str, browser_id: str | None, now: int) -> tuple[ViewSession | None, str]:
        """The session of this view id in this browser, or ``(None, reason)``."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(view_session).where(view_session.c.view_hash == digest(view_id))
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise SmartStoreError(f"cannot read the SMART session: {exc.__class__.__name__}") from exc
        if row is None:
            return None, "unknown view"
        if browser_id is None or digest(browser_id) != row.browser_hash:
            return None, "view not bound to this browser"
        if row.expires_at <= now:
            return None, "session expired"
        try:
            token = self._decrypt(row.token_enc)
            fhir_user = self._decrypt(row.fhir_user_enc) if row.fhir_user_enc else None
        except InvalidToken:
            return None, "stored token cannot be decrypted (secret changed)"
        return (
            ViewSession(
                iss=row.iss,
                patient=row.patient,
                encounter=row.encounter,
                access_token=token,
                scope=row.scope,
                need_patient_banner=bool(row.need_patient_banner),
                smart_style_url=row.smart_style_url,
                app_context=row.app_context,
                fhir_context=json.loads(row.fhir_context or "[]"),
                expires_at=row.expires_at,
                fhir_user=fhir_user,
            ),
            "",
        )

    def raw_rows(self) -> dict[str, list[dict[str, t.Any]]]:
        """Every stored row (tests check that nothing sensitive is stored in clear)."""
        with self.engine.connect() as conn:
            return {
                table.name: [dict(r._mapping) for r in conn.execute(sa.select(table))]
                for table in (launch_state, view_session)
            }

    # --- helpers ----------------------------------------------------------------------------
    def _encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def _decrypt(self, value: str) -> str:
        return self._fernet.decrypt(value.encode()).decode()

    def _begin(self) -> t.Any:
        return _Transaction(self.engine)


class _Transaction:
    """``engine.begin()`` that turns database failures into :class:`SmartStoreError`."""

    def __init__(self, engine: sa.Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> sa.Connection:
        try:
            return self._cm.__enter__()
        except sa.exc.SQLAlchemyError as exc:
            raise SmartStoreError(f"database unavailable: {exc.__class__.__name__}") from exc

    def __exit__(self, *exc_info: t.Any) -> None:
        try:
            self._cm.__exit__(*exc_info)
        except sa.exc.SQLAlchemyError as exc:
            raise SmartStoreError(f"database write failed: {exc.__class__.__name__}") from exc
        error = exc_info[1]
        if isinstance(error, sa.exc.SQLAlchemyError):
            raise SmartStoreError(f"database write failed: {error.__class__.__name__}") from error


def _text(value: t.Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None
