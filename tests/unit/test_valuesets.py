"""Value set loading, membership, validation, and the shipped knowledge/valuesets files."""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path

import pytest

from fhir_mapping.extract import load_matching_config, validate_matching_config
from fhir_mapping.valuesets import ValueSetIndex, ValueSetLoadError, load_valueset_files, validate_valueset

KNOWLEDGE = Path(str(files("knowledge")))
BASE = "https://backpain-cds.org/fhir/ValueSet/"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"

SHIPPED = load_valueset_files([KNOWLEDGE])


def _vs(url: str = "https://example.org/ValueSet/x", codes: tuple[str, ...] = ("1",), **extra: object) -> dict:
    resource = {
        "resourceType": "ValueSet",
        "url": url,
        "version": "1",
        "title": "X",
        "purpose": "test",
        "compose": {"include": [{"system": SCT, "concept": [{"code": c} for c in codes]}]},
    }
    resource.update(extra)
    return resource


def test_membership_matches_system_and_code() -> None:
    index = ValueSetIndex.from_resources([_vs(codes=("1", "2"))])
    assert index.contains("https://example.org/ValueSet/x", SCT, "1")
    assert not index.contains("https://example.org/ValueSet/x", ICD, "1")
    assert not index.contains("https://example.org/ValueSet/other", SCT, "1")
    assert index.urls == frozenset({"https://example.org/ValueSet/x"})
    assert index.urls_for(SCT, "2") == frozenset({"https://example.org/ValueSet/x"})


def test_a_later_value_set_with_the_same_url_replaces_the_earlier_one() -> None:
    index = ValueSetIndex.from_resources([_vs(codes=("1",)), _vs(codes=("2",))])
    assert not index.contains("https://example.org/ValueSet/x", SCT, "1")
    assert index.contains("https://example.org/ValueSet/x", SCT, "2")


def test_an_expansion_is_indexed_including_nested_contains() -> None:
    resource = {
        "resourceType": "ValueSet",
        "url": "u",
        "expansion": {"contains": [{"system": SCT, "code": "a", "contains": [{"system": SCT, "code": "b"}]}]},
    }
    index = ValueSetIndex.from_resources([resource])
    assert index.contains("u", SCT, "a") and index.contains("u", SCT, "b")


def test_overlay_directory_files_come_after_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "valuesets").mkdir()
    overlay = _vs(url=BASE + "egfr", codes=("9999-9",))
    overlay["compose"]["include"][0]["system"] = LOINC
    (tmp_path / "valuesets" / "egfr.json").write_text(json.dumps(overlay))
    index = ValueSetIndex.from_resources(load_valueset_files([KNOWLEDGE, tmp_path]))
    assert index.contains(BASE + "egfr", LOINC, "9999-9")
    assert not index.contains(BASE + "egfr", LOINC, "98979-8")


def test_loading_a_missing_directory_or_bad_json_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueSetLoadError):
        load_valueset_files([tmp_path / "absent"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueSetLoadError):
        load_valueset_files([tmp_path])


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda r: r.update(resourceType="CodeSystem"), "not a FHIR ValueSet"),
        (lambda r: r.pop("url"), "missing url"),
        (lambda r: r.pop("version"), "missing version"),
        (lambda r: r.pop("title"), "missing title"),
        (lambda r: r.pop("purpose"), "missing purpose"),
        (lambda r: r.pop("compose"), "empty"),
        (lambda r: r["compose"]["include"][0].pop("system"), "has no system"),
        (lambda r: r["compose"]["include"][0].update(concept=[]), "enumerates no concept"),
        (lambda r: r["compose"]["include"][0].update(filter=[{"op": "is-a"}]), "only enumerated"),
        (lambda r: r["compose"]["include"][0]["concept"].append({"display": "no code"}), "no usable code"),
    ],
)
def test_validate_valueset_catches_a_broken_value_set(breakage, expected: str) -> None:
    resource = copy.deepcopy(_vs())
    breakage(resource)
    problems = validate_valueset(resource)
    assert any(expected in problem for problem in problems), problems


def test_a_good_value_set_has_no_problems() -> None:
    assert validate_valueset(_vs()) == []


@pytest.mark.parametrize("resource", SHIPPED, ids=lambda r: r.get("id", "?"))
def test_every_shipped_value_set_validates_and_every_code_has_a_system(resource: dict) -> None:
    assert validate_valueset(resource) == []
    assert resource["url"] == BASE + resource["id"]
    assert resource.get("publisher")
    for include in resource["compose"]["include"]:
        assert include["system"].startswith(("http://", "https://"))
        assert all(concept["code"].strip() == concept["code"] != "" for concept in include["concept"])


def test_value_sets_derived_from_vsac_name_their_source_url_and_version() -> None:
    derived = [r for r in SHIPPED if "VSAC" in r["description"]]
    assert len(derived) >= 10
    for resource in derived:
        sources = [e["valueCanonical"] for e in resource.get("extension", [])]
        assert sources and all(s.startswith("http://cts.nlm.nih.gov/fhir/ValueSet/") and "|" in s for s in sources)


def test_the_shipped_matching_config_binds_only_loaded_value_sets() -> None:
    index = ValueSetIndex.from_resources(SHIPPED)
    config = load_matching_config([KNOWLEDGE / "matching.toml"])
    assert validate_matching_config(config, index) == []
    assert config.bound_valueset_urls() <= index.urls


# Codes CLINICAL.md marks UNVERIFIED or REJECTED (and that no VSAC list verifies): they must be
# covered by text matching only, never by a shipped value set.
UNVERIFIED_OR_REJECTED = [
    (SCT, "162152003"),  # REJECTED: "numbness of lower limb", fails Verhoeff check
    (SCT, "386947003"),  # conflicting filgrastim substance id
    (SCT, "22253001"),  # REJECTED invalid SCTID
    (SCT, "30367100"),  # REJECTED invalid SCTID
    (SCT, "77568009"),  # UNVERIFIED back structure
    (RX, "4192"),  # REJECTED filgrastim
    (RX, "2736"),  # CSF class atom: do not use as a drug match
    # UNVERIFIED Epic-derived "G-CSF" codes (105585 is not here: VSAC lists it as methotrexate)
    (RX, "139825"), (RX, "358810"),
    (RX, "5640"), (RX, "7258"), (RX, "3355"), (RX, "35827"), (RX, "140587"), (RX, "41493"), (RX, "5781"),  # NSAID INs
    (RX, "11289"), (RX, "1364430"), (RX, "1114195"), (RX, "67108"), (RX, "5224"),  # anticoagulant INs
    (RX, "161"), (RX, "28889"),  # paracetamol, loratadine
    (LOINC, "24531-6"), (LOINC, "24532-4"), (LOINC, "24533-2"),  # REJECTED "MR lumbar spine"
    (LOINC, "39638-2"),  # UNVERIFIED NM bone whole body
    (LOINC, "77565-0"),  # BPI interference, not a severity score
    ("http://www.ama-assn.org/go/cpt", "78300"),  # REJECTED as whole-body bone scan
    ("http://www.ama-assn.org/go/cpt", "72141"), ("http://www.ama-assn.org/go/cpt", "72142"),
    ("http://www.ama-assn.org/go/cpt", "72156"),  # UNVERIFIED cervical MRI CPT
    ("http://www.whocc.no/atc", "L03AA15"), ("http://www.whocc.no/atc", "L03AA16"),  # UNVERIFIED ATC
    ("http://www.whocc.no/atc", "L03AA12"),  # ancestim: not a G-CSF
]


def test_no_shipped_value_set_contains_an_unverified_or_rejected_code() -> None:
    index = ValueSetIndex.from_resources(SHIPPED)
    # M62.81 is verified (CODES_2026-12.md) and may sit in generalised-weakness, never in a red-flag set
    allowed = {(ICD, "M62.81"): {BASE + "generalised-weakness"}}
    offending = {code: sorted(index.urls_for(*code) - allowed.get(code, set()))
                 for code in UNVERIFIED_OR_REJECTED if index.urls_for(*code) - allowed.get(code, set())}
    assert offending == {}


def test_vsac_verified_codes_that_clinical_md_lists_as_unverified_are_kept() -> None:
    index = ValueSetIndex.from_resources(SHIPPED)
    assert index.contains(BASE + "platelet-count", LOINC, "26515-7")  # VSAC platelet list wins
    assert index.contains(BASE + "back-pain", ICD, "M54.89")  # VSAC pain list wins
    assert index.contains(BASE + "red-flag-neurological", ICD, "R26.2")  # VSAC neurologic impairment wins
    assert index.contains(BASE + "chemotherapy-dual-use", RX, "105585")  # VSAC: methotrexate (dual-use), not G-CSF
    assert not index.urls_for(RX, "105585") & {BASE + "gcsf-daily", BASE + "gcsf-long-acting"}


def test_large_platelet_and_traumatic_root_injury_codes_are_left_out() -> None:
    index = ValueSetIndex.from_resources(SHIPPED)
    assert not index.contains(BASE + "platelet-count", LOINC, "34167-7")
    assert not index.urls_for(SCT, "212221006")  # Lumbar nerve root injury - L4
    assert not index.contains(BASE + "cancer-malignant", ICD, "D37.1")  # uncertain behaviour, not malignant
