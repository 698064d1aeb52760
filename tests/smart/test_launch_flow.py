"""The EHR launch end to end against the test EHR (authlib server) and sekmet-fhir."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.smart.conftest import CLIENT_ID, MSCC, PUBLIC_BASE, patient_of, run_launch

pytestmark = pytest.mark.fhir_server


def test_full_launch_shows_the_cards_finding_with_its_evidence(browser, ehr) -> None:
    launch = ehr.add_launch(patient_of(MSCC))
    flow = run_launch(browser, ehr, launch)
    assert flow.callback.status_code == 303
    assert flow.view is not None and flow.view.status_code == 200
    html = flow.view.get_data(as_text=True)
    assert 'data-rule="mscc-red-flags"' in html
    assert f"Observation/{patient_of(MSCC)}-weakness" in html
    assert 'data-banner="patient"' in html
    assert 'data-section="safety-netting"' in html
    assert "NICE QS56" in html  # the rule's citation
    assert 'class="note"' not in html  # the rules' notes on silence are not warnings
    # the signed-in user from the validated id_token, and nothing else of it
    assert 'data-user="fhirUser"' in html
    assert "<code data-fhir-user>Practitioner/test-ehr-clinician</code>" in html


def test_the_authorization_request_has_every_smart_parameter(browser, ehr) -> None:
    launch = ehr.add_launch(patient_of(MSCC))
    flow = run_launch(browser, ehr, launch)
    parts = urlsplit(flow.authorize_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ehr.base_url}/auth/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{PUBLIC_BASE}/smart/callback"
    assert query["launch"] == launch
    assert query["aud"] == ehr.fhir_url
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url(SHA-256)
    assert len(query["state"]) >= 22  # >= 128 bits in base64url
    assert len(query["nonce"]) >= 22 and query["nonce"] != query["state"]
    scopes = query["scope"].split()
    assert {"launch", "openid", "fhirUser", "patient/Observation.rs", "patient/Patient.rs"} <= set(scopes)
    assert all(s in ("launch", "openid", "fhirUser") or s.startswith("patient/") for s in scopes)
    # the nonce is kept as a digest only, with the (now used) state
    store = browser.application.extensions["smart_launch"]["store"]
    (row,) = store.raw_rows()["smart_launch_state"]
    assert query["nonce"] not in repr(row) and row["nonce_hash"] and row["used_at"] is not None
    # the token request carried the PKCE verifier and, for a public client, no Basic auth
    token_request = ehr.token_requests[-1]
    assert token_request["form"]["code_verifier"]
    assert token_request["form"]["client_id"] == CLIENT_ID
    assert token_request["basic"] is False


def test_the_cookie_is_opaque_secure_httponly_samesite_none_partitioned(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    cookie = flow.launch.headers["Set-Cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=None", "Partitioned"):
        assert flag in cookie
    assert "Path=/smart" in cookie


def test_no_access_token_reaches_the_browser(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    tokens = list(ehr.tokens)
    assert tokens
    answers = [flow.launch, flow.callback, flow.view]
    for answer in answers:
        exposed = answer.get_data(as_text=True) + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        for token in tokens:
            assert token not in exposed
    # and the store holds it encrypted only
    store = browser.application.extensions["smart_launch"]["store"]
    dump = repr(store.raw_rows())
    for token in tokens:
        assert token not in dump


def test_view_pages_have_the_csp_with_frame_ancestors_and_no_external_resources(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    csp = flow.view.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' " + ehr.base_url.rsplit(":", 1)[0] in csp or ehr.base_url in csp
    assert "default-src 'none'" in csp
    assert "X-Frame-Options" not in flow.view.headers
    html = flow.view.get_data(as_text=True)
    assert "<script" not in html
    assert 'href="/smart/static/smart.css"' in html
    with browser.get("/smart/static/smart.css") as css:
        assert css.status_code == 200
        assert "Content-Security-Policy" in css.headers


def test_the_confidential_client_authenticates_with_basic(tmp_path, loaded_fhir) -> None:
    from backpain_cds.app import create_app
    from tests.smart.conftest import NOW, smart_settings
    from tools.harness.fake_ehr import TestEhr

    with TestEhr(loaded_fhir.base_url, redirect_uri=f"{PUBLIC_BASE}/smart/callback",
                 client_id=CLIENT_ID, client_secret="s3cret-value") as ehr:
        settings = smart_settings(tmp_path, ehr.fhir_url, client_secret="s3cret-value")
        browser = create_app(settings, clock=lambda: NOW).test_client()
        flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
        assert flow.view is not None and flow.view.status_code == 200
        assert ehr.token_requests[-1]["basic"] is True


@pytest.mark.parametrize("need_banner", [True, False])
def test_the_patient_banner_follows_need_patient_banner(browser, ehr, need_banner: bool) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), need_patient_banner=need_banner))
    assert flow.view is not None and flow.view.status_code == 200
    html = flow.view.get_data(as_text=True)
    assert ('data-banner="patient"' in html) is need_banner
    assert ('class="banner"' in html) is need_banner
    assert 'data-rule="mscc-red-flags"' in html  # the view itself is the same either way


def test_the_id_token_is_validated_shown_as_fhir_user_and_never_kept_or_sent(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), fhir_user="PractitionerRole/pr-7"))
    assert flow.view is not None and flow.view.status_code == 200
    (id_token,) = ehr.id_tokens
    assert "<code data-fhir-user>PractitionerRole/pr-7</code>" in flow.view.get_data(as_text=True)
    for answer in (flow.launch, flow.callback, flow.view):
        exposed = answer.get_data(as_text=True) + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        assert id_token not in exposed
        assert id_token.split(".")[1] not in exposed  # not even its payload
    store = browser.application.extensions["smart_launch"]["store"]
    rows = repr(store.raw_rows())
    assert id_token not in rows and id_token.split(".")[1] not in rows
    assert "PractitionerRole/pr-7" not in rows  # the fhirUser is stored encrypted
    assert [path for _, path in ehr.hits].count("/auth/jwks") == 1


def test_an_ehr_that_grants_no_openid_gives_a_view_without_a_user_line(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), openid=False))
    assert ehr.id_tokens == []
    assert flow.view is not None and flow.view.status_code == 200
    html = flow.view.get_data(as_text=True)
    assert 'data-rule="mscc-red-flags"' in html
    assert "data-user" not in html and "test-ehr-clinician" not in html
    assert ("GET", "/auth/jwks") not in ehr.hits  # nothing to check, nothing fetched


def test_the_differential_is_an_accessible_section_with_the_leaflets_four_causes(browser, ehr) -> None:
    from html.parser import HTMLParser

    from tests.smart.conftest import GCSF

    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF)))
    assert flow.view is not None and flow.view.status_code == 200
    html = flow.view.get_data(as_text=True)

    class Outline(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.causes: list[str] = []
            self.headings: list[str] = []
            self.labelled: dict[str, str] = {}
            self.ids: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            if values.get("id"):
                self.ids.add(str(values["id"]))
            if values.get("data-differential"):
                self.causes.append(str(values["data-differential"]))
                self.labelled[str(values["data-differential"])] = str(values.get("aria-labelledby"))
            if tag in ("h2", "h3", "h4"):
                self.headings.append(tag)

    outline = Outline()
    outline.feed(html)
    assert outline.causes == ["gcsf-timing", "chemotherapy-side-effects", "spread-to-spine", "posture-non-specific"]
    assert all(label in outline.ids for label in outline.labelled.values())
    assert 'aria-labelledby="differential-heading"' in html and "differential-heading" in outline.ids
    assert outline.headings.count("h3") >= 4  # one per cause, under the section's h2
    assert 'data-cause-card="gcsf-bone-pain"' in html
    assert 'data-fact="gcsf_dose_in_window"' in html
    assert "style=" not in html.split('data-section="differential"', 1)[1].split("</section>", 1)[0]
