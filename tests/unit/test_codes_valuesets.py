"""CODES_2026-12.md codes in the shipped value sets (and the ones that must stay out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assessment.facts import ClinicalKind, Confidence, DrugClass, GcsfClass
from tests.support.knowledge import KNOWLEDGE, extract, shipped_mapping
from tests.unit.test_codes_support import ATC, ICD, LOINC, RX, SCT, administration, coded

VALUESETS, _ = shipped_mapping()

BASE = "https://backpain-cds.org/fhir/ValueSet/"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
REPO = Path(__file__).resolve().parents[2]


def _display(vid: str, code: str) -> str:
    data = json.loads((KNOWLEDGE / "valuesets" / f"{vid}.json").read_text())
    return next(c.get("display", "") for inc in data["compose"]["include"] for c in inc["concept"] if c["code"] == code)


@pytest.mark.parametrize("vid, code, display", [
    ("gcsf-daily", "727537", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe [Neupogen]"),
    ("gcsf-daily", "727545", "0.8 ML filgrastim 0.6 MG/ML Prefilled Syringe [Neupogen]"),
    ("gcsf-long-acting", "2549333", "0.6 ML pegfilgrastim 10 MG/ML Injection [Neulasta]"),
    ("gcsf-daily", "2595961", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe"),
    ("gcsf-daily", "2595962", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe [Releuko]"),
])
def test_the_four_wrong_displays_are_fixed(vid: str, code: str, display: str) -> None:
    assert _display(vid, code) == display


def test_about_140_rxnorm_gcsf_concepts_incl_releuko_and_fylnetra() -> None:
    long_acting = {c for s, c in VALUESETS.members(BASE + "gcsf-long-acting") if s == RX}
    daily = {c for s, c in VALUESETS.members(BASE + "gcsf-daily") if s == RX}
    assert len(long_acting | daily) >= 138
    assert {"2602779", "2602781", "2602783", "2602787"} <= long_acting  # Fylnetra set
    assert {"2595942", "2595946", "2595950", "2595962"} <= daily  # Releuko set
    assert {"1433764", "1440046", "70167"} <= long_acting | daily  # tbo-filgrastim, lipeg-, lenograstim INs
    assert "1440046" in long_acting and "1746487" not in long_acting | daily  # pegbovigrastim is veterinary


def test_only_verified_hcpcs_gcsf_codes_are_enumerated() -> None:
    assert VALUESETS.contains(BASE + "gcsf-long-acting", HCPCS, "J2505")
    assert VALUESETS.contains(BASE + "gcsf-daily", HCPCS, "J1442")
    for code in ("J2506", "J1447", "J1449", "J9361", "Q5101", "Q5108", "Q5110", "Q5111", "Q5120", "Q5122",
                 "Q5125", "Q5127", "Q5130", "Q5148", "J3590"):
        assert not VALUESETS.urls_for(HCPCS, code), code


@pytest.mark.parametrize("system", [
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "urn:oid:2.16.840.1.113883.6.285",
    "http://www.nlm.nih.gov/research/umls/hcpcs",
])
def test_hcpcs_j2505_without_display_is_recognised_under_every_hcpcs_uri(system: str) -> None:
    (fact,) = extract(administration("a", coded(system, "J2505"), 1)).medications
    assert fact.drug_class is DrugClass.GCSF and fact.gcsf_class is GcsfClass.LONG_ACTING
    assert fact.confidence is Confidence.CODED


def test_unverified_hcpcs_q5108_is_seen_only_through_its_drug_name() -> None:
    assert extract(administration("a", coded(HCPCS, "Q5108"), 1)).medications == ()
    (fact,) = extract(administration("a", coded(HCPCS, "Q5108", "Fulphila 6 mg"), 1)).medications
    assert fact.gcsf_class is GcsfClass.LONG_ACTING and fact.confidence is Confidence.TEXT


@pytest.mark.parametrize("code, kind", [
    ("G82.20", ClinicalKind.RED_FLAG_NEURO), ("G82.21", ClinicalKind.RED_FLAG_NEURO), ("G82.22", ClinicalKind.RED_FLAG_NEURO),
    ("G83.11", ClinicalKind.RED_FLAG_NEURO), ("R20.2", ClinicalKind.RED_FLAG_NEURO), ("R20.1", ClinicalKind.RED_FLAG_NEURO),
    ("G83.4", ClinicalKind.MSCC), ("G95.20", ClinicalKind.MSCC), ("G95.29", ClinicalKind.MSCC),
    ("R33.9", ClinicalKind.RED_FLAG_SPHINCTER), ("R32", ClinicalKind.RED_FLAG_SPHINCTER),
    ("R15.9", ClinicalKind.RED_FLAG_SPHINCTER), ("N31.9", ClinicalKind.RED_FLAG_SPHINCTER),
])
def test_red_flag_icd10cm_codes_are_recognised(code: str, kind: ClinicalKind) -> None:
    from tests.unit.test_codes_support import condition
    facts = extract(condition("c", coded(ICD, code), 1)).clinical
    assert kind in {f.kind for f in facts}


def test_headers_and_non_red_flag_codes_stay_out_of_the_red_flag_sets() -> None:
    red = {BASE + v for v in ("red-flag-neurological", "red-flag-bladder-bowel", "mscc-diagnosis")}
    for code in ("G82.2", "G95.2", "R39.1", "R39.19", "R15", "R20", "R33", "R15.0", "R15.1", "R15.2",
                 "M62.81", "R53.1", "R39.11"):
        assert not (VALUESETS.urls_for(ICD, code) & red), code
    assert VALUESETS.contains(BASE + "red-flag-neurological", SCT, "449813001")  # saddle numbness
    assert not VALUESETS.urls_for(SCT, "71286001")  # spinal cord compression: UNVERIFIED


def test_egfr_is_the_vsac_set_without_33914_3_and_creatinine_is_2160_0() -> None:
    egfr = {c for _, c in VALUESETS.members(BASE + "egfr")}
    assert "33914-3" not in egfr
    assert {"98979-8", "62238-1", "48642-3", "48643-1", "77147-7", "98980-6"} <= egfr and len(egfr) == 13
    assert VALUESETS.members(BASE + "creatinine") == frozenset({(LOINC, "2160-0")})


def test_antineoplastic_ingredient_codes() -> None:
    chemo = {c for s, c in VALUESETS.members(BASE + "chemotherapy-medications") if s == RX}
    dual = VALUESETS.members(BASE + "chemotherapy-dual-use")
    assert {"40048", "12574", "4179", "5657", "3041", "134547", "56946", "32592", "4492", "1828", "6718",
            "24698", "10473", "2105"} <= chemo
    assert {(RX, "3002"), (RX, "6851"), (ATC, "L01AA01"), (ATC, "L01BA01"), (ATC, "L01FA01")} <= dual
    assert not ({"3002", "6851"} & chemo)
    assert not VALUESETS.urls_for(RX, "2555") and not VALUESETS.urls_for(RX, "68446")  # single-source INs


def test_hand_picked_rows_record_grade_and_source() -> None:
    data = json.loads((KNOWLEDGE / "valuesets" / "gcsf-long-acting.json").read_text())
    concept = next(c for inc in data["compose"]["include"] for c in inc["concept"] if c["code"] == "2602787")
    urls = {e["url"]: e.get("valueCode") or e.get("valueString") for e in concept["extension"]}
    assert urls["https://backpain-cds.org/fhir/StructureDefinition/verification-status"] == "VERIFIED-A"
    assert "CIBMTR" in urls["https://backpain-cds.org/fhir/StructureDefinition/code-source"]


def test_build_valuesets_check_mode_finds_the_committed_files_current() -> None:
    vsac = next((d for d in (REPO.parent / "shared/data/vsac", REPO.parent.parent / "shared/data/vsac") if d.is_dir()), None)
    if vsac is None:
        pytest.skip("VSAC source folder (../shared/data/vsac) not available")
    done = subprocess.run([sys.executable, "tools/build_valuesets.py", "--check", str(vsac)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_generalised_weakness_has_its_own_set_outside_the_red_flag_sets() -> None:
    members = VALUESETS.members(BASE + "generalised-weakness")
    assert {(ICD, "M62.81"), (ICD, "R53.1"), (SCT, "26544005")} == members
    assert VALUESETS.urls_for(ICD, "M62.81") == frozenset({BASE + "generalised-weakness"})
    assert VALUESETS.urls_for(ICD, "R53.1") == frozenset({BASE + "generalised-weakness"})
