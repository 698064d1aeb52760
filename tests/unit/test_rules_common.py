"""Shared fact builders for the rule tests, and tests of the shared predicates.

Other ``test_rules_*`` modules import the builders from here. ``NOW`` is fixed; every fact
time is written as days (and hours) before it.
"""

from __future__ import annotations

import ast
import string
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from assessment.config import RuleConfig, parse_rule_config
from assessment.config.schema import ACTION_VARIABLES, RULE_VARIABLES
from assessment.engine import assess
from assessment.facts import (
    ClinicalFact,
    ClinicalKind,
    Confidence,
    DrugClass,
    GcsfClass,
    ImagingFact,
    ImagingKind,
    LabKind,
    LabResult,
    MedicationFact,
    MedicationSource,
    PainScore,
    PatientRecord,
    ProcedureFact,
    SpineSite,
)
from assessment.findings import Assessment, Finding
from assessment.rules import concepts, gcsf_windows, nsaid_safety
from fhir_mapping.overlay import merge_overlay

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
RAW_CONFIG: dict[str, Any] = tomllib.loads((REPO / "knowledge" / "rules.toml").read_text("utf-8"))
CONFIG = parse_rule_config(RAW_CONFIG)


# -- builders ------------------------------------------------------------------------------


def ago(days: float = 0, hours: float = 0, seconds: float = 0) -> datetime:
    """Return the time ``days`` (+ hours, seconds) before NOW."""
    return NOW - timedelta(days=days, hours=hours, seconds=seconds)


def cancer(ref: str = "Condition/cancer", status: str = "active", label: str = "Breast cancer") -> ClinicalFact:
    return ClinicalFact(ref=ref, kind=ClinicalKind.CANCER, time=ago(400), status=status, label=label)


def bone_mets(ref: str = "Condition/mets", status: str = "active") -> ClinicalFact:
    return ClinicalFact(ref=ref, kind=ClinicalKind.BONE_METASTASIS, time=ago(200), status=status,
                        label="Secondary malignant neoplasm of bone")


def back_pain(
    ref: str = "Condition/back-pain",
    at: datetime | None = None,
    *,
    days: float = 3,
    status: str = "active",
    site: SpineSite | None = SpineSite.LUMBAR,
    confidence: Confidence = Confidence.CODED,
    recorded: datetime | None = None,
) -> ClinicalFact:
    time = at if at is not None else (ago(days) if recorded is None else None)
    return ClinicalFact(ref=ref, kind=ClinicalKind.BACK_PAIN, time=time, recorded=recorded,
                        status=status, site=site, confidence=confidence, label="Back pain")


def red_flag(
    ref: str = "Observation/red-flag",
    *,
    days: float = 1,
    kind: ClinicalKind = ClinicalKind.RED_FLAG_NEURO,
    status: str = "present",
    label: str = "Leg weakness",
) -> ClinicalFact:
    return ClinicalFact(ref=ref, kind=kind, time=ago(days), status=status, label=label)


def score(ref: str, at: datetime, value: float, site: SpineSite | None = None) -> PainScore:
    return PainScore(ref=ref, time=at, score=value, site=site)


def gcsf(
    ref: str,
    at: datetime,
    *,
    cls: GcsfClass = GcsfClass.LONG_ACTING,
    source: MedicationSource = MedicationSource.ADMINISTRATION,
    status: str = "completed",
    intent: str | None = None,
    on_body_injector: bool = False,
    label: str | None = None,
) -> MedicationFact:
    name = label or ("pegfilgrastim" if cls is GcsfClass.LONG_ACTING else "filgrastim")
    return MedicationFact(ref=ref, drug_class=DrugClass.GCSF, source=source, status=status, time=at,
                          gcsf_class=cls, intent=intent, on_body_injector=on_body_injector, label=name)


def chemo(ref: str = "MedicationAdministration/chemo", *, days: float = 10,
          source: MedicationSource = MedicationSource.ADMINISTRATION, intent: str | None = None) -> MedicationFact:
    return MedicationFact(ref=ref, drug_class=DrugClass.CHEMOTHERAPY, source=source, status="completed",
                          time=ago(days), intent=intent, label="docetaxel")


def chemo_procedure(ref: str = "Procedure/chemo", *, days: float = 10) -> ProcedureFact:
    return ProcedureFact(ref=ref, time=ago(days), label="Chemotherapy")


def lab(kind: LabKind, value: float, *, days: float = 1, ref: str | None = None) -> LabResult:
    return LabResult(ref=ref or f"Observation/{kind.value}-{value:g}-{days:g}", kind=kind, time=ago(days), value=value)


def anticoagulant(ref: str = "MedicationRequest/apixaban", *, days: float = 30, status: str = "active",
                  end: datetime | None = None,
                  source: MedicationSource = MedicationSource.REQUEST) -> MedicationFact:
    return MedicationFact(ref=ref, drug_class=DrugClass.ANTICOAGULANT, source=source, status=status,
                          time=ago(days), end=end, label="apixaban")


def draft(ref: str, drug_class: DrugClass, *, selected: bool = False, label: str = "") -> MedicationFact:
    return MedicationFact(ref=ref, drug_class=drug_class, source=MedicationSource.DRAFT_ORDER, status="draft",
                          time=NOW, selected=selected, label=label or drug_class.value,
                          gcsf_class=GcsfClass.LONG_ACTING if drug_class is DrugClass.GCSF else None)


def imaging(ref: str = "ImagingStudy/mri", *, days: float = 5, kind: ImagingKind = ImagingKind.SPINE_MRI) -> ImagingFact:
    return ImagingFact(ref=ref, kind=kind, time=ago(days), status="available")


def record(*facts: object) -> PatientRecord:
    """Sort hand-built facts into a PatientRecord (draft-order medications become drafts)."""
    buckets: dict[str, list[object]] = {k: [] for k in
                                        ("medications", "clinical", "pain_scores", "labs", "procedures",
                                         "imaging", "draft_orders")}
    for fact in facts:
        if isinstance(fact, MedicationFact):
            key = "draft_orders" if fact.source is MedicationSource.DRAFT_ORDER else "medications"
        else:
            key = {ClinicalFact: "clinical", PainScore: "pain_scores", LabResult: "labs",
                   ProcedureFact: "procedures", ImagingFact: "imaging"}[type(fact)]
        buckets[key].append(fact)
    return PatientRecord(patient_id="p1", **{k: tuple(v) for k, v in buckets.items()})  # type: ignore[arg-type]


def run(*facts: object, hook: str = "patient-view", config: RuleConfig = CONFIG) -> Assessment:
    return assess(record(*facts), now=NOW, config=config, hook=hook)


def config_with(overlay: dict[str, Any]) -> RuleConfig:
    return parse_rule_config(merge_overlay(RAW_CONFIG, overlay))


def fired(assessment: Assessment) -> list[str]:
    """Rule ids of the differential, most urgent first."""
    return [f.rule_id for f in assessment.differential]


def card(assessment: Assessment) -> Finding | None:
    """The single triage card, if any."""
    assert len(assessment.findings) <= 1
    return assessment.findings[0] if assessment.findings else None


def assert_texts_fillable(finding: Finding, config: RuleConfig = CONFIG) -> None:
    """Every placeholder of the rule's card texts is set, and set to a non-empty string."""
    settings = config.rule(finding.rule_id)
    for text in (settings.card.summary, settings.card.detail):
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        # the action deadline is filled from actions.toml (at load, or when the card is rendered)
        missing = names - finding.variables.keys() - ACTION_VARIABLES
        assert not missing, f"{finding.rule_id}: unset placeholders {missing}"
        text.format_map({**finding.variables, **dict.fromkeys(ACTION_VARIABLES, "1")})
    assert set(finding.variables) >= RULE_VARIABLES[finding.rule_id]
    assert all(isinstance(v, str) and v for v in finding.variables.values())


# -- oncology context ----------------------------------------------------------------------


@pytest.mark.parametrize(("days", "expected"), [(90, True), (91, False)])
def test_chemotherapy_counts_as_context_for_90_days(days: float, expected: bool) -> None:
    for fact in (chemo(days=days), chemo_procedure(days=days),
                 chemo(days=days, source=MedicationSource.REQUEST)):
        assert concepts.oncology_context(record(fact), NOW, CONFIG.context).present is expected


def test_chemotherapy_boundary_is_exact_to_the_second() -> None:
    late = ProcedureFact(ref="Procedure/late", time=ago(90, seconds=1))
    assert not concepts.oncology_context(record(late), NOW, CONFIG.context).present


def test_gcsf_alone_planned_chemotherapy_and_draft_chemotherapy_are_not_context() -> None:
    facts = (gcsf("MedicationAdministration/peg", ago(2)), chemo(intent="plan"),
             MedicationFact(ref="MedicationRequest/draft-chemo", drug_class=DrugClass.CHEMOTHERAPY,
                            source=MedicationSource.DRAFT_ORDER, status="draft", time=NOW))
    assert not concepts.oncology_context(record(*facts), NOW, CONFIG.context).present


@pytest.mark.parametrize(("status", "expected"),
                         [("active", True), ("recurrence", True), ("relapse", True),
                          ("remission", False), ("resolved", False), ("inactive", False)])
def test_cancer_counts_when_active_recurrence_or_relapse(status: str, expected: bool) -> None:
    assert concepts.oncology_context(record(cancer(status=status)), NOW, CONFIG.context).present is expected


def test_bone_metastasis_is_cancer_context() -> None:
    assert concepts.oncology_context(record(bone_mets()), NOW, CONFIG.context).present


# -- back pain -----------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "present"), [(60, True), (61, False)])
def test_back_pain_onset_counts_for_60_days(days: float, present: bool) -> None:
    episode = concepts.back_pain_episode(record(back_pain(days=days)), NOW, CONFIG.context)
    assert (episode is not None) is present


def test_back_pain_time_falls_back_to_recorded_date() -> None:
    fact = back_pain(recorded=ago(5))
    episode = concepts.back_pain_episode(record(fact), NOW, CONFIG.context)
    assert episode is not None and episode.onset == ago(5)


def test_resolved_back_pain_is_not_a_current_episode() -> None:
    assert concepts.back_pain_episode(record(back_pain(status="resolved")), NOW, CONFIG.context) is None


def test_present_back_pain_observation_counts() -> None:
    fact = back_pain("Observation/bp", status="present")
    assert concepts.back_pain_episode(record(fact), NOW, CONFIG.context) is not None


def test_pain_score_alone_is_back_pain_only_with_a_spine_site() -> None:
    assert concepts.back_pain_episode(record(score("Observation/s", ago(1), 5)), NOW, CONFIG.context) is None
    episode = concepts.back_pain_episode(record(score("Observation/s", ago(1), 5, SpineSite.SPINE)), NOW, CONFIG.context)
    assert episode is not None and episode.onset == ago(1) and episode.refs == ("Observation/s",)


def test_onset_is_the_earliest_back_pain_fact_and_scores_give_severity() -> None:
    facts = (back_pain("Condition/a", days=10), back_pain("Observation/b", days=4, status="present"),
             score("Observation/s1", ago(2), 3), score("Observation/s2", ago(1), 5))
    episode = concepts.back_pain_episode(record(*facts), NOW, CONFIG.context)
    assert episode is not None
    assert episode.onset == ago(10)
    assert episode.latest_score is not None and episode.latest_score.score == 5


# -- G-CSF windows -------------------------------------------------------------------------


def _windows(*doses: MedicationFact) -> tuple[gcsf_windows.GcsfWindow, ...]:
    return gcsf_windows.gcsf_windows(record(*doses), CONFIG.context)


@pytest.mark.parametrize(("offset", "inside"), [
    (timedelta(0), True),
    (timedelta(days=7), True),
    (timedelta(days=7, seconds=1), False),
    (timedelta(days=8), False),
    (timedelta(seconds=-1), False),
])
def test_long_acting_window_runs_from_dose_to_day_7(offset: timedelta, inside: bool) -> None:
    dose_time = ago(20)
    (window,) = _windows(gcsf("MedicationAdministration/peg", dose_time))
    assert window.contains(dose_time + offset) is inside


@pytest.mark.parametrize(("injector", "inside"), [(False, False), (True, True)])
def test_on_body_injector_adds_a_day(injector: bool, inside: bool) -> None:
    (window,) = _windows(gcsf("MedicationAdministration/peg", ago(20), on_body_injector=injector))
    assert window.contains(ago(20) + timedelta(days=8)) is inside


@pytest.mark.parametrize(("after_last", "inside"), [(3, True), (4, False)])
def test_daily_window_ends_3_days_after_the_last_dose(after_last: float, inside: bool) -> None:
    doses = [gcsf(f"MedicationAdministration/fil{i}", ago(30 - i), cls=GcsfClass.DAILY) for i in range(5)]
    (window,) = _windows(*doses)
    assert window.start == ago(30)
    assert window.contains(ago(26) + timedelta(days=after_last)) is inside


@pytest.mark.parametrize(("gap", "courses"), [(3, 1), (4, 2)])
def test_daily_doses_more_than_3_days_apart_start_a_new_course(gap: float, courses: int) -> None:
    doses = [gcsf("MedicationAdministration/a", ago(30), cls=GcsfClass.DAILY),
             gcsf("MedicationAdministration/b", ago(30 - gap), cls=GcsfClass.DAILY)]
    assert len(_windows(*doses)) == courses


def test_planned_and_draft_gcsf_open_no_window() -> None:
    planned = gcsf("MedicationRequest/plan", ago(2), source=MedicationSource.REQUEST, intent="plan")
    drafted = gcsf("MedicationRequest/draft", ago(2), source=MedicationSource.DRAFT_ORDER, status="draft")
    assert _windows(planned, drafted) == ()


def test_ordered_gcsf_opens_a_window() -> None:
    ordered = gcsf("MedicationRequest/peg", ago(2), source=MedicationSource.REQUEST, status="active", intent="order")
    assert len(_windows(ordered)) == 1


# -- NSAID safety --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "safe"), [
    (LabKind.PLATELETS, 49, False), (LabKind.PLATELETS, 50, True),
    (LabKind.EGFR, 29, False), (LabKind.EGFR, 30, True),
])
def test_nsaid_safety_cut_offs(kind: LabKind, value: float, safe: bool) -> None:
    other = LabKind.EGFR if kind is LabKind.PLATELETS else LabKind.PLATELETS
    facts = (lab(kind, value, ref="Observation/lab"), lab(other, 200))
    safety = nsaid_safety.nsaid_safety(record(*facts), NOW, CONFIG.context)
    assert safety.safe is safe
    assert safety.refs == (() if safe else ("Observation/lab",))


@pytest.mark.parametrize(("days", "safe"), [(14, False), (15, True)])
def test_only_labs_from_the_last_14_days_count(days: float, safe: bool) -> None:
    safety = nsaid_safety.nsaid_safety(record(lab(LabKind.PLATELETS, 20, days=days)), NOW, CONFIG.context)
    assert safety.safe is safe


def test_the_latest_lab_decides() -> None:
    facts = (lab(LabKind.PLATELETS, 20, days=10), lab(LabKind.PLATELETS, 150, days=2))
    assert nsaid_safety.nsaid_safety(record(*facts), NOW, CONFIG.context).safe


def test_missing_labs_are_safe_but_unchecked() -> None:
    safety = nsaid_safety.nsaid_safety(record(), NOW, CONFIG.context)
    assert safety.safe and safety.unchecked and len(safety.concerns) == 2
    checked = nsaid_safety.nsaid_safety(record(lab(LabKind.PLATELETS, 200), lab(LabKind.EGFR, 90)), NOW, CONFIG.context)
    assert checked.safe and not checked.unchecked and checked.concerns == ()


@pytest.mark.parametrize(("fact", "safe"), [
    (anticoagulant(days=180), False),
    (anticoagulant(days=181), True),
    (anticoagulant(days=400, end=NOW + timedelta(days=1)), False),
    (anticoagulant(days=400, end=ago(1)), True),
    (anticoagulant(status="stopped"), True),
    (anticoagulant(source=MedicationSource.STATEMENT), False),
    (anticoagulant(source=MedicationSource.ADMINISTRATION), True),
])
def test_active_anticoagulant_makes_nsaids_unsafe(fact: MedicationFact, safe: bool) -> None:
    labs = (lab(LabKind.PLATELETS, 200), lab(LabKind.EGFR, 90))
    assert nsaid_safety.nsaid_safety(record(fact, *labs), NOW, CONFIG.context).safe is safe


# -- purity --------------------------------------------------------------------------------


def test_assessment_imports_only_the_standard_library_and_itself() -> None:
    forbidden = {"os", "tomllib", "io", "socket", "time"}
    for path in (REPO / "assessment").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "assessment" or (top in sys.stdlib_module_names and top not in forbidden), (
                    f"{path.name} imports {name}"
                )
            assert "now()" not in ast.unparse(node)
        assert ".now(" not in path.read_text("utf-8"), f"{path.name} reads the clock"
