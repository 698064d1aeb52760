"""What the launch refuses, and how (readable pages with a fitting status, never a 500)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from smart_launch.session_store import launch_state, view_session
from tests.smart.conftest import MSCC, local_path, patient_of, run_launch, smart_settings

pytestmark = pytest.mark.fhir_server


def _html(answer) -> str:
    text = answer.get_data(as_text=True)
    assert "Traceback" not in text
    assert answer.mimetype == "text/html"
    return text


def _authorize(url: str) -> str:
    import requests

    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(url, allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def _store(browser):
    return browser.application.extensions["smart_launch"]["store"]


# --- /smart/launch --------------------------------------------------------------------------------


def test_an_unknown_iss_is_refused_before_any_request(tmp_path, ehr) -> None:
    from backpain_cds.app import create_app

    settings = smart_settings(tmp_path, "http://127.0.0.1:9/other/fhir")
    browser = create_app(settings).test_client()
    answer = browser.get("/smart/launch", query_string={"iss": ehr.fhir_url, "launch": "x"})
    assert answer.status_code == 400
    assert "not registered" in _html(answer)
    assert ehr.hits == []


@pytest.mark.parametrize("variant", ["{iss}/other", "{iss}x", "{iss}?x=1", "{upper}"])
def test_only_a_trailing_slash_is_normalised(browser, ehr, variant) -> None:
    iss = variant.format(iss=ehr.fhir_url, upper=ehr.fhir_url.replace("/fhir", "/FHIR"))
    answer = browser.get("/smart/launch", query_string={"iss": iss, "launch": "x"})
    assert answer.status_code == 400
    assert ehr.hits == []


def test_a_trailing_slash_on_iss_is_accepted(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)), iss=ehr.fhir_url + "/")
    assert flow.view is not None and flow.view.status_code == 200
    assert ehr.authorize_requests[-1]["aud"] == ehr.fhir_url + "/"  # aud is the iss, exactly


@pytest.mark.parametrize("params", [{"iss": "{iss}"}, {"launch": "abc"}, {}, {"iss": "", "launch": "abc"}])
def test_missing_iss_or_launch_is_refused_before_any_request(browser, ehr, params) -> None:
    query = {k: v.format(iss=ehr.fhir_url) for k, v in params.items()}
    answer = browser.get("/smart/launch", query_string=query)
    assert answer.status_code == 400
    assert "launched by an EHR" in _html(answer)
    assert ehr.hits == []


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"code_challenge_methods_supported": ["plain"]}, "S256"),
        ({"code_challenge_methods_supported": None}, "S256"),
        ({"token_endpoint": None}, "token_endpoint"),
        ({"grant_types_supported": ["client_credentials"]}, "authorization_code"),
        ({"capabilities": ["client-public"]}, "launch-ehr"),
        ({"authorization_endpoint": "http://evil.example/authorize"}, "https"),
    ],
)
def test_discovery_without_what_the_launch_needs_is_refused(browser, ehr, overrides, words) -> None:
    ehr.discovery_overrides = overrides
    answer = browser.get("/smart/launch", query_string={"iss": ehr.fhir_url, "launch": ehr.add_launch("p")})
    assert answer.status_code == 502
    assert words in _html(answer)
    assert not ehr.authorize_requests
    assert "Location" not in answer.headers


def test_discovery_down_is_a_502_page(tmp_path) -> None:
    from backpain_cds.app import create_app

    iss = "http://127.0.0.1:9/fhir"  # nothing listens on port 9
    browser = create_app(smart_settings(tmp_path, iss)).test_client()
    answer = browser.get("/smart/launch", query_string={"iss": iss, "launch": "x"})
    assert answer.status_code == 502
    assert "unreachable" in _html(answer)


# --- /smart/callback ------------------------------------------------------------------------------


def _started(browser, ehr) -> str:
    """Launch and authorize; return the callback URL (not yet visited)."""
    first = browser.get("/smart/launch", query_string={"iss": ehr.fhir_url,
                                                       "launch": ehr.add_launch(patient_of(MSCC))})
    assert first.status_code == 302
    return _authorize(first.headers["Location"])


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


def test_a_tampered_state_is_refused_before_the_token_endpoint(browser, ehr) -> None:
    callback = _started(browser, ehr)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    answer = browser.get(_with(callback, state=state[:-2] + "xx"))
    assert answer.status_code == 400
    assert "no longer valid" in _html(answer)
    assert ehr.token_requests == []


def test_a_replayed_callback_is_refused_and_the_code_is_exchanged_once(browser, ehr) -> None:
    callback = _started(browser, ehr)
    assert browser.get(local_path(callback)).status_code == 303
    again = browser.get(local_path(callback))
    assert again.status_code == 400
    assert "no longer valid" in _html(again)
    assert len(ehr.token_requests) == 1


def test_an_expired_state_is_refused(browser, ehr) -> None:
    callback = _started(browser, ehr)
    with _store(browser).engine.begin() as conn:
        conn.execute(sa.update(launch_state).values(expires_at=0))
    answer = browser.get(local_path(callback))
    assert answer.status_code == 400
    assert ehr.token_requests == []


def test_a_callback_in_another_browser_is_refused(browser, ehr, smart_app) -> None:
    callback = _started(browser, ehr)
    other_browser = smart_app.test_client()
    answer = other_browser.get(local_path(callback))
    assert answer.status_code == 400
    assert "another browser" in _html(answer)
    assert ehr.token_requests == []
    # the state was not used up by the refused attempt: the right browser still completes
    assert browser.get(local_path(callback)).status_code == 303


def test_a_callback_without_state_is_refused(browser, ehr) -> None:
    answer = browser.get("/smart/callback?code=abc")
    assert answer.status_code == 400
    assert ehr.token_requests == []


def test_denied_consent_is_a_403_page_and_nothing_is_exchanged(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), deny=True))
    assert "error=access_denied" in flow.callback_url
    assert flow.callback.status_code == 403
    assert "not granted" in _html(flow.callback)
    assert ehr.token_requests == []


def test_a_token_endpoint_error_is_a_502_page(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), token_error=True))
    assert flow.callback.status_code == 502
    assert "invalid_grant" in _html(flow.callback)
    assert "Set-Cookie" not in flow.callback.headers


def test_a_wrong_code_is_refused_by_the_ehr_and_shown_as_502(browser, ehr) -> None:
    callback = _started(browser, ehr)
    answer = browser.get(_with(callback, code="not-the-code"))
    assert answer.status_code == 502
    assert len(ehr.token_requests) == 1


# --- /smart/view ----------------------------------------------------------------------------------


def test_the_fhir_server_down_is_a_502_page(browser, ehr) -> None:
    ehr.fhir_down = True
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    assert flow.view is not None
    assert flow.view.status_code == 502
    assert "cannot be read" in _html(flow.view)


def test_an_expired_session_is_a_401_page(browser, ehr) -> None:
    first = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    view_url = first.callback.headers["Location"]
    with _store(browser).engine.begin() as conn:
        conn.execute(sa.update(view_session).values(expires_at=0))
    answer = browser.get(local_path(view_url))
    assert answer.status_code == 401
    assert "expired" in _html(answer)


def test_the_view_url_in_another_browser_is_refused(browser, ehr, smart_app) -> None:
    first = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    answer = smart_app.test_client().get(local_path(first.callback.headers["Location"]))
    assert answer.status_code == 401
    assert 'data-rule' not in _html(answer)


def test_an_unknown_view_id_is_a_401_page(browser) -> None:
    answer = browser.get("/smart/view/not-a-view")
    assert answer.status_code == 401
    _html(answer)


def test_a_narrower_granted_scope_is_honoured_and_said(browser, ehr) -> None:
    scope = "launch openid fhirUser patient/Patient.rs patient/Condition.rs patient/Procedure.rs"
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), scope=scope))
    html = _html(flow.view)
    assert flow.view.status_code == 200
    assert "did not grant read access to Observation" in html
    assert not any(path.startswith("/fhir/Observation") for _, path in ehr.hits)


def test_the_view_does_not_outlive_the_access_token(browser, ehr) -> None:
    run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    (row,) = _store(browser).raw_rows()["smart_session"]
    assert row["expires_at"] - row["created_at"] <= 3600  # authlib's default expires_in (1 h)
