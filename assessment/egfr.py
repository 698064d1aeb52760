"""eGFR from serum creatinine: the race-free CKD-EPI 2021 creatinine equation.

    eGFR = A × min(Scr/κ, 1)^α × max(Scr/κ, 1)^β × C^age × F   (F only for female)

with Scr in mg/dL, age in years and, for the 2021 refit (Inker et al., N Engl J Med
2021;385:1737), A = 142, β = −1.200, C = 0.9938, F = 1.012, κ = 0.7 (female) / 0.9 (male),
α = −0.241 (female) / −0.302 (male). The constants are data (``rules.toml``
``[context.nsaid.ckd_epi_2021]``); this module holds only the arithmetic. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import date, datetime

from assessment.config.types import CkdEpiConstants

__all__ = ["age_in_years", "ckd_epi_2021"]


def ckd_epi_2021(creatinine_mg_dl: float, age: int, *, female: bool, constants: CkdEpiConstants) -> float:
    """Return eGFR in mL/min/1.73 m² for a serum creatinine in mg/dL.

    :raises ValueError: for a creatinine that is not positive or an age below 18 (the
        equation is for adults).
    """
    if creatinine_mg_dl <= 0:
        raise ValueError("creatinine must be positive")
    if age < 18:
        raise ValueError("CKD-EPI 2021 is validated for adults only")
    kappa = constants.kappa_female if female else constants.kappa_male
    alpha = constants.alpha_female if female else constants.alpha_male
    ratio = creatinine_mg_dl / kappa
    # float ** float is typed Any (a negative base gives a complex); ratio > 0 here, so real
    egfr: float = (
        constants.multiplier
        * min(ratio, 1.0) ** alpha
        * max(ratio, 1.0) ** constants.beta
        * constants.age_base**age
    )
    return egfr * constants.female_factor if female else egfr


def age_in_years(birth_date: date, at: datetime) -> int:
    """Return the age in whole years on the calendar day of ``at`` (in its own timezone)."""
    day = at.date()
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
