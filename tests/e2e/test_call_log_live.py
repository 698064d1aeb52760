"""The call log over a real gunicorn: a row per answered call, written once the response is sent."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from backpain_cds.storage import hook_call
from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e

PV = "back-pain-after-chemo"


def test_gunicorn_writes_one_row_per_answered_call(tmp_path):
    db = tmp_path / "cds.sqlite3"
    service = start_service(f'database_url = "sqlite:///{db}"\n', tmp_path, workers=2)
    try:
        url = service.url(f"/cds-services/{PV}")
        body = hr.patient_view("p0", prefetch=hr.nothing_found_prefetch(scenarios.patient("p0")))
        statuses = [requests.post(url, json=body, timeout=10).status_code for _ in range(3)]
        statuses.append(requests.post(url, json={"hook": "patient-view"}, timeout=10).status_code)
        statuses.append(requests.post(service.url("/cds-services/nope"), json=body, timeout=10).status_code)
        assert statuses == [200, 200, 200, 400, 404]
        engine = sa.create_engine(f"sqlite:///{db}")
        deadline = time.monotonic() + 10  # written after the response: may trail it a little
        while True:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(hook_call.c.service_id, hook_call.c.status, hook_call.c.cards)
                                    .order_by(hook_call.c.id)).all()
            if len(rows) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        engine.dispose()
        assert sorted(tuple(r) for r in rows) == sorted([(PV, 200, 0)] * 3 + [(PV, 400, 0)])
    finally:
        stop_service(service)
