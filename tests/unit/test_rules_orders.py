"""The order-hook rules: gcsf-order-dose-review and nsaid-caution-post-chemo."""

from __future__ import annotations

import pytest

from assessment.facts import DrugClass, LabKind
from assessment.findings import Indicator
from tests.unit.test_rules_common import (
    CONFIG,
    ago,
    anticoagulant,
    assert_texts_fillable,
    back_pain,
    cancer,
    draft,
    fired,
    gcsf,
    lab,
    run,
    score,
)

DOSE_REVIEW, NSAID_CAUTION = "gcsf-order-dose-review", "nsaid-caution-post-chemo"
ORDER_HOOKS = ("order-select", "order-sign")
SAFE_LABS = (lab(LabKind.PLATELETS, 200), lab(LabKind.EGFR, 90))


def peg_draft(selected: bool = False) -> object:
    return draft("MedicationRequest/peg-draft", DrugClass.GCSF, selected=selected, label="pegfilgrastim 6 mg")


def nsaid_draft(selected: bool = False) -> object:
    return draft("MedicationRequest/ibu-draft", DrugClass.NSAID, selected=selected, label="ibuprofen 400 mg")


def past_cycle(dose_days: float = 30, pain_days: float = 27, status: str = "resolved") -> tuple[object, ...]:
    return (gcsf("MedicationAdministration/peg-old", ago(dose_days)),
            back_pain("Condition/old-pain", days=pain_days, status=status))


# -- gcsf-order-dose-review ----------------------------------------------------------------


@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_resolved_in_window_episode_triggers_dose_review(hook: str) -> None:
    result = run(peg_draft(), *past_cycle(), *SAFE_LABS, hook=hook)
    assert fired(result) == [DOSE_REVIEW]
    finding = result.findings[0]
    assert finding.indicator is Indicator.WARNING
    assert finding.actions == ("gcsf-dose-review", "paracetamol", "naproxen", "loratadine")
    assert set(finding.evidence) == {"MedicationRequest/peg-draft", "Condition/old-pain", "MedicationAdministration/peg-old"}
    assert finding.variables["gcsf"] == "pegfilgrastim 6 mg"
    assert finding.variables["previous_gcsf"] == "pegfilgrastim"
    assert finding.variables["episode_count"] == "1"
    assert_texts_fillable(finding)


def test_dose_review_does_not_need_oncology_context_or_current_pain() -> None:
    assert fired(run(peg_draft(), *past_cycle(), hook="order-sign")) == [DOSE_REVIEW]


@pytest.mark.parametrize(("pain_after_dose", "expected"), [(7, [DOSE_REVIEW]), (8, [])])
def test_episode_must_fall_in_the_gcsf_window(pain_after_dose: float, expected: list[str]) -> None:
    facts = past_cycle(dose_days=40, pain_days=40 - pain_after_dose)
    assert fired(run(peg_draft(), *facts, hook="order-sign")) == expected


@pytest.mark.parametrize(("pain_days", "expected"), [(180, [DOSE_REVIEW]), (181, [])])
def test_episode_must_be_within_180_days(pain_days: float, expected: list[str]) -> None:
    facts = past_cycle(dose_days=pain_days + 2, pain_days=pain_days)
    assert fired(run(peg_draft(), *facts, hook="order-sign")) == expected


def test_a_spine_pain_score_in_window_is_an_episode() -> None:
    from assessment.facts import SpineSite

    facts = (peg_draft(), gcsf("MedicationAdministration/peg-old", ago(30)),
             score("Observation/score", ago(28), 6, SpineSite.SPINE))
    result = run(*facts, hook="order-sign")
    assert fired(result) == [DOSE_REVIEW]
    assert "Observation/score" in result.findings[0].evidence


def test_no_episode_says_why() -> None:
    result = run(peg_draft(), gcsf("MedicationAdministration/peg-old", ago(30)), hook="order-sign")
    assert result.findings == ()
    assert any(note.startswith(DOSE_REVIEW) for note in result.notes)


def test_planned_past_gcsf_opens_no_window_for_dose_review() -> None:
    from assessment.facts import MedicationSource

    planned = gcsf("MedicationRequest/plan", ago(30), source=MedicationSource.REQUEST, intent="plan")
    facts = (peg_draft(), planned, back_pain("Condition/old-pain", days=27, status="resolved"))
    assert fired(run(*facts, hook="order-sign")) == []


def test_dose_review_drops_naproxen_when_nsaids_are_unsafe() -> None:
    finding = run(peg_draft(), *past_cycle(), lab(LabKind.PLATELETS, 49), hook="order-sign").findings[0]
    assert finding.actions == ("gcsf-dose-review", "paracetamol", "loratadine")
    assert finding.nsaid_safe is False
    assert finding.variables["nsaid_advice"] == CONFIG.texts["nsaid_advice_unsafe"]


# -- nsaid-caution-post-chemo --------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "expected"), [
    (LabKind.PLATELETS, 49, [NSAID_CAUTION]), (LabKind.PLATELETS, 50, []),
    (LabKind.EGFR, 29, [NSAID_CAUTION]), (LabKind.EGFR, 30, []),
])
@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_nsaid_caution_lab_cut_offs(kind: LabKind, value: float, expected: list[str], hook: str) -> None:
    result = run(cancer(), nsaid_draft(), lab(kind, value, ref="Observation/lab"), hook=hook)
    assert fired(result) == expected
    if expected:
        finding = result.findings[0]
        assert finding.actions == ("remove-draft-nsaid", "paracetamol")
        assert finding.evidence == ("MedicationRequest/ibu-draft", "Observation/lab", "Condition/cancer")
        assert finding.nsaid_safe is False
        assert_texts_fillable(finding)


def test_nsaid_caution_on_active_anticoagulant() -> None:
    result = run(cancer(), nsaid_draft(), anticoagulant(), *SAFE_LABS, hook="order-sign")
    assert fired(result) == [NSAID_CAUTION]
    assert "apixaban" in result.findings[0].variables["concerns"]


def test_nsaid_caution_needs_oncology_context() -> None:
    result = run(nsaid_draft(), lab(LabKind.PLATELETS, 20), hook="order-sign")
    assert result.findings == ()
    assert f"{NSAID_CAUTION}: no oncology context" in result.notes


def test_nsaid_caution_ignores_labs_older_than_14_days() -> None:
    assert fired(run(cancer(), nsaid_draft(), lab(LabKind.PLATELETS, 20, days=15), hook="order-sign")) == []


# -- drafts in focus -----------------------------------------------------------------------


def test_order_select_focuses_on_selected_drafts() -> None:
    facts = (cancer(), peg_draft(selected=False), nsaid_draft(selected=True), *past_cycle(), lab(LabKind.PLATELETS, 20))
    assert fired(run(*facts, hook="order-select")) == [NSAID_CAUTION]
    assert sorted(fired(run(*facts, hook="order-sign"))) == [DOSE_REVIEW, NSAID_CAUTION]


def test_order_select_with_nothing_selected_looks_at_every_draft() -> None:
    facts = (cancer(), peg_draft(), nsaid_draft(), *past_cycle(), lab(LabKind.PLATELETS, 20))
    assert sorted(fired(run(*facts, hook="order-select"))) == [DOSE_REVIEW, NSAID_CAUTION]


def test_order_hooks_without_matching_drafts_say_so() -> None:
    result = run(cancer(), back_pain(), hook="order-sign")
    assert result.findings == () and result.notes


def test_order_hooks_do_not_run_triage_rules() -> None:
    result = run(cancer(), back_pain(), peg_draft(), *past_cycle(), hook="order-select")
    assert fired(result) == [DOSE_REVIEW]
