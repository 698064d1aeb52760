"""Card-text checks of the rule configuration: configured numbers as placeholders, literal
numbers refused, summaries that fit by construction, the CKD-EPI 2021 constants.

Mixed into the parser of :mod:`assessment.config.parser` (it supplies ``problem``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from assessment.config.schema import (
    JOINED_TEXT_VARIABLES,
    SHORT_VARIABLE_CHARS,
    SUMMARY_MAX_CHARS,
    SUMMARY_VARIABLE_MAX,
    TEXT_VARIABLES,
    config_placeholder,
)
from assessment.config.types import CkdEpiConstants, Quantity

__all__ = ["CardTextChecks", "number_placeholders"]

_FIELD = re.compile(r"\{[^{}]*\}")
#: a number written in prose (not part of a word, a decimal or a placeholder)
_LITERAL_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d)")


class CardTextChecks:
    """Checks and fills card texts; the host class provides ``problem(where, message)``."""

    problems: list[str]
    numbers: dict[str, tuple[str, str, bool]]
    fallbacks: dict[str, str]
    parsed_texts: dict[str, str]

    def problem(self, where: str, message: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def ckd_epi(self, data: Any) -> CkdEpiConstants | None:
        """``[context.nsaid.ckd_epi_2021]``: the equation's constants (absent: no computed eGFR)."""
        where = "context.nsaid.ckd_epi_2021"
        if data is None:
            return None
        if not isinstance(data, Mapping):
            self.problem(where, "must be a table of the equation's constants")
            return None
        values: dict[str, float] = {}
        for name in (
            "multiplier", "beta", "age_base", "female_factor",
            "kappa_female", "kappa_male", "alpha_female", "alpha_male",
        ):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problem(f"{where}.{name}", f"must be a number, got {value!r}")
                continue
            values[name] = float(value)
        citation = data.get("citation")
        if not isinstance(citation, str) or not citation.strip():
            self.problem(f"{where}.citation", "must name the source of the constants")
        if len(values) < 8:
            return None
        if values["kappa_female"] <= 0 or values["kappa_male"] <= 0 or values["multiplier"] <= 0:
            self.problem(where, "kappa and multiplier must be positive")
            return None
        return CkdEpiConstants(**values, citation=str(citation or ""))

    def register_number(self, key: str, quantity: Quantity) -> None:
        """Make a configured quantity available to card texts as a placeholder."""
        self.numbers.update(number_placeholders(key, key.rsplit(".", 1)[-1], quantity))

    def fill_numbers(self, text: str, numbers: Mapping[str, tuple[str, str, bool]], where: str) -> str:
        """Refuse literal numbers equal to a configured one, then fill the configured numbers'
        placeholders (cards then state the site's values, never a stale copy)."""
        if not text:
            return text
        prose = _FIELD.sub(" ", text)
        configured: dict[float, str] = {}
        for name, (shown, key, check) in numbers.items():
            if check:
                configured.setdefault(float(shown), f"{key} (use {{{name}}})")
        for match in _LITERAL_NUMBER.finditer(prose):
            clash = configured.get(float(match.group()))
            if clash is not None:
                line = prose[max(0, match.start() - 30) : match.end() + 30].replace("\n", " ").strip()
                self.problem(
                    where,
                    f"literal number {match.group()} in card text equals the configured {clash}: "
                    f"...{line}...",
                )

        def number(found: re.Match[str]) -> str:
            name = found.group()[1:-1]
            return numbers[name][0] if name in numbers else found.group()

        return _FIELD.sub(number, text)

    def summary_fallbacks(self, data: Any) -> dict[str, str]:
        if not isinstance(data, Mapping):
            self.problem("summary_fallbacks", "must be a table of variable = short text")
            return {}
        out: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(value, str) or not value.strip() or "{" in value:
                self.problem(f"summary_fallbacks.{key}", "must be a short text without braces")
            elif len(value) > SUMMARY_VARIABLE_MAX:
                self.problem(f"summary_fallbacks.{key}", f"must be at most {SUMMARY_VARIABLE_MAX} characters")
            else:
                out[str(key)] = value
        return out

    def summary_fits(self, summary: str, allowed: frozenset[str], where: str) -> None:
        """Every summary fits in SUMMARY_MAX_CHARS by construction: each variable is at most
        SUMMARY_VARIABLE_MAX characters (longer values give way to their fallback)."""
        try:
            parsed = list(string.Formatter().parse(summary))
        except ValueError:
            return  # reported by template()
        length = 0
        for literal, name, _, _ in parsed:
            length += len(literal)
            if name is None:
                continue
            if name in SHORT_VARIABLE_CHARS:
                length += SHORT_VARIABLE_CHARS[name]
                continue
            if name in JOINED_TEXT_VARIABLES:
                keys = JOINED_TEXT_VARIABLES[name]
                length += sum(len(self.parsed_texts.get(k, "")) for k in keys) + 6 * len(keys)
                continue
            if name in TEXT_VARIABLES:
                length += max(len(self.parsed_texts.get(k, "")) for k in TEXT_VARIABLES[name])
                continue
            if name in allowed and name not in self.fallbacks:
                self.problem(
                    where,
                    f"placeholder {{{name}}} needs a [summary_fallbacks] entry (used when the "
                    f"value is longer than {SUMMARY_VARIABLE_MAX} characters)",
                )
            length += SUMMARY_VARIABLE_MAX
        if length > SUMMARY_MAX_CHARS:
            self.problem(
                where,
                f"can reach {length} characters with {SUMMARY_VARIABLE_MAX}-character values; "
                f"it must fit in {SUMMARY_MAX_CHARS}",
            )



def number_placeholders(key: str, name: str, quantity: Quantity) -> dict[str, tuple[str, str, bool]]:
    """Placeholder -> (value as shown, config key, literal check) for one quantity. Durations
    get both a ``_days`` and an ``_hours`` placeholder; only the configured unit's number is
    refused as a literal (14 d refuses "14", not "336")."""
    if quantity.unit in ("d", "h"):
        seconds = quantity.as_timedelta().total_seconds()
        return {
            config_placeholder(name, "d"): (f"{seconds / 86400:g}", key, quantity.unit == "d"),
            config_placeholder(name, "h"): (f"{seconds / 3600:g}", key, quantity.unit == "h"),
        }
    return {config_placeholder(name, quantity.unit): (f"{quantity.value:g}", key, True)}
