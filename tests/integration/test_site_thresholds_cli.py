"""A site overlay changes every number its cards state (issue 11 deliverable 4), tried as an
informaticist would: an overlay directory, `check-config`, then `replay` of fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from backpain_cds.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
NOW = "2025-03-10T09:00:00Z"

RULES_OVERLAY = """
[context.nsaid]
platelets_below = { value = 75, unit = "10*9/L" }
lab_lookback = { value = 7, unit = "d" }
"""
ACTIONS_OVERLAY = """
[actions.mri-whole-spine-stat]
within = { value = 12, unit = "h" }
"""


def _site(tmp_path: Path, rules: str = RULES_OVERLAY, actions: str = ACTIONS_OVERLAY) -> str:
    overlay = tmp_path / "site"
    overlay.mkdir(exist_ok=True)
    (overlay / "rules.toml").write_text(rules)
    (overlay / "actions.toml").write_text(actions)
    config = tmp_path / "config.toml"
    config.write_text(f'[knowledge]\npath = "{overlay}"\n')
    return str(config)


def _cards(config: str, fixture: str, hook: str, capsys) -> list[dict]:
    assert main(["replay", str(FIXTURES / fixture), "--config", config, "--now", NOW, "--hook", hook, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def test_an_overlay_changes_the_numbers_every_card_states(tmp_path, capsys) -> None:
    config = _site(tmp_path)
    assert main(["check-config", "--config", config]) == 0
    capsys.readouterr()
    (mscc,) = _cards(config, "in-mscc-red-flags-text-both-legs-feel-weak.json", "patient-view", capsys)
    assert "within 12 h" in mscc["summary"] and "24" not in mscc["summary"]
    assert "**12 hours**" in mscc["detail"]
    assert [s["label"] for s in mscc["suggestions"]] == ["Order MRI of the whole spine within 12 hours (suspected MSCC)"]
    (nsaid,) = _cards(config, "in-nsaid-caution-post-chemo-platelets-49.json", "order-sign", capsys)
    text = " ".join((nsaid["summary"] + " " + nsaid["detail"]).split())
    assert "below 75" in text and "below 50" not in text
    assert "14 days" not in text


def test_a_literal_copy_of_a_configured_number_fails_check_config(tmp_path, capsys) -> None:
    rules = RULES_OVERLAY + '\n[texts]\nnsaid_advice_unchecked = "Check platelets: none in the last 7 days."\n'
    actions = ACTIONS_OVERLAY + 'label = "Order MRI of the whole spine within 12 hours"\n'
    config = _site(tmp_path, rules, actions)
    assert main(["check-config", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "literal number 7 in card text equals the configured" in out  # lab_lookback (and severe_score) are 7
    assert "literal number 12 equals within" in out
