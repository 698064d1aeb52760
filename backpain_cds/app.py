"""Composition root: ``create_app(settings)`` wires knowledge, storage, auth and blueprints."""

from __future__ import annotations

import logging
import typing as t
from datetime import UTC, datetime

from flask import Flask, Response
from flask_cors import CORS

from backpain_cds.errors import register_error_handlers
from backpain_cds.gc_pause import GcPauseMiddleware
from backpain_cds.metrics import Metrics
from backpain_cds.metrics_http import CountingFeedbackStore, install_metrics, timed_authenticate
from backpain_cds.schema import require_current
from backpain_cds.settings import ConfigError, Settings, config_warnings
from backpain_cds.smart_settings import smart_app_config, smart_secret
from backpain_cds.storage import SqlStore
from cds_hooks.auth import AuthPolicy, ClientAuthenticator, JtiStore, TrustedClient
from cds_hooks.blueprint import CallReportTap, create_blueprint, json_response
from cds_hooks.cards import CardLinks
from cds_hooks.catalog import ServiceCatalog, load_catalog
from cds_hooks.ports import CardAuditLog, SuppressionLookup
from cds_hooks.prefetch import FetchPolicy
from cds_hooks.service import CallObserver, CdsService
from fhir_mapping.client import FhirClient, FhirClientLimits
from fhir_mapping.knowledge import Knowledge, KnowledgeError, load_knowledge
from fhir_mapping.suggestions import OVERRIDE_REASON_SYSTEM
from smart_launch.app_context import AppContextSigner
from smart_launch.setup import install_smart_app

log = logging.getLogger("backpain_cds.app")


def load_service_catalog(knowledge: Knowledge) -> ServiceCatalog:
    """The service catalogue for this knowledge base, or :class:`KnowledgeError`."""
    catalog, problems = load_catalog(knowledge.directories, knowledge.valuesets)
    if problems:
        raise KnowledgeError(problems)
    return catalog


def fetch_policy(settings: Settings) -> FetchPolicy:
    """How the service may reach the EHR's FHIR server."""
    fhir = settings.fhir
    return FetchPolicy(
        allowed_servers=fhir.allowed_servers,
        limits=FhirClientLimits(
            timeout_seconds=fhir.timeout_seconds,
            max_pages=fhir.max_pages,
            max_response_bytes=fhir.max_response_bytes,
            max_resources=settings.limits.max_prefetch_resources,
        ),
        overall_timeout_seconds=fhir.overall_timeout_seconds,
        max_workers=fhir.max_workers,
        page_size=fhir.page_size,
        max_resources=settings.limits.max_prefetch_resources,
    )


def build_service(
    settings: Settings,
    knowledge: Knowledge,
    *,
    audit: CardAuditLog | None = None,
    suppressions: SuppressionLookup | None = None,
    observer: CallObserver | None = None,
    client_factory: t.Callable[..., FhirClient] = FhirClient,
    clock: t.Callable[[], datetime] | None = None,
    apply_deadline: bool = True,
    catalog: ServiceCatalog | None = None,
) -> CdsService:
    """The Flask-free service object (used by the app and by ``replay``, without deadline)."""
    smart_url = f"{settings.public_base_url}/smart/launch" if settings.smart_ehrs else None
    return CdsService(
        knowledge=knowledge,
        catalog=catalog or load_service_catalog(knowledge),
        fetch_policy=fetch_policy(settings),
        audit=audit,
        links=CardLinks(
            smart_launch_url=smart_url,
            app_context=AppContextSigner(smart_secret(settings.smart)).sign if smart_url else None,
        ),
        observer=observer,
        client_factory=client_factory,
        clock=clock or (lambda: datetime.now(UTC)),
        deadline_seconds=settings.limits.hook_deadline_seconds if apply_deadline else None,
        shadow=settings.shadow,
        suppressions=suppressions,
        suppression=settings.suppression,
    )


def shadow_warnings(settings: Settings, knowledge: Knowledge) -> list[str]:
    """One line per way shadow mode hides cards from clinicians (README "Shadow mode").

    Shadow mode of every rule (``shadow = true`` in the service configuration) hides the
    critical rules too; a critical rule in shadow mode by its own ``shadow`` flag is named.
    """
    rules = knowledge.rules.rules
    critical = sorted(rule_id for rule_id, rule in rules.items() if rule.critical and rule.enabled)
    if settings.shadow:
        return [
            "SHADOW MODE for every rule (shadow = true): no card is returned to the EHR, "
            f"including the critical rule(s) {', '.join(critical) or '(none)'}"
        ]
    warnings = [
        f"SHADOW MODE for the critical rule {rule_id} (rules.{rule_id}.shadow = true): its cards "
        "are audited but never shown to clinicians"
        for rule_id in critical if rules[rule_id].shadow
    ]
    others = sorted(r for r, rule in rules.items() if rule.shadow and rule.enabled and not rule.critical)
    if others:
        warnings.append(f"shadow mode for rule(s) {', '.join(others)}: their cards are audited, not returned")
    return warnings


def snooze_warnings(settings: Settings, knowledge: Knowledge) -> list[str]:
    """One line per critical rule an override can snooze (README "Snooze and de-duplication"):
    allowed (a site may decide a known, assessed red flag need not be shown again), but
    only until a new red flag appears, and it should be a deliberate choice."""
    rules = knowledge.rules.rules
    return [
        f"an override of the critical rule {rule_id} with reason(s) {', '.join(sorted(reasons))} snoozes it "
        "for the patient (snooze_days in actions.toml); a new red flag still re-fires it"
        for rule_id, reasons in sorted(knowledge.actions.snooze_periods.items())
        if rule_id in rules and rules[rule_id].critical and rules[rule_id].enabled and reasons
        and settings.suppression.enabled
    ]


def build_authenticator(settings: Settings, jti_store: JtiStore) -> ClientAuthenticator | None:
    """The client-JWT verifier, or None in development mode; ConfigError on a bad client."""
    auth = settings.auth
    if auth.development_mode:
        return None
    try:
        return ClientAuthenticator(
            [
                TrustedClient(iss=c.iss, jwks_url=c.jwks_url, jwks_file=c.jwks_file, tenant=c.tenant)
                for c in auth.trusted_clients
            ],
            jti_store=jti_store,
            policy=AuthPolicy(
                algorithms=auth.algorithms,
                leeway_seconds=auth.leeway_seconds,
                iat_future_leeway_seconds=auth.iat_future_leeway_seconds,
                max_token_age_seconds=auth.max_token_age_seconds,
                jwks_ttl_seconds=auth.jwks_ttl_seconds,
                jwks_min_refresh_seconds=auth.jwks_min_refresh_seconds,
                allow_jku_with_jwks_file=auth.allow_jku_with_jwks_file,
            ),
        )
    except ValueError as exc:
        raise ConfigError([f"auth: {exc}"]) from None


def create_app(
    settings: Settings | None = None,
    *,
    knowledge: Knowledge | None = None,
    store: SqlStore | None = None,
    client_factory: t.Callable[..., FhirClient] = FhirClient,
    clock: t.Callable[[], datetime] | None = None,
) -> Flask:
    """Build the WSGI app. Raises ConfigError / KnowledgeError / StorageError on bad set-up
    (:class:`backpain_cds.schema.SchemaError`, a StorageError, when the database is not at this
    release's schema revision; a brand-new SQLite database gets its schema created).

    Everything that can refuse the knowledge or the configuration runs before the first
    database connection, so a start that fails on them creates no database (no SQLite file):
    the schema revision is checked last.
    """
    settings = settings or Settings()
    knowledge = knowledge or load_knowledge(settings.knowledge_path)
    store = store or SqlStore(settings.database_url)  # no connection yet
    store.snooze_periods = knowledge.actions.snooze_periods  # which overrides snooze a rule
    store.override_system = OVERRIDE_REASON_SYSTEM
    catalog = load_service_catalog(knowledge)
    metrics = Metrics(catalog, knowledge.actions.override_reasons)
    # the tap leaves each call's report on flask.g for the call log (hook_call rows)
    service = build_service(settings, knowledge, audit=store, suppressions=store, observer=CallReportTap(metrics),
                            client_factory=client_factory, clock=clock, catalog=catalog)

    authenticator = build_authenticator(settings, store)
    authenticate = timed_authenticate(authenticator.verify, metrics) if authenticator is not None else None

    app = Flask("backpain_cds")
    app.wsgi_app = GcPauseMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.extensions["backpain_cds"] = {
        "settings": settings,
        "service": service,
        "store": store,
        "metrics": metrics,
        "authenticator": authenticator,  # None in development mode (backpain_cds.warm reads it)
    }
    register_error_handlers(app)
    app.register_blueprint(
        create_blueprint(
            service,
            public_base_url=settings.public_base_url,
            feedback_store=CountingFeedbackStore(store, metrics),
            authenticate=authenticate,
            validate_responses=settings.validate_responses,
            call_log=store,
        )
    )
    if settings.smart_ehrs:  # the SMART detail view reads what the patient-view hook reads
        queries = service.catalog.resolve("back-pain-after-chemo", "patient-view").prefetch
        install_smart_app(app, smart_app_config(settings), engine=store.engine, knowledge=knowledge,
                          queries=queries, clock=clock, client_factory=client_factory)
        if settings.smart.secret is None:
            log.warning("DEVELOPMENT MODE: no [smart] secret; a random one is used until restart")
    if settings.cors_origins:
        CORS(
            app,
            resources={r"/cds-services*": {"origins": list(settings.cors_origins)}},
            methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if store.ping():
            return json_response({"status": "ready", "database": "ok"})
        return json_response({"status": "not ready", "database": "unreachable"}, status=503)

    install_metrics(app, settings, metrics)

    require_current(store.engine)  # SchemaError (one line) unless migrated; creates a new SQLite file's
    for warning in config_warnings(settings) + shadow_warnings(settings, knowledge) + snooze_warnings(settings, knowledge):
        log.warning("configuration: %s", warning)
    if settings.auth.development_mode:
        log.warning(
            "DEVELOPMENT MODE: no [[auth.trusted_clients]] configured; unsigned CDS Hooks calls "
            "are accepted. Bind to loopback only."
        )
    return app
