"""A service in signed mode for in-process tests: one trusted EHR whose key set is served on
loopback, and a helper that signs a call for a path."""

from __future__ import annotations

import contextlib
import typing as t
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from backpain_cds.app import create_app
from backpain_cds.settings import Settings
from tools.harness.jwt_factory import JwksServer, TestSigner

ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


@dataclass
class SignedApp:
    app: Flask
    signer: TestSigner

    def bearer(self, path: str) -> dict[str, str]:
        """The Authorization header of a fresh token for a call to ``path`` (audience = public URL)."""
        return {"Authorization": f"Bearer {self.signer.token(BASE + path)}"}


@contextlib.contextmanager
def signed_app(database: Path) -> t.Iterator[SignedApp]:
    """The app trusts one ES384 client (``ISS``); its JWKS is served while the block runs."""
    signer = TestSigner("ES384", iss=ISS)
    with JwksServer(signer.jwks()) as jwks:
        app = create_app(Settings.from_mapping({
            "public_base_url": BASE,
            "database_url": f"sqlite:///{database}",
            "auth": {"trusted_clients": [{"iss": ISS, "jwks_url": jwks.url}]},
        }))
        yield SignedApp(app, signer)
