"""CLINICAL.md *Red flag*: a red flag counts with active back pain of ANY onset or a known
bone/spinal metastasis (months of back pain + a new deficit is the classic MSCC history)."""

from __future__ import annotations

import pytest

from assessment.facts import ClinicalKind
from assessment.findings import Indicator
from tests.unit.test_rules_common import back_pain, bone_mets, cancer, card, fired, red_flag, run

MSCC = "mscc-red-flags"


@pytest.mark.parametrize("pain_days", [61, 120, 400])
def test_old_back_pain_and_new_red_flag_is_critical(pain_days: int) -> None:
    result = run(cancer(), back_pain(days=pain_days), red_flag(days=1))
    found = card(result)
    assert found is not None and found.rule_id == MSCC and found.indicator is Indicator.CRITICAL


def test_old_back_pain_and_new_retention_is_critical() -> None:
    flag = red_flag(kind=ClinicalKind.RED_FLAG_SPHINCTER, label="Unable to void, bladder scan 900 mL")
    assert fired(run(cancer(), back_pain(days=150), flag))[0] == MSCC


def test_old_back_pain_without_red_flag_still_gives_no_card() -> None:
    result = run(cancer(), back_pain(days=61))
    assert result.findings == () and any("no back pain" in note for note in result.notes)


def test_old_back_pain_and_red_flag_outside_lookback_gives_no_card() -> None:
    assert run(cancer(), back_pain(days=120), red_flag(days=15)).findings == ()


def test_resolved_old_back_pain_does_not_count() -> None:
    assert run(cancer(), back_pain(days=120, status="resolved"), red_flag(days=1)).findings == ()


def test_known_metastasis_and_red_flag_without_back_pain_is_critical() -> None:
    found = card(run(cancer(), bone_mets(), red_flag(days=2)))
    assert found is not None and found.rule_id == MSCC and found.indicator is Indicator.CRITICAL


def test_red_flag_without_back_pain_or_metastasis_still_gives_no_card() -> None:
    assert run(cancer(), red_flag(days=2)).findings == ()


def test_old_back_pain_and_red_flag_without_oncology_context_gives_no_card() -> None:
    assert run(back_pain(days=120), red_flag(days=1)).findings == ()
