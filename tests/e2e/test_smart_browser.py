"""The whole launch in real headless Chromium, inside an iframe of an EHR page on another site.

The test EHR runs on ``localhost`` and the service (gunicorn) on ``127.0.0.1``: different sites,
so the app's cookie is a third-party (partitioned) cookie in the EHR's iframe, as in production.
Needs Debian's ``chromium`` and the ``playwright`` package (installed by ``.ci/run``); without
them the test is skipped locally and fails when ``BACKPAIN_CDS_REQUIRE_SERVERS=1``.
Screenshots of the view, its differential and the handout go to ``tests/artifacts/``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from tests.support.browser import ARTIFACTS, headless_chromium
from tools.harness import scenarios
from tools.harness.fake_ehr import TestEhr
from tools.harness.live_service import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.fhir_server]

@pytest.fixture(scope="module")
def browser_setup(fhir_server, tmp_path_factory):
    pid = "smart-browser-" + secrets.token_hex(4)
    now = datetime.now(UTC)
    fhir_server.load(scenarios.transaction(scenarios.mscc(pid, now) + scenarios.gcsf_bone_pain(pid + "-g", now)))
    ehr = TestEhr(fhir_server.base_url, redirect_uri="set-below", host="localhost").start()
    config = (
        'database_url = "sqlite:///smart-browser.sqlite3"\n'
        f'[smart]\nsecret = "{secrets.token_urlsafe(32)}"\nclient_id = "backpain-cds"\n'
        f'frame_ancestors = ["{ehr.base_url}"]\n'
        f'[[smart.ehrs]]\niss = "{ehr.fhir_url}"\n'
    )
    service = start_service(config, tmp_path_factory.mktemp("smart-browser"), workers=2)
    ehr.client.redirect_uris = [service.url("/smart/callback")]
    try:
        with headless_chromium() as chromium:
            yield chromium, service, ehr, pid
    finally:
        stop_service(service)
        ehr.stop()


def _open_in_ehr(chromium, service, ehr, patient):
    page = chromium.new_page(viewport={"width": 480, "height": 1500})
    launch = ehr.add_launch(patient)
    page.goto(f"{ehr.base_url}/ehr/chart?app={service.url('/smart/launch')}&launch={launch}")
    frame = page.frame_locator("#app")
    frame.locator("h1").first.wait_for(timeout=30_000)
    return page, frame


def test_the_view_works_in_an_iframe_of_another_site(browser_setup) -> None:
    chromium, service, ehr, pid = browser_setup
    page, frame = _open_in_ehr(chromium, service, ehr, pid)
    try:
        app_frame = page.frame(name="app")
        assert app_frame is not None and app_frame.url.startswith(service.url("/smart/view/")), app_frame.url
        # the signed-in user, from the EHR's id_token validated against its JWKS (nonce, iss, aud)
        user = frame.locator('[data-user="fhirUser"] [data-fhir-user]')
        assert user.count() == 1 and user.inner_text() == "Practitioner/test-ehr-clinician"
        assert len(ehr.id_tokens) >= 1 and ("GET", "/auth/jwks") in ehr.hits
        finding = frame.locator('[data-rule="mscc-red-flags"]')
        assert finding.count() == 1
        assert frame.locator('[data-rule="mscc-red-flags"] [data-evidence]').count() >= 1
        assert frame.locator('[data-section="timeline"] svg').count() == 1
        assert frame.locator('[data-table="timeline"] tbody tr').count() >= 1
        assert frame.locator('[data-section="safety-netting"]').count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        # the differential: the leaflet's four causes, the card's red flag "for" spread to the spine
        assert frame.locator('[data-section="differential"] [data-differential]').count() == 4
        spine = frame.locator('[data-differential="spread-to-spine"]')
        assert spine.locator('[data-facts="for"] [data-fact="red-flag"]').count() >= 1
        assert spine.locator('[data-cause-card="mscc-red-flags"]').count() == 1
        page.screenshot(path=str(ARTIFACTS / "smart-view.png"), full_page=True)
        frame.locator('[data-section="timeline"]').screenshot(path=str(ARTIFACTS / "smart-timeline.png"))
        frame.locator('[data-section="differential"] h2').scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "smart-differential.png"))
        frame.locator('[data-link="handout"]').click()
        frame.locator('[data-page="handout"]').wait_for(timeout=30_000)
        assert frame.locator('[data-handout="seek_help"] li').count() >= 3
        page.screenshot(path=str(ARTIFACTS / "smart-handout.png"), full_page=True)
    finally:
        page.close()
