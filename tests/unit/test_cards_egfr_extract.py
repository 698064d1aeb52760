"""eGFR from creatinine, from FHIR JSON: Patient birthDate/gender and a serum creatinine
Observation (mg/dL or µmol/L) reach the record; only the call's own Patient counts."""

from __future__ import annotations

from datetime import date

import pytest

from assessment.facts import LabKind
from tests.support.knowledge import extract
from tests.unit.test_extract_record import LOINC


def creatinine(value: float, unit: str, rid: str = "scr") -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": LOINC, "code": "2160-0"}]}, "effectiveDateTime": "2025-03-09T08:00:00Z",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


@pytest.mark.parametrize(("value", "unit", "mg_dl"), [(1.2, "mg/dL", 1.2), (106.1, "umol/L", 1.2)])
def test_serum_creatinine_is_read_in_mg_per_dl(value: float, unit: str, mg_dl: float) -> None:
    (lab,) = extract(creatinine(value, unit)).labs
    assert lab.kind is LabKind.CREATININE and lab.value == pytest.approx(mg_dl, abs=0.01)


def test_the_patients_birth_date_and_sex_are_read_but_not_another_patients() -> None:
    own = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-06-01", "gender": "female"}
    other = {"resourceType": "Patient", "id": "p2", "birthDate": "1990-01-01", "gender": "male"}
    record = extract(other, own)
    assert (record.birth_date, record.sex) == (date(1950, 6, 1), "female")
    assert extract(other).birth_date is None
