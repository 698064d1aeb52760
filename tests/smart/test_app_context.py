"""The card's signed appContext handle: issued by the hook, verified by the view."""

from __future__ import annotations

import pytest

from smart_launch.app_context import AppContextSigner
from tests.smart.conftest import GCSF, MSCC, SECRET, card_app_context, patient_of, run_launch

pytestmark = pytest.mark.fhir_server


def test_the_cards_smart_link_carries_a_signed_compact_handle(browser, ehr) -> None:
    handle, card = card_app_context(browser, ehr, patient_of(MSCC))
    assert len(handle) < 1000
    assert patient_of(MSCC) not in handle  # bound by a keyed hash, not by the id
    check = AppContextSigner(SECRET).verify(handle, patient_id=patient_of(MSCC))
    assert check.note is None and check.context is not None
    assert check.context.rule == "mscc-red-flags"
    assert check.context.card == card["uuid"]
    assert tuple(card["extension"]["backpain-cds"]["evidence"]) == check.context.evidence
    assert check.context.hook_instance


def test_the_view_opened_from_the_card_highlights_its_finding(browser, ehr) -> None:
    handle, _ = card_app_context(browser, ehr, patient_of(MSCC))
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), app_context=handle))
    html = flow.view.get_data(as_text=True)
    assert flow.view.status_code == 200
    assert 'class="finding indicator-critical highlighted"' in html
    assert "could not be used" not in html


def test_a_tampered_handle_is_ignored_with_a_visible_note(browser, ehr) -> None:
    handle, _ = card_app_context(browser, ehr, patient_of(MSCC))
    tampered = handle[:-3] + ("AAA" if not handle.endswith("AAA") else "BBB")
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(MSCC), app_context=tampered))
    html = flow.view.get_data(as_text=True)
    assert flow.view.status_code == 200
    assert "signature does not match" in html
    assert 'data-rule="mscc-red-flags"' in html  # the view still works from the patient context
    assert "highlighted" not in html


def test_a_handle_for_another_patient_is_ignored_and_shows_only_the_launch_patient(browser, ehr) -> None:
    other_handle, _ = card_app_context(browser, ehr, patient_of(MSCC))
    flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF), app_context=other_handle))
    html = flow.view.get_data(as_text=True)
    assert flow.view.status_code == 200
    assert "issued for another patient" in html
    assert 'data-rule="gcsf-bone-pain"' in html
    assert patient_of(MSCC) not in html


def test_garbage_and_non_string_handles_never_fail_the_view(browser, ehr) -> None:
    for junk in ("not-a-handle", "x" * 5000, "{}"):
        flow = run_launch(browser, ehr, ehr.add_launch(patient_of(GCSF), app_context=junk))
        assert flow.view.status_code == 200
        assert "could not be used" in flow.view.get_data(as_text=True)


def test_signer_unit_checks() -> None:
    signer = AppContextSigner(SECRET, max_age_seconds=-1)
    handle = signer.sign(hook_instance="h", rule="r", card="c", evidence=["Observation/1"], patient_id="p")
    assert "expired" in (signer.verify(handle, patient_id="p").note or "")
    fresh = AppContextSigner(SECRET)
    assert fresh.verify(handle, patient_id="p").context is not None
    assert fresh.verify(handle, patient_id=None).context is None
    assert AppContextSigner("another-secret-" + SECRET).verify(handle, patient_id="p").context is None
    assert fresh.verify(None, patient_id="p").note is None
    assert fresh.verify(12, patient_id="p").note
    many = fresh.sign(hook_instance="h", rule="r", card="c", evidence=[f"Observation/{i}" for i in range(500)], patient_id="p")
    assert len(fresh.verify(many, patient_id="p").context.evidence) == 20
