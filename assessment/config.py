"""Typed rule configuration: windows, thresholds, citations and card texts from ``rules.toml``.

The caller reads the TOML (and any site overlay, merged with :func:`merge_rule_config`) and
passes the parsed mapping here; this module never touches files. :func:`parse_rule_config`
turns the mapping into a frozen :class:`RuleConfig` or raises :class:`RuleConfigError` listing
every problem; :func:`validate_rule_config` returns the problems instead, and can also check
references to value sets and card actions that live in other knowledge files.

The implementation is split by concept, and every name is re-exported here so that
``assessment.config`` stays the one import path: :mod:`assessment.config_types` (the frozen
dataclasses), :mod:`assessment.config_schema` (rule ids, card-text variables, quantities and
units the file must carry) and :mod:`assessment.config_parser` (merge, parse, validate).
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

# Names that lived in this module before it was split but are not in __all__ (unlisted
# constants, private helpers); still importable from here.
from assessment.config_parser import _PLACEHOLDER, _SEMVER, _copy, _Parser, _string_list  # noqa: F401
from assessment.config_schema import (  # noqa: F401
    COUNT_UNITS,
    EGFR_UNITS,
    PLATELET_UNITS,
    SCORE_UNITS,
    SUMMARY_WARN_CHARS,
    TIME_UNITS,
    _CONTEXT_QUANTITIES,
    _CONTEXT_STATUS_LISTS,
    _EXTRA_INDICATORS,
    _GCSF_QUANTITIES,
    _NSAID_QUANTITIES,
    _RULE_QUANTITIES,
    _TEXT_KEYS,
    _TRIAGE_VARIABLES,
)
from assessment.findings import Citation, Indicator  # noqa: F401

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

