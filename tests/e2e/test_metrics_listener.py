"""``[metrics] bind``: gunicorn listens on a second address that serves /metrics only."""

from __future__ import annotations

import pytest
import requests

from tools.harness.live_service import start_service, stop_service
from tools.harness.servers import free_port

pytestmark = pytest.mark.e2e


def test_metrics_on_their_own_listener(tmp_path):
    port = free_port()
    service = start_service(f'database_url = "sqlite:///{tmp_path / "m.sqlite3"}"\n'
                            f'[metrics]\nbind = "127.0.0.1:{port}"\n', tmp_path)
    try:
        assert requests.get(service.url("/metrics"), timeout=10).status_code == 404
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200 and "backpain_cds_hook_calls_total" in response.text
        assert requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=10).status_code == 404
        assert requests.get(service.url("/healthz"), timeout=10).status_code == 200
    finally:
        stop_service(service)
