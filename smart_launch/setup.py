"""Wire the SMART app into a Flask app (called by the composition root when SMART is configured)."""

from __future__ import annotations

import typing as t
from datetime import datetime

import requests
import sqlalchemy as sa
from flask import Flask

from fhir_mapping.client import FhirClient
from fhir_mapping.knowledge import Knowledge, KnowledgeError
from smart_launch.app_context import AppContextSigner
from smart_launch.config import SmartConfig
from smart_launch.launch import create_smart_blueprint
from smart_launch.session_store import SmartStore
from smart_launch.view_text import ViewTextError, load_view_text
from smart_launch.views import DetailViewBuilder


def install_smart_app(
    app: Flask,
    config: SmartConfig,
    *,
    engine: sa.Engine,
    knowledge: Knowledge,
    queries: t.Mapping[str, str],
    clock: t.Callable[[], datetime] | None = None,
    client_factory: t.Callable[..., FhirClient] = FhirClient,
    http_session_factory: t.Callable[[], requests.Session] = requests.Session,
) -> SmartStore:
    """Register ``/smart/*`` on the service's engine; returns the store (for tests)."""
    try:
        text = load_view_text(knowledge.directories)
    except ViewTextError as exc:
        raise KnowledgeError([str(exc)]) from None
    store = SmartStore(engine, config.secret)  # its tables come with the service's migrations
    builder = DetailViewBuilder(
        knowledge=knowledge,
        queries=queries,
        config=config,
        text=text,
        client_factory=client_factory,
        **({"clock": clock} if clock is not None else {}),
    )
    app.register_blueprint(
        create_smart_blueprint(
            config, store, builder, AppContextSigner(config.secret),
            http_session_factory=http_session_factory,
        )
    )
    app.extensions["smart_launch"] = {"store": store, "config": config}
    return store
