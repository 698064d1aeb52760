"""Scenario fixtures (tests/fixtures): replay against the expected cards, prefetch vs no-prefetch,
and the generated clinical-validation table.

1. Every fixture through ``backpain-cds replay FILE --now NOW --hook HOOK --expect FILE.expected.json``
   (``backpain_cds.cli.main`` in-process; one also as a subprocess).
2. Every fixture with **no prefetch**: the bundle is loaded into the live sekmet-fhir server
   (drafts of order-hook fixtures are not stored, they go in ``context.draftOrders``) and the
   service fetches everything from ``fhirServer``; the cards must equal the prefetch run's.
3. ``tools/clinical_validation.py --check`` (CI fails when docs/clinical-validation.md is stale)
   and ``tools/build_fixtures.py --check`` (the committed fixtures are what the generator makes).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from assessment.config import RULE_IDS
from backpain_cds.app import build_service
from backpain_cds.cli import main
from backpain_cds.replay import build_call
from backpain_cds.settings import Settings
from fhir_mapping.knowledge import load_knowledge
from tools.harness.sekmet import FhirTestServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NOW_ISO = "2025-03-10T09:00:00Z"
RULES = RULE_IDS
ORDER_HOOKS = ("order-select", "order-sign")
FIXTURE_TAG_DISPLAY = "backpain-cds test fixture"
NAPROXEN_LABEL = "Prescribe naproxen"

BUNDLES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
IDS = [p.name[: -len(".json")] for p in BUNDLES]


def _expected_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name[: -len(".json")] + ".expected.json")


def _expected(bundle: Path) -> dict[str, Any]:
    return json.loads(_expected_path(bundle).read_text())


def _bundle(name: str) -> Path:
    return FIXTURES / f"{name}.json"


def _patient_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]


# -- the fixture set itself -----------------------------------------------------------------


def test_every_rule_has_at_least_four_in_and_four_out_fixtures() -> None:
    names = [p.name for p in BUNDLES]
    for rule in RULES:
        ins = [n for n in names if n.startswith(f"in-{rule}-")]
        outs = [n for n in names if n.startswith(f"out-{rule}-")]
        assert len(ins) >= 4 and len(outs) >= 4, (rule, ins, outs)
    unknown = [n for n in names if not any(n.startswith((f"in-{r}-", f"out-{r}-")) for r in RULES)]
    assert unknown == []


def test_every_fixture_is_tagged_has_an_expected_file_and_its_own_patient() -> None:
    seen: dict[str, str] = {}
    for path in BUNDLES:
        bundle = json.loads(path.read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction", path.name
        tags = [t.get("display", "") for t in bundle.get("meta", {}).get("tag", [])]
        assert any(FIXTURE_TAG_DISPLAY in t for t in tags), path.name
        expected = _expected(path)
        assert expected["description"] and expected["hook"] in ("patient-view", "encounter-start", *ORDER_HOOKS)
        assert expected.get("now", NOW_ISO) == NOW_ISO, "one evaluation time for every fixture"
        assert isinstance(expected["cards"], list)
        rule_of_name = next(r for r in RULES if path.name.startswith((f"in-{r}-", f"out-{r}-")))
        fired = {c["rule"] for c in expected["cards"]}
        assert (rule_of_name in fired) == path.name.startswith("in-"), path.name
        (patient,) = _patient_ids(bundle)
        assert patient not in seen, f"{path.name} and {seen.get(patient)} share Patient/{patient}"
        seen[patient] = path.name


def test_fixtures_are_what_the_generator_builds() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_fixtures.py"), "--check"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# -- 1. replay with prefetch ------------------------------------------------------------------


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_replay_matches_the_expected_cards(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = _expected(bundle)["hook"]
    status = main(["replay", str(bundle), "--now", NOW_ISO, "--hook", hook, "--expect", str(_expected_path(bundle))])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"OK {bundle}" in out


def test_replay_as_a_subprocess_passes_and_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    bundle = _bundle("in-gcsf-bone-pain-contained-pegfilgrastim")
    command = [sys.executable, "-m", "backpain_cds.cli", "replay", str(bundle), "--now", NOW_ISO]
    ok = subprocess.run([*command, "--expect", str(_expected_path(bundle))], capture_output=True, text=True,
                        timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "gcsf-bone-pain" in ok.stdout and "OK " in ok.stdout
    wrong = _expected_path(_bundle("out-gcsf-bone-pain-gcsf-20-days-ago"))  # expects supportive care
    bad = subprocess.run([*command, "--expect", str(wrong)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 1
    assert "missing card: back-pain-supportive-care" in bad.stdout
    assert "unexpected card: gcsf-bone-pain" in bad.stdout


def _replay_json(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    bundle = _bundle(name)
    assert main(["replay", str(bundle), "--now", NOW_ISO, "--hook", _expected(bundle)["hook"], "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _only_card(response: dict[str, Any], rule: str) -> dict[str, Any]:
    (card,) = response["cards"]
    assert card["extension"]["backpain-cds"]["rule"] == rule
    return card


def test_low_platelets_remove_the_naproxen_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    card = _only_card(_replay_json("in-gcsf-bone-pain-low-platelets-no-naproxen", capsys), "gcsf-bone-pain")
    labels = [s["label"] for s in card.get("suggestions", [])]
    assert labels and not any("naproxen" in label.lower() for label in labels), labels
    assert any("paracetamol" in label.lower() for label in labels)
    assert "Avoid NSAIDs" in card["detail"]
    assert "Observation/bpfx-g3-platelets" in json.dumps(card)
    # the same picture with normal labs does offer naproxen
    safe = _only_card(_replay_json("in-gcsf-bone-pain-severe-warning", capsys), "gcsf-bone-pain")
    assert any(s["label"].startswith(NAPROXEN_LABEL) for s in safe["suggestions"])


def test_thoracic_pain_with_a_low_score_asks_for_imaging(capsys: pytest.CaptureFixture[str]) -> None:
    card = _only_card(_replay_json("in-progressive-back-pain-thoracic-low-score", capsys), "progressive-back-pain")
    assert "thoracic or cervical site" in card["detail"]
    assert "Condition/bpfx-p1-backpain" in card["extension"]["backpain-cds"]["evidence"]


def test_contained_pegfilgrastim_is_evidence_of_the_gcsf_card(capsys: pytest.CaptureFixture[str]) -> None:
    card = _only_card(_replay_json("in-gcsf-bone-pain-contained-pegfilgrastim", capsys), "gcsf-bone-pain")
    assert "MedicationAdministration/bpfx-g1-peg-admin" in card["extension"]["backpain-cds"]["evidence"]


# -- 2. the same fixtures with no prefetch, data from sekmet --------------------------------------


def _comparable(response: dict[str, Any]) -> list[dict[str, Any]]:
    """What must not differ between the prefetch and the no-prefetch run (no uuids)."""
    cards = []
    for card in response.get("cards", []):
        ext = card.get("extension", {}).get("backpain-cds", {})
        cards.append({
            "rule": ext.get("rule"),
            "indicator": card.get("indicator"),
            "summary": card.get("summary"),
            "evidence": sorted(ext.get("evidence", [])),
            "suggestions": [s.get("label") for s in card.get("suggestions", [])],
            "detail": card.get("detail"),
        })
    return sorted(cards, key=lambda c: (c["rule"], c["indicator"]))


def _stored_part(bundle: dict[str, Any], hook: str) -> dict[str, Any]:
    """The transaction to load: without the draft orders of an order-hook fixture."""
    stored = copy.deepcopy(bundle)
    if hook in ORDER_HOOKS:
        stored["entry"] = [e for e in stored["entry"] if e["resource"].get("status") != "draft"]
    return stored


@pytest.fixture(scope="module")
def sekmet_service(fhir_server: FhirTestServer):
    settings = Settings.from_mapping({"fhir": {"allowed_servers": [fhir_server.base_url], "timeout_seconds": 30,
                                                "overall_timeout_seconds": 60}})
    # no hook deadline: a slow test machine must not turn into "no cards"
    return build_service(settings, load_knowledge(), apply_deadline=False)


@pytest.mark.fhir_server
@pytest.mark.parametrize("path", BUNDLES, ids=IDS)
def test_no_prefetch_gives_the_same_cards_as_prefetch(
    path: Path, fhir_server: FhirTestServer, sekmet_service  # noqa: F811
) -> None:
    bundle = json.loads(path.read_text())
    expected = _expected(path)
    hook = expected["hook"]
    fhir_server.load(_stored_part(bundle, hook))

    call = build_call(bundle, sekmet_service.catalog, service_id=None, hook=hook)
    with_prefetch = sekmet_service.invoke(call.service_id, call.body, now=NOW).response

    body = copy.deepcopy(call.body)
    del body["prefetch"]
    body["fhirServer"] = fhir_server.base_url
    if hook in ORDER_HOOKS:  # the drafts are only in the request, never in the server
        assert all(e["resource"]["status"] == "draft" for e in body["context"]["draftOrders"]["entry"])
    without_prefetch = sekmet_service.invoke(call.service_id, body, now=NOW).response

    assert _comparable(without_prefetch) == _comparable(with_prefetch)
    fired = Counter((c["rule"], c["indicator"]) for c in _comparable(without_prefetch))
    assert fired == Counter((c["rule"], c["indicator"]) for c in expected["cards"])


@pytest.mark.fhir_server
def test_a_red_flag_observation_without_category_is_found_without_prefetch(
    fhir_server: FhirTestServer, sekmet_service  # noqa: F811
) -> None:
    bundle = json.loads(_bundle("in-mscc-red-flags-leg-weakness-observation").read_text())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        resource["id"] = resource["id"].replace("bpfx-m2", "bpfx-nocat")
        entry["request"]["url"] = f"{resource['resourceType']}/{resource['id']}"
        entry["fullUrl"] = entry["request"]["url"]
        if "subject" in resource:
            resource["subject"]["reference"] = "Patient/bpfx-nocat"
        if resource["id"] == "bpfx-nocat-weakness":
            del resource["category"]
    fhir_server.load(bundle)
    call = build_call(bundle, sekmet_service.catalog, service_id=None, hook="patient-view")
    assert _comparable(sekmet_service.invoke(call.service_id, call.body, now=NOW).response)[0]["rule"] == "mscc-red-flags"
    body = copy.deepcopy(call.body)
    del body["prefetch"]
    body["fhirServer"] = fhir_server.base_url
    cards = _comparable(sekmet_service.invoke(call.service_id, body, now=NOW).response)
    assert [c["rule"] for c in cards] == ["mscc-red-flags"]


# -- 3. the generated clinical-validation table ------------------------------------------------------


def test_clinical_validation_table_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "clinical_validation.py"), "--check"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\nregenerate with: python tools/clinical_validation.py"
    )
    table = (ROOT / "docs" / "clinical-validation.md").read_text()
    assert "| FAIL |" not in table
    for name in IDS:
        assert f"`{name}`" in table
