"""Pure clinical reasoning: facts + now + rule config -> findings.

Import rule: standard library and this package only (no Flask, FHIR JSON, clock, env or I/O).
"""

from assessment.config import (
    CardText,
    Quantity,
    RuleConfig,
    RuleConfigError,
    RuleSettings,
    parse_rule_config,
    validate_rule_config,
)
from assessment.engine import UnsupportedHookError, assess
from assessment.findings import Assessment, Citation, Finding, Indicator, Reason

__all__ = [
    "Assessment",
    "CardText",
    "Citation",
    "Finding",
    "Indicator",
    "Quantity",
    "Reason",
    "RuleConfig",
    "RuleConfigError",
    "RuleSettings",
    "UnsupportedHookError",
    "assess",
    "parse_rule_config",
    "validate_rule_config",
]
