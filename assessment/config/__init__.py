"""Typed rule configuration: windows, thresholds, citations and card texts from ``rules.toml``.

The caller reads the TOML (and any site overlay, deep-merged over it by
:func:`fhir_mapping.overlay.merge_overlay`) and passes the parsed mapping here; this package never touches files. :func:`parse_rule_config`
turns the mapping into a frozen :class:`RuleConfig` or raises :class:`RuleConfigError` listing
every problem; :func:`validate_rule_config` returns the problems instead, and can also check
references to value sets and card actions that live in other knowledge files.

Split by concept: :mod:`~assessment.config.types` (the frozen dataclasses),
:mod:`~assessment.config.schema` (rule ids, card-text variables, quantities and units the file
must carry), :mod:`~assessment.config.parser` (parse, validate) and
:mod:`~assessment.config.text` (the card-text checks the parser mixes in). The names below are
the ones the rest of the service imports from here; everything else comes from its module.
"""

from __future__ import annotations

from assessment.config.parser import RuleConfigError, parse_rule_config, validate_rule_config
from assessment.config.schema import RULE_IDS
from assessment.config.types import CardText, ContextSettings, Quantity, RuleConfig, RuleSettings

__all__ = [
    "RULE_IDS",
    "CardText",
    "ContextSettings",
    "Quantity",
    "RuleConfig",
    "RuleConfigError",
    "RuleSettings",
    "parse_rule_config",
    "validate_rule_config",
]
