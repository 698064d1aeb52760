"""The four triage rules on patient-view / encounter-start: edges, exclusivity and priority."""

from __future__ import annotations

from datetime import timedelta

import pytest

from assessment.engine import UnsupportedHookError, assess
from assessment.facts import ClinicalKind, Confidence, GcsfClass, ImagingKind, LabKind, MedicationSource, SpineSite
from assessment.findings import Indicator
from tests.unit.test_rules_common import (
    CONFIG,
    NOW,
    ago,
    anticoagulant,
    assert_texts_fillable,
    back_pain,
    bone_mets,
    cancer,
    card,
    chemo,
    config_with,
    draft,
    fired,
    gcsf,
    imaging,
    lab,
    record,
    red_flag,
    run,
    score,
)

MSCC, PROGRESSIVE, GCSF, SUPPORTIVE = (
    "mscc-red-flags", "progressive-back-pain", "gcsf-bone-pain", "back-pain-supportive-care",
)
SAFE_LABS = (lab(LabKind.PLATELETS, 200, ref="Observation/plt"), lab(LabKind.EGFR, 90, ref="Observation/egfr"))


def peg_at(days: float) -> object:
    return gcsf("MedicationAdministration/peg", ago(days))


# -- context and back pain gate everything -------------------------------------------------


def test_no_oncology_context_means_no_card_even_with_red_flags() -> None:
    result = run(back_pain(), red_flag(), score("Observation/s", ago(1), 9), gcsf("MedicationAdministration/peg", ago(2)))
    assert result.findings == () and result.differential == ()
    assert any("no oncology context" in note for note in result.notes)


def test_no_back_pain_means_no_card_and_says_so() -> None:
    result = run(cancer(), red_flag())
    assert result.findings == ()
    assert result.notes == ("no back pain in the last 60 days",)


@pytest.mark.parametrize(("days", "rules"), [(60, [SUPPORTIVE]), (61, [])])
def test_back_pain_onset_60_vs_61_days(days: float, rules: list[str]) -> None:
    assert fired(run(cancer(), back_pain(days=days))) == rules


@pytest.mark.parametrize(("days", "rules"), [(90, [SUPPORTIVE]), (91, [])])
def test_chemotherapy_90_vs_91_days_as_the_only_context(days: float, rules: list[str]) -> None:
    assert fired(run(chemo(days=days), back_pain())) == rules


@pytest.mark.parametrize("hook", ["patient-view", "encounter-start"])
def test_plain_back_pain_with_cancer_gets_supportive_care(hook: str) -> None:
    result = run(cancer(), back_pain(), score("Observation/s", ago(1), 3), *SAFE_LABS, hook=hook)
    finding = card(result)
    assert finding is not None and finding.rule_id == SUPPORTIVE
    assert finding.indicator is Indicator.INFO
    assert finding.actions == ("paracetamol",)
    assert finding.evidence == ("Condition/back-pain", "Observation/s", "Condition/cancer")  # latest score too
    assert finding.variables["latest_score"] == "3/10"
    assert finding.variables["nsaid_advice"] == CONFIG.texts["nsaid_advice_safe"]
    assert finding.rule_version == CONFIG.rule(SUPPORTIVE).version
    assert finding.citation == CONFIG.rule(SUPPORTIVE).citation
    assert_texts_fillable(finding)


def test_unsupported_hook_and_naive_now_are_rejected() -> None:
    with pytest.raises(UnsupportedHookError):
        run(cancer(), back_pain(), hook="medication-prescribe")
    with pytest.raises(ValueError, match="timezone"):
        assess(record(), now=NOW.replace(tzinfo=None), config=CONFIG, hook="patient-view")


# -- red flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "rule"), [(14, MSCC), (15, SUPPORTIVE)])
def test_red_flag_counts_for_14_days(days: float, rule: str) -> None:
    assert fired(run(cancer(), back_pain(), red_flag(days=days)))[0] == rule


@pytest.mark.parametrize("flag", [
    red_flag(kind=ClinicalKind.RED_FLAG_SPHINCTER, label="Retention of urine"),
    red_flag(kind=ClinicalKind.RED_FLAG_NEURO, label="Numbness of saddle area"),
    red_flag("Condition/cauda", kind=ClinicalKind.MSCC, status="active", days=300, label="Cauda equina syndrome"),
])
def test_mscc_fires_critical_with_a_stat_mri_and_no_nsaid_advice(flag: object) -> None:
    result = run(cancer(), back_pain(), flag, gcsf("MedicationAdministration/peg", ago(2)))
    finding = card(result)
    assert finding is not None and finding.rule_id == MSCC
    assert finding.indicator is Indicator.CRITICAL
    assert finding.actions == ("mri-whole-spine-stat",)
    assert flag.ref in finding.evidence  # type: ignore[attr-defined]
    assert "MedicationAdministration/peg" not in finding.evidence
    assert_texts_fillable(finding)


def test_resolved_mscc_diagnosis_is_not_a_red_flag() -> None:
    flag = red_flag("Condition/cauda", kind=ClinicalKind.MSCC, status="resolved", days=300)
    assert fired(run(cancer(), back_pain(), flag)) == [SUPPORTIVE]


def test_neuropathy_caveat_is_a_reason_against_neurological_red_flags_only() -> None:
    neuro = card(run(cancer(), back_pain(), red_flag()))
    sphincter = card(run(cancer(), back_pain(), red_flag(kind=ClinicalKind.RED_FLAG_SPHINCTER)))
    assert neuro is not None and any("neuropathy" in r.text for r in neuro.reasons_against)
    assert sphincter is not None and sphincter.reasons_against == ()


@pytest.mark.parametrize(("mri_days", "counted"), [(0.5, True), (3, False)])
def test_mscc_counts_only_spine_mri_done_after_the_red_flag(mri_days: float, counted: bool) -> None:
    finding = card(run(cancer(), back_pain(), red_flag(days=1), imaging(days=mri_days)))
    assert finding is not None
    assert finding.existing_imaging == (("ImagingStudy/mri",) if counted else ())


# -- G-CSF bone pain -----------------------------------------------------------------------


@pytest.mark.parametrize(("onset_after_dose", "rule"), [
    (timedelta(days=7), GCSF),
    (timedelta(days=8), SUPPORTIVE),
    (timedelta(days=7, seconds=1), SUPPORTIVE),
    (timedelta(0), GCSF),
])
def test_long_acting_window_day_7_in_day_8_out(onset_after_dose: timedelta, rule: str) -> None:
    dose = ago(10)
    result = run(cancer(), gcsf("MedicationAdministration/peg", dose), back_pain(at=dose + onset_after_dose))
    assert fired(result)[0] == rule


@pytest.mark.parametrize(("after_last", "rule"), [(3, GCSF), (4, SUPPORTIVE)])
def test_daily_window_last_dose_plus_3_vs_4_days(after_last: float, rule: str) -> None:
    doses = [gcsf(f"MedicationAdministration/fil{i}", ago(20 - i), cls=GcsfClass.DAILY) for i in range(5)]
    result = run(cancer(), *doses, back_pain(at=ago(16) + timedelta(days=after_last)))
    assert fired(result)[0] == rule
    if rule == GCSF:
        finding = card(result)
        assert finding is not None
        assert set(finding.evidence) >= {f"MedicationAdministration/fil{i}" for i in range(5)}
        assert finding.variables["gcsf"] == "filgrastim"


def test_on_body_injector_window_holds_day_8() -> None:
    dose = gcsf("MedicationAdministration/onpro", ago(10), on_body_injector=True)
    assert fired(run(cancer(), dose, back_pain(at=ago(2))))[0] == GCSF


def test_planned_gcsf_is_ignored() -> None:
    planned = gcsf("MedicationRequest/peg", ago(3), source=MedicationSource.REQUEST, status="active", intent="plan")
    assert fired(run(cancer(), planned, back_pain(days=2))) == [SUPPORTIVE]


def test_gcsf_alone_gives_no_context() -> None:
    assert run(peg_at(3), back_pain(days=2)).findings == ()


@pytest.mark.parametrize(("latest", "indicator"), [(6, Indicator.INFO), (7, Indicator.WARNING)])
def test_gcsf_bone_pain_is_a_warning_from_score_7(latest: float, indicator: Indicator) -> None:
    facts = (cancer(), peg_at(4), back_pain(days=2), score("Observation/s1", ago(2), latest - 1),
             score("Observation/s2", ago(1), latest), *SAFE_LABS)
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == GCSF
    assert finding.indicator is indicator
    assert finding.variables["onset_day"] == "2"
    assert finding.variables["days_since_dose"] == "4"
    assert finding.variables["gcsf"] == "pegfilgrastim"
    assert finding.actions == ("paracetamol", "naproxen", "loratadine", "gcsf-dose-review")
    # the latest score sets the indicator, so it is evidence; the earlier one is not
    assert set(finding.evidence) == {"Condition/back-pain", "Observation/s2", "MedicationAdministration/peg",
                                     "Condition/cancer"}
    assert_texts_fillable(finding)


@pytest.mark.parametrize("unsafe", [
    lab(LabKind.PLATELETS, 49), lab(LabKind.EGFR, 29), anticoagulant(),
])
def test_gcsf_bone_pain_drops_naproxen_when_nsaids_are_unsafe(unsafe: object) -> None:
    finding = card(run(cancer(), peg_at(4), back_pain(days=2), unsafe))
    assert finding is not None and finding.rule_id == GCSF
    assert "naproxen" not in finding.actions
    assert finding.nsaid_safe is False
    assert [c.ref for c in finding.nsaid_concerns] == [unsafe.ref]  # type: ignore[attr-defined]
    assert finding.variables["nsaid_advice"] == CONFIG.texts["nsaid_advice_unsafe"]


@pytest.mark.parametrize(("platelets", "safe"), [(49, False), (50, True)])
def test_every_triage_finding_carries_nsaid_safety(platelets: float, safe: bool) -> None:
    facts = (cancer(), back_pain(), red_flag(), lab(LabKind.PLATELETS, platelets), lab(LabKind.EGFR, 90))
    for finding in run(*facts).differential:
        assert finding.nsaid_safe is safe


# -- progressive features ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "rule"), [(6, SUPPORTIVE), (7, PROGRESSIVE)])
def test_score_7_outside_a_gcsf_window_is_progressive(value: float, rule: str) -> None:
    assert fired(run(cancer(), back_pain(), score("Observation/s", ago(1), value)))[0] == rule


def test_score_7_inside_a_gcsf_window_is_not_progressive() -> None:
    result = run(cancer(), peg_at(3), back_pain(days=2), score("Observation/s", ago(1), 8))
    assert fired(result) == [GCSF, SUPPORTIVE]


@pytest.mark.parametrize(("rise", "rule"), [(1, SUPPORTIVE), (2, PROGRESSIVE)])
def test_scores_rising_by_2_points_within_7_days_are_progressive(rise: float, rule: str) -> None:
    facts = (cancer(), back_pain(days=10), score("Observation/s1", ago(6), 2),
             score("Observation/s2", ago(3), 1), score("Observation/s3", ago(1), 2 + rise))
    assert fired(run(*facts))[0] == rule


def test_a_rise_from_a_score_older_than_7_days_does_not_count() -> None:
    facts = (cancer(), back_pain(days=10), score("Observation/s1", ago(7, hours=1), 1), score("Observation/s2", ago(1), 3))
    assert fired(run(*facts))[0] == SUPPORTIVE


@pytest.mark.parametrize(("onset_days", "rule"), [(13, SUPPORTIVE), (14, PROGRESSIVE)])
def test_pain_persisting_14_days_with_a_recent_score_of_4_is_progressive(onset_days: float, rule: str) -> None:
    facts = (cancer(), back_pain(days=onset_days), score("Observation/s", ago(2), 4))
    assert fired(run(*facts))[0] == rule


def test_persistence_needs_a_score_of_at_least_4_in_the_last_7_days() -> None:
    assert fired(run(cancer(), back_pain(days=20), score("Observation/s", ago(2), 3)))[0] == SUPPORTIVE
    assert fired(run(cancer(), back_pain(days=20), score("Observation/s", ago(8), 5)))[0] == SUPPORTIVE


@pytest.mark.parametrize("facts", [
    (back_pain(site=SpineSite.THORACIC),),
    (back_pain(site=SpineSite.CERVICAL),),
    (back_pain(site=None), score("Observation/s", ago(1), 2, SpineSite.THORACIC)),
    (back_pain(), bone_mets()),
])
def test_upper_spine_site_or_known_metastasis_is_progressive(facts: tuple[object, ...]) -> None:
    finding = card(run(cancer(), peg_at(3), *facts))
    assert finding is not None and finding.rule_id == PROGRESSIVE
    assert finding.indicator is Indicator.WARNING
    assert finding.actions == ("mri-whole-spine-urgent", "bone-scan", "paracetamol")
    assert finding.reasons_against  # the G-CSF window argues against
    assert_texts_fillable(finding)


def _cycles(*pain_days: float) -> tuple[object, ...]:
    """Three pegfilgrastim cycles 21 days apart (42, 21 and 1 days ago) and back-pain facts."""
    doses = tuple(gcsf(f"MedicationAdministration/peg{i}", ago(d)) for i, d in enumerate((42, 21, 1)))
    past = tuple(back_pain(f"Condition/bp-{d:g}", days=d, status="resolved") for d in pain_days)
    return (cancer(), *doses, *past, back_pain("Condition/bp-now", days=0.5))


@pytest.mark.parametrize(("pain_days", "rule"), [
    ((), GCSF),  # only this cycle
    ((40,), GCSF),  # cycles 1 and 3: not consecutive
    ((19,), PROGRESSIVE),  # cycles 2 and 3
    ((40, 19), PROGRESSIVE),
])
def test_in_window_pain_in_2_consecutive_cycles_is_recurrence(pain_days: tuple[float, ...], rule: str) -> None:
    result = run(*_cycles(*pain_days))
    assert fired(result)[0] == rule
    if rule == PROGRESSIVE:
        finding = card(result)
        assert finding is not None
        assert "consecutive G-CSF cycles" in finding.variables["features"]
        assert "Condition/bp-19" in finding.evidence


def test_recurrence_threshold_comes_from_configuration() -> None:
    config = config_with({"rules": {PROGRESSIVE: {"recurrence_cycles": {"value": 3, "unit": "{cycles}"}}}})
    assert fired(run(*_cycles(19), config=config))[0] == GCSF
    assert fired(run(*_cycles(40, 19), config=config))[0] == PROGRESSIVE


@pytest.mark.parametrize(("days", "existing"), [(30, True), (31, False)])
def test_existing_imaging_from_the_last_30_days_is_recorded(days: float, existing: bool) -> None:
    facts = (cancer(), back_pain(site=SpineSite.THORACIC), imaging(days=days),
             imaging("DiagnosticReport/bone-scan", days=days, kind=ImagingKind.BONE_SCAN))
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == PROGRESSIVE
    assert finding.existing_imaging == (("ImagingStudy/mri", "DiagnosticReport/bone-scan") if existing else ())
    key = "imaging_note_existing" if existing else "imaging_note_none"
    assert finding.variables["imaging_note"] == CONFIG.texts[key]
    assert "mri-whole-spine-urgent" in finding.actions  # the renderer filters, not the rule


# -- exclusivity and priority --------------------------------------------------------------


def test_every_rule_that_fires_is_in_the_differential_and_only_the_most_urgent_is_the_card() -> None:
    facts = (cancer(), peg_at(3), back_pain(days=2, site=SpineSite.THORACIC), red_flag(),
             score("Observation/s", ago(1), 8))
    result = run(*facts)
    assert fired(result) == [MSCC, PROGRESSIVE, GCSF, SUPPORTIVE]
    assert [f.rule_id for f in result.findings] == [MSCC]
    gcsf_finding = result.differential[2]
    assert {r.ref for r in gcsf_finding.reasons_against} >= {"Observation/red-flag", "Condition/back-pain"}
    for finding in result.differential:
        assert_texts_fillable(finding)


def test_progressive_outranks_a_severe_gcsf_bone_pain_of_the_same_indicator() -> None:
    facts = (cancer(), peg_at(3), back_pain(days=2, site=SpineSite.CERVICAL), score("Observation/s", ago(1), 9))
    result = run(*facts)
    assert fired(result) == [PROGRESSIVE, GCSF, SUPPORTIVE]
    assert result.differential[1].indicator is Indicator.WARNING
    assert card(result).rule_id == PROGRESSIVE  # type: ignore[union-attr]


def test_disabled_rule_does_not_fire_and_the_next_one_shows() -> None:
    config = config_with({"rules": {MSCC: {"enabled": False}}})
    result = run(cancer(), back_pain(), red_flag(), config=config)
    assert fired(result) == [SUPPORTIVE]
    assert f"{MSCC}: disabled by configuration" in result.notes


def test_triage_hooks_ignore_draft_orders() -> None:
    from assessment.facts import DrugClass

    result = run(cancer(), back_pain(), draft("MedicationRequest/nsaid", DrugClass.NSAID), lab(LabKind.PLATELETS, 10))
    assert fired(result) == [SUPPORTIVE]


def test_text_matched_evidence_makes_the_finding_low_confidence() -> None:
    coded = card(run(cancer(), back_pain()))
    texty = card(run(cancer(), back_pain(confidence=Confidence.TEXT)))
    assert coded is not None and not coded.low_confidence
    assert texty is not None and texty.low_confidence


def test_notes_explain_which_rules_did_not_fire() -> None:
    result = run(cancer(), back_pain())
    assert any(note.startswith(MSCC) for note in result.notes)
    assert any(note.startswith(PROGRESSIVE) for note in result.notes)
    assert any(note.startswith(GCSF) for note in result.notes)
