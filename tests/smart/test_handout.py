"""The printable patient handout: plain language, the patient's own G-CSF and chemotherapy dates."""

from __future__ import annotations

import re

import pytest

from tests.smart.conftest import GCSF, local_path, patient_of, run_launch

pytestmark = pytest.mark.fhir_server


def test_the_handout_has_the_advice_and_the_patients_dates(browser, ehr) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF)))
    view_html = flow.view.get_data(as_text=True)
    link = re.search(r'href="([^"]+)" data-link="handout"', view_html).group(1)
    answer = browser.get(link)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    for section in ("your-dates", "causes", "self_care", "gcsf", "seek_help"):
        assert f'data-handout="{section}"' in html
    assert "paracetamol" in html.lower() and "physiotherap" in html.lower() and "posture" in html.lower()
    assert "weakness in your legs" in html and "bladder or bowels" in html
    assert 'data-date-kind="gcsf-daily"' in html
    assert re.search(r"\d{2} \w+ 20\d\d: G-CSF injection", html)
    assert "<script" not in html
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_handout_is_bound_to_the_browser_like_the_view(browser, ehr, smart_app) -> None:
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF)))
    handout = local_path(flow.callback.headers["Location"]) + "/handout"
    assert smart_app.test_client().get(handout).status_code == 401
    assert browser.get(handout).status_code == 200
