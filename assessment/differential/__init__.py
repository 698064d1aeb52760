"""The detail view's differential: the seed leaflet's causes of back pain after chemotherapy
(G-CSF timing, chemotherapy side effects, spread to the spine, posture / non-specific), each
with the facts for and against it from the record. Pure, like the rest of ``assessment``."""

from assessment.differential.causes import Cause, Differential, Fact, build_differential
from assessment.differential.config import (
    CAUSE_KEYS,
    FACT_VARIABLES,
    AgentGroup,
    CauseText,
    DifferentialConfig,
    DifferentialConfigError,
    parse_differential_config,
)

__all__ = [
    "CAUSE_KEYS",
    "FACT_VARIABLES",
    "AgentGroup",
    "Cause",
    "CauseText",
    "Differential",
    "DifferentialConfig",
    "DifferentialConfigError",
    "Fact",
    "build_differential",
    "parse_differential_config",
]
