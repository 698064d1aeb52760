"""The SMART launch against the real service process (gunicorn, 2 workers) over real HTTP.

The browser is played by ``requests`` with redirects followed and cookies kept by hand
(``requests`` would not send a ``Secure`` cookie over plain http; browsers do, to loopback).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests

from tools.harness import scenarios
from tools.harness.fake_ehr import TestEhr
from tools.harness.live_service import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.fhir_server]


@pytest.fixture(scope="module")
def live_smart(fhir_server, tmp_path_factory):
    pid = "smart-live-" + secrets.token_hex(4)
    fhir_server.load(scenarios.transaction(scenarios.mscc(pid, datetime.now(UTC))))
    ehr = TestEhr(fhir_server.base_url, redirect_uri="set-below").start()
    config = (
        'database_url = "sqlite:///smart-live.sqlite3"\n'
        f'[smart]\nsecret = "{secrets.token_urlsafe(32)}"\nclient_id = "backpain-cds"\n'
        f'[[smart.ehrs]]\niss = "{ehr.fhir_url}"\n'
    )
    service = start_service(config, tmp_path_factory.mktemp("smart-live"), workers=2)
    ehr.client.redirect_uris = [service.url("/smart/callback")]
    try:
        yield service, ehr, pid
    finally:
        stop_service(service)
        ehr.stop()


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def test_launch_callback_and_view_over_real_http(live_smart) -> None:
    service, ehr, pid = live_smart
    with _http() as http:
        first = http.get(service.url("/smart/launch"), params={"iss": ehr.fhir_url, "launch": ehr.add_launch(pid)},
                         allow_redirects=False, timeout=30)
        assert first.status_code == 302, first.text
        raw_cookie = first.headers["Set-Cookie"]
        for flag in ("Secure", "HttpOnly", "SameSite=None", "Partitioned"):
            assert flag in raw_cookie
        header = raw_cookie.split(";", 1)[0]  # name=value (http.cookies does not know Partitioned)
        assert header.startswith("bpc_browser=")

        authorize = http.get(first.headers["Location"], allow_redirects=False, timeout=30)
        assert authorize.status_code == 302
        callback_url = authorize.headers["Location"]
        assert callback_url.startswith(service.url("/smart/callback?"))

        # several requests: with 2 workers some land on the other process (shared SQL state)
        no_cookie = http.get(callback_url, allow_redirects=False, timeout=30)
        assert no_cookie.status_code == 400
        callback = http.get(callback_url, headers={"Cookie": header}, allow_redirects=False, timeout=30)
        assert callback.status_code == 303, callback.text
        view_url = callback.headers["Location"]
        assert urlsplit(view_url).path.startswith("/smart/view/")
        for _ in range(3):
            view = http.get(view_url, headers={"Cookie": header}, timeout=30)
            assert view.status_code == 200
            assert 'data-rule="mscc-red-flags"' in view.text
            assert re.search(r'data-resources-read="\d+"', view.text)
            # the signed-in user from the validated id_token, in every worker (stored with the session)
            assert "<code data-fhir-user>Practitioner/test-ehr-clinician</code>" in view.text
        replay = http.get(callback_url, headers={"Cookie": header}, allow_redirects=False, timeout=30)
        assert replay.status_code == 400
    assert len(ehr.id_tokens) == 1
    for token in [*ehr.tokens, *ehr.id_tokens]:
        assert token not in service.log()
        for answer in (first, callback, view):
            assert token not in answer.text and token not in str(answer.headers)
