"""An unexpected failure in the view is a readable 500 page, never a stack trace."""

from __future__ import annotations

import pytest

from smart_launch.views import DetailViewBuilder
from tests.smart.conftest import MSCC, patient_of, run_launch

pytestmark = pytest.mark.fhir_server


def test_an_unexpected_error_is_a_plain_500_page(browser, ehr, monkeypatch, caplog) -> None:
    def boom(self, session, handle):
        raise RuntimeError(f"secret detail {session.access_token}")

    monkeypatch.setattr(DetailViewBuilder, "build", boom)
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC)))
    html = flow.view.get_data(as_text=True)
    assert flow.view.status_code == 500
    assert "Something went wrong" in html and "Traceback" not in html and "secret detail" not in html
    for token in ehr.tokens:
        assert token not in caplog.text
    assert "Content-Security-Policy" in flow.view.headers
