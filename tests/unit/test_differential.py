"""The detail view's differential (assessment.differential) on hand-built records.

The differential must agree with the card: it is built on the same triage situation, so the
card's dose is "for" G-CSF timing, the card's red flag is "for" spread to the spine, and the
cause a card stands for has facts for it. Sentences come from knowledge/differential.toml.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import datetime

import pytest

from assessment.differential import (
    CAUSE_KEYS,
    Cause,
    Differential,
    DifferentialConfigError,
    build_differential,
    parse_differential_config,
)
from assessment.facts import (
    ClinicalFact,
    ClinicalKind,
    DrugClass,
    MedicationFact,
    MedicationSource,
    ProcedureFact,
    SpineSite,
)
from fhir_mapping.knowledge import load_knowledge
from fhir_mapping.valuesets import concepts_by_url, load_valueset_files
from tests.unit.test_rules_common import (
    CONFIG,
    NOW,
    REPO,
    ago,
    back_pain,
    bone_mets,
    cancer,
    card,
    gcsf,
    imaging,
    record,
    red_flag,
    run,
    score,
)

KNOWLEDGE = load_knowledge()
DX = KNOWLEDGE.differential
RAW: dict = tomllib.loads((REPO / "knowledge" / "differential.toml").read_text("utf-8"))
CONCEPTS = concepts_by_url(load_valueset_files([REPO / "knowledge"]))
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RULE_IDS = set(CONFIG.rules)


def differential(*facts: object, now: datetime = NOW) -> Differential:
    return build_differential(record(*facts), now, CONFIG, DX)


def cause(result: Differential, key: str) -> Cause:
    return next(c for c in result.causes if c.key == key)


def keys(facts) -> list[str]:
    return [f.key for f in facts]


def refs(facts) -> set[str]:
    return {ref for f in facts for ref in f.refs}


def agent(ref: str, days: float, *, label: str = "paclitaxel 6 MG/ML Injectable Solution",
          codes: tuple[tuple[str, str], ...] = (), source: MedicationSource = MedicationSource.ADMINISTRATION,
          status: str = "completed") -> MedicationFact:
    return MedicationFact(ref=ref, drug_class=DrugClass.CHEMOTHERAPY, source=source, status=status,
                          time=ago(days), label=label, codes=codes)


# -- the four causes, in the configured order ----------------------------------------------


def test_every_cause_is_weighed_in_the_configured_order() -> None:
    result = differential(cancer(), back_pain())
    assert [c.key for c in result.causes] == list(RAW["order"])
    assert sorted(RAW["order"]) == sorted(CAUSE_KEYS)
    assert all(c.title and c.summary and c.citation.title for c in result.causes)


def test_nothing_to_weigh_without_oncology_context_or_back_pain() -> None:
    for facts in ((back_pain(), red_flag()), (cancer(),)):
        result = differential(*facts)
        assert result.causes == ()
        assert result.notes == run(*facts).notes and result.notes


# -- G-CSF timing ---------------------------------------------------------------------------


def test_a_gcsf_bone_pain_card_has_its_dose_for_gcsf_timing() -> None:
    facts = (cancer(), back_pain(days=1), gcsf("MedicationAdministration/peg", ago(3)))
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == "gcsf-bone-pain"
    result = differential(*facts)
    gcsf_cause = cause(result, "gcsf-timing")
    assert keys(gcsf_cause.facts_for) == ["gcsf_dose_in_window"]
    assert gcsf_cause.facts_for[0].refs == ("MedicationAdministration/peg",)
    assert refs(gcsf_cause.facts_for) <= set(finding.evidence)
    text = gcsf_cause.facts_for[0].text
    assert "pegfilgrastim given on 2025-03-12" in text and "day 2" in text and "2025-03-19" in text
    assert "outranked" not in keys(gcsf_cause.facts_against)
    # the same fact argues against the other explanations, as on the cards
    assert "gcsf-window" in keys(cause(result, "spread-to-spine").facts_against)
    posture = cause(result, "posture-non-specific")
    assert "gcsf_dose_in_window" in keys(posture.facts_against)
    assert "posture_not_in_window" not in keys(posture.facts_for)
    assert cause(result, "gcsf-timing").rules == ("gcsf-bone-pain",)


def test_a_dose_after_the_pain_began_never_explains_it() -> None:
    result = differential(cancer(), back_pain(days=5), gcsf("MedicationAdministration/late", ago(2)))
    gcsf_cause = cause(result, "gcsf-timing")
    assert gcsf_cause.facts_for == ()
    assert keys(gcsf_cause.facts_against) == ["gcsf_none", "gcsf_dose_after_onset"]
    after = gcsf_cause.facts_against[1]
    assert after.refs == ("MedicationAdministration/late",)
    assert "after the pain began on 2025-03-10" in after.text


def test_a_window_that_ended_before_the_pain_is_against_with_the_gap() -> None:
    result = differential(cancer(), back_pain(days=3), gcsf("MedicationAdministration/old", ago(20)))
    against = cause(result, "gcsf-timing").facts_against
    assert keys(against) == ["gcsf_window_before_onset"]
    assert "ended on 2025-03-02" in against[0].text and "10 days later" in against[0].text
    assert against[0].refs == ("MedicationAdministration/old",)


def test_no_gcsf_in_the_lookback_says_so() -> None:
    result = differential(cancer(), back_pain(days=3), gcsf("MedicationAdministration/ancient", ago(200)))
    against = cause(result, "gcsf-timing").facts_against
    assert keys(against) == ["gcsf_none"] and "90 days" in against[0].text


# -- spread to the spine --------------------------------------------------------------------


def test_a_red_flag_card_has_the_red_flag_for_spread_to_the_spine() -> None:
    facts = (cancer(), back_pain(), red_flag("Observation/weak", label="Leg weakness"),
             gcsf("MedicationAdministration/peg", ago(4)))
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == "mscc-red-flags"
    result = differential(*facts)
    spine = cause(result, "spread-to-spine")
    assert "red-flag" in keys(spine.facts_for)
    assert "Observation/weak" in refs(spine.facts_for)
    assert refs(spine.facts_for) <= set(finding.evidence)
    assert "spine_no_red_flag" not in keys(spine.facts_against)
    # the red flag is never put down to neuropathy, and it outranks any timing
    chemo = cause(result, "chemotherapy-side-effects")
    assert "chemo_red_flag" in keys(chemo.facts_against)
    assert "outranked" in keys(cause(result, "gcsf-timing").facts_against)
    posture = cause(result, "posture-non-specific")
    assert "posture_no_red_flag" not in keys(posture.facts_for)
    assert "Observation/weak" in refs(posture.facts_against)


def test_progressive_features_are_for_spread_to_the_spine() -> None:
    facts = (cancer(), bone_mets(), back_pain(site=SpineSite.THORACIC))
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == "progressive-back-pain"
    spine = cause(differential(*facts), "spread-to-spine")
    assert {"Condition/mets", "Condition/back-pain"} <= refs(spine.facts_for)
    assert set(keys(spine.facts_for)) == {"feature"}
    assert keys(spine.facts_against) == ["spine_no_red_flag"]


def test_night_pain_is_for_spread_when_the_record_says_so_and_not_when_negated() -> None:
    def pain(label: str) -> ClinicalFact:
        return ClinicalFact(ref="Condition/bp", kind=ClinicalKind.BACK_PAIN, time=ago(3), label=label)

    spine = cause(differential(cancer(), pain("Back pain, worse at night")), "spread-to-spine")
    assert keys(spine.facts_for) == ["spine_night_pain"]
    assert '"Back pain, worse at night"' in spine.facts_for[0].text
    assert spine.facts_for[0].refs == ("Condition/bp",)
    for label in ("Back pain, no night pain", "Back pain (denies waking at night)", "Back pain after gardening"):
        assert cause(differential(cancer(), pain(label)), "spread-to-spine").facts_for == ()


def test_falling_scores_are_against_spread_and_imaging_on_record_is_noted() -> None:
    result = differential(cancer(), back_pain(days=6), score("Observation/s1", ago(5), 6),
                          score("Observation/s2", ago(1), 2), imaging("ImagingStudy/mri", days=2))
    spine = cause(result, "spread-to-spine")
    falling = [f for f in spine.facts_against if f.key == "spine_scores_falling"]
    assert falling and "from 6 to 2" in falling[0].text and falling[0].refs == ("Observation/s2",)
    assert keys(spine.notes) == ["spine_imaging"] and spine.notes[0].refs == ("ImagingStudy/mri",)
    assert "spine MRI" in spine.notes[0].text


# -- chemotherapy side effects --------------------------------------------------------------


def test_a_taxane_given_days_before_the_pain_fits_its_timing() -> None:
    result = differential(cancer(), back_pain(days=1), agent("MedicationAdministration/ptx", 3))
    chemo = cause(result, "chemotherapy-side-effects")
    assert keys(chemo.facts_for) == ["chemo_agent", "chemo_onset_after_dose"]
    assert refs(chemo.facts_for) == {"MedicationAdministration/ptx"}
    assert chemo.facts_for[0].text.startswith("Paclitaxel given on 2025-03-12: a taxane can cause")
    assert "day 2 after paclitaxel" in chemo.facts_for[1].text
    assert keys(chemo.facts_against) == []
    posture = cause(result, "posture-non-specific")
    assert "chemo_onset_after_dose" in keys(posture.facts_against)
    assert "posture_no_chemo_timing" not in keys(posture.facts_for)


@pytest.mark.parametrize(("dose_days", "onset_days", "fits"), [(10, 3, True), (11, 3, False)])
def test_the_agent_window_edge(dose_days: float, onset_days: float, fits: bool) -> None:
    chemo = cause(differential(cancer(), back_pain(days=onset_days), agent("MedicationAdministration/d", dose_days,
                                                                           label="docetaxel")),
                  "chemotherapy-side-effects")
    assert ("chemo_onset_after_dose" in keys(chemo.facts_for)) is fits
    assert ("chemo_onset_outside_window" in keys(chemo.facts_against)) is not fits
    assert "chemo_agent" in keys(chemo.facts_for)  # the agent can cause neuropathy whatever the timing


def test_an_agent_only_after_the_pain_began_is_against() -> None:
    chemo = cause(differential(cancer(), back_pain(days=5), agent("MedicationAdministration/v", 1, label="Vincristine")),
                  "chemotherapy-side-effects")
    assert chemo.facts_for == ()
    assert keys(chemo.facts_against) == ["chemo_dose_after_onset"]
    assert chemo.facts_against[0].text.startswith("Vincristine given on 2025-03-14, after the pain began")


def test_agents_are_recognised_by_verified_code_and_by_value_set_product() -> None:
    by_ingredient = agent("MedicationRequest/carbo", 2, label="chemotherapy", codes=((RXNORM, "40048"),),
                          source=MedicationSource.REQUEST, status="active")
    by_product = agent("MedicationAdministration/dtx", 2, label="chemotherapy", codes=((RXNORM, "1001405"),))
    chemo = cause(differential(cancer(), back_pain(days=1), by_ingredient, by_product), "chemotherapy-side-effects")
    texts = [f.text for f in chemo.facts_for if f.key == "chemo_agent"]
    assert any(t.startswith("Carboplatin ordered on") for t in texts)
    assert any(t.startswith("Docetaxel given on") for t in texts)
    # an unverified code (cisplatin 2555) is not listed: only its name or VSAC products count
    unverified = agent("MedicationAdministration/cis", 2, label="chemotherapy", codes=((RXNORM, "2555"),))
    chemo = cause(differential(cancer(), back_pain(days=1), unverified), "chemotherapy-side-effects")
    assert keys(chemo.facts_against) == ["chemo_none"]


def test_agents_are_recognised_in_procedure_text_and_other_chemotherapy_is_not_counted() -> None:
    infusion = ProcedureFact(ref="Procedure/ptx", time=ago(2), label="Nab-paclitaxel infusion")
    other = agent("MedicationAdministration/gem", 2, label="gemcitabine 1000 MG Injection")
    chemo = cause(differential(cancer(), back_pain(days=1), infusion, other), "chemotherapy-side-effects")
    assert refs(chemo.facts_for) == {"Procedure/ptx"}
    assert chemo.facts_for[0].text.startswith("Nab-paclitaxel given on")


def test_no_known_agent_says_which_groups_were_looked_for() -> None:
    chemo = cause(differential(cancer(), back_pain()), "chemotherapy-side-effects")
    assert keys(chemo.facts_against) == ["chemo_none"]
    assert "a taxane, a vinca alkaloid or a platinum agent" in chemo.facts_against[0].text


def test_a_planned_or_cancelled_agent_is_not_exposure() -> None:
    planned = MedicationFact(ref="MedicationRequest/plan", drug_class=DrugClass.CHEMOTHERAPY,
                             source=MedicationSource.REQUEST, status="active", time=ago(2), intent="plan",
                             label="paclitaxel")
    cancelled = agent("MedicationAdministration/x", 2, status="entered-in-error")
    chemo = cause(differential(cancer(), back_pain(days=1), planned, cancelled), "chemotherapy-side-effects")
    assert chemo.facts_for == ()


# -- posture / non-specific -----------------------------------------------------------------


def test_a_supportive_care_card_has_only_absences_for_posture() -> None:
    facts = (cancer(), back_pain(), score("Observation/s", ago(1), 3))
    finding = card(run(*facts))
    assert finding is not None and finding.rule_id == "back-pain-supportive-care"
    result = differential(*facts)
    posture = cause(result, "posture-non-specific")
    assert keys(posture.facts_for) == ["posture_no_red_flag", "posture_no_feature", "posture_not_in_window",
                                       "posture_no_chemo_timing"]
    assert posture.facts_against == ()
    assert cause(result, "spread-to-spine").facts_for == ()
    assert cause(result, "gcsf-timing").facts_for == ()


# -- agreement with the cards over many records ---------------------------------------------

RECORDS = {
    "gcsf": (cancer(), back_pain(days=1), gcsf("MedicationAdministration/peg", ago(3))),
    "gcsf-severe-in-window": (cancer(), back_pain(days=1), gcsf("MedicationAdministration/peg", ago(3)),
                              score("Observation/s", ago(0.5), 8)),
    "mscc": (cancer(), back_pain(), red_flag()),
    "mscc-sphincter": (cancer(), back_pain(), red_flag(kind=ClinicalKind.RED_FLAG_SPHINCTER, label="Retention")),
    "mets": (cancer(), bone_mets(), back_pain()),
    "severe-outside": (cancer(), back_pain(), score("Observation/s", ago(1), 8)),
    "supportive": (cancer(), back_pain()),
    "taxane": (cancer(), back_pain(days=1), agent("MedicationAdministration/ptx", 3)),
}
CARD_CAUSE = {rule: key for key in CAUSE_KEYS for text in DX.causes if text.key == key for rule in text.rules}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_cause_of_the_card_has_facts_for_it_resting_on_the_cards_evidence(name: str) -> None:
    facts = RECORDS[name]
    finding = card(run(*facts))
    assert finding is not None
    result = differential(*facts)
    key = CARD_CAUSE[finding.rule_id]
    mine = cause(result, key)
    assert mine.facts_for, f"{name}: the card's cause {key} has no fact for it"
    if finding.rule_id != "back-pain-supportive-care":
        assert refs(mine.facts_for) and refs(mine.facts_for) <= set(finding.evidence)
    # a more urgent card always leaves a fact against posture / non-specific pain
    if finding.rule_id != "back-pain-supportive-care":
        assert cause(result, "posture-non-specific").facts_against


# -- configuration --------------------------------------------------------------------------


def test_the_packaged_file_parses_and_names_verified_codes_only() -> None:
    parsed = parse_differential_config(RAW, rule_ids=RULE_IDS, valueset_concepts=CONCEPTS)
    assert [c.key for c in parsed.causes] == list(RAW["order"])
    codes = {code for group in parsed.groups for code in group.codes}
    assert (RXNORM, "2555") not in codes  # cisplatin's ingredient code is UNVERIFIED
    assert {(RXNORM, "56946"), (RXNORM, "40048"), (RXNORM, "32592")} <= codes
    chemo_products = {(s, c) for s, c, _ in CONCEPTS["https://backpain-cds.org/fhir/ValueSet/chemotherapy-medications"]}
    listed = {(g["codes"][i]["system"], g["codes"][i]["code"]) for g in RAW["chemotherapy"]["groups"].values()
              for i in range(len(g["codes"]))}
    assert codes - listed <= chemo_products  # everything else comes from the verified value set


def _broken(**changes) -> list[str]:
    data = copy.deepcopy(RAW)
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    with pytest.raises(DifferentialConfigError) as info:
        parse_differential_config(data, rule_ids=RULE_IDS, valueset_concepts=CONCEPTS)
    return info.value.problems


def test_configuration_problems_are_all_listed() -> None:
    problems = _broken(facts__gcsf_none="No G-CSF in {lookback_days} days or {patient_name}",
                       facts__outranked=None, order=["gcsf-timing"])
    assert any("facts.gcsf_none" in p and "patient_name" in p for p in problems)
    assert any("facts.outranked" in p for p in problems)
    assert any(p.startswith("order must list") for p in problems)


@pytest.mark.parametrize(("path", "value", "needle"), [
    ("causes__gcsf-timing__rules", ["no-such-rule"], "unknown rule"),
    ("chemotherapy__groups__taxanes__valuesets", ["https://example.org/ValueSet/none"], "unknown value set"),
    ("night_pain__text", ["(unclosed"], "night_pain.text"),
    ("chemotherapy__groups__taxanes__codes", [{"system": RXNORM, "code": "1", "name": "aspirin"}], "not in names"),
    ("facts__chemo_agent", "{agent} {", "facts.chemo_agent"),
    ("lookback_days", 0, "lookback_days"),
    ("version", "one", "semantic version"),
    ("imaging_names", {"spine-mri": "MRI"}, "imaging_names"),
])
def test_each_configuration_problem_is_named(path: str, value: object, needle: str) -> None:
    assert any(needle in p for p in _broken(**{path: value}))


def test_a_site_overlay_rewords_a_fact_and_reorders_the_causes(tmp_path) -> None:
    overlay = tmp_path / "site"
    overlay.mkdir()
    (overlay / "differential.toml").write_text(
        'order = ["spread-to-spine", "gcsf-timing", "chemotherapy-side-effects", "posture-non-specific"]\n'
        '[facts]\ngcsf_none = "Keine G-CSF-Gabe in {lookback_days} Tagen"\n', encoding="utf-8")
    knowledge = load_knowledge(overlay)
    result = build_differential(record(cancer(), back_pain()), NOW, knowledge.rules, knowledge.differential)
    assert result.causes[0].key == "spread-to-spine"
    assert cause(result, "gcsf-timing").facts_against[0].text == "Keine G-CSF-Gabe in 90 Tagen"


def test_check_config_lists_a_broken_site_differential(tmp_path) -> None:
    from fhir_mapping.knowledge import check_knowledge

    overlay = tmp_path / "site"
    overlay.mkdir()
    (overlay / "differential.toml").write_text('[facts]\nchemo_none = "No {drug}"\n', encoding="utf-8")
    problems = check_knowledge(overlay)
    assert any(p.startswith("differential.toml: facts.chemo_none") and "drug" in p for p in problems)
