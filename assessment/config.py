"""Typed rule configuration: windows, thresholds, citations and card texts from ``rules.toml``.

The caller reads the TOML (and any site overlay, merged with :func:`merge_rule_config`) and
passes the parsed mapping here; this module never touches files. :func:`parse_rule_config`
turns the mapping into a frozen :class:`RuleConfig` or raises :class:`RuleConfigError` listing
every problem; :func:`validate_rule_config` returns the problems instead, and can also check
references to value sets and card actions that live in other knowledge files.

The implementation is split by concept, and the names in ``__all__`` are re-exported here so
that ``assessment.config`` is the one import path for callers: :mod:`assessment.config_types`
(the frozen dataclasses), :mod:`assessment.config_schema` (rule ids, card-text variables,
quantities and units the file must carry) and :mod:`assessment.config_parser` (merge, parse,
validate).
"""

from __future__ import annotations

from assessment.config_parser import RuleConfigError, merge_rule_config, parse_rule_config, validate_rule_config
from assessment.config_schema import ALLOWED_UNITS, RULE_IDS, RULE_VARIABLES
from assessment.config_types import (
    CardText,
    ContextSettings,
    GcsfWindowSettings,
    NsaidSafetySettings,
    Quantity,
    RuleConfig,
    RuleSettings,
)

__all__ = [
    "ALLOWED_UNITS",
    "RULE_IDS",
    "RULE_VARIABLES",
    "CardText",
    "ContextSettings",
    "GcsfWindowSettings",
    "NsaidSafetySettings",
    "Quantity",
    "RuleConfig",
    "RuleConfigError",
    "RuleSettings",
    "merge_rule_config",
    "parse_rule_config",
    "validate_rule_config",
]

