"""Warm start in signed mode on a real gunicorn (issue 13): each worker has fetched its trusted
client's key set before it accepts, so its first signed call makes no key-set request."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support import hook_requests as hr
from tools.harness.jwt_factory import JwksServer, TestSigner
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e

ISS = "https://ehr.example.org"
PATH = "/cds-services/back-pain-after-chemo"


def test_each_worker_fetches_the_key_set_before_it_accepts(tmp_path):
    signer = TestSigner("ES384", iss=ISS)
    with JwksServer(signer.jwks()) as jwks:
        config = (f'database_url = "sqlite:///{tmp_path / "cds.sqlite3"}"\n'
                  f'[[auth.trusted_clients]]\niss = "{ISS}"\njwks_url = "{jwks.url}"\n')
        service = start_service(config, tmp_path, workers=2)
        try:
            deadline = time.monotonic() + 30  # /healthz answered: one worker is up, maybe not both
            while service.log().count('"reason":"worker"') < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert service.log().count('"reason":"worker"') == 2
            assert jwks.total_hits == 2  # one fetch per worker at warm-up, none by the master
            prefetch = hr.nothing_found_prefetch({"resourceType": "Patient", "id": "p1"})
            for _ in range(6):  # new connections: both workers get calls
                token = signer.token(service.url(PATH))
                response = requests.post(service.url(PATH), json=hr.patient_view(prefetch=prefetch),
                                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
                assert response.status_code == 200
            assert jwks.total_hits == 2
            assert "warm-up failed" not in service.log()
            assert "not fetched" not in service.log()
        finally:
            stop_service(service)
