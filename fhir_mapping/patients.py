"""Patient -> birth date and administrative sex (for eGFR computed from creatinine)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from datetime import date

__all__ = ["patient_demographics"]

_SEXES = frozenset({"female", "male"})


def patient_demographics(resource: Mapping[str, t.Any]) -> tuple[date | None, str | None]:
    """Return (birthDate, gender) when known: a full ``YYYY-MM-DD`` birth date (a year or a
    year-month is not enough to compute an age), and gender ``female`` or ``male`` only (the
    CKD-EPI equation has no term for ``other``/``unknown``)."""
    birth = resource.get("birthDate")
    born = None
    if isinstance(birth, str) and len(birth) == 10:
        try:
            born = date.fromisoformat(birth)
        except ValueError:
            born = None
    gender = resource.get("gender")
    return born, gender if gender in _SEXES else None
