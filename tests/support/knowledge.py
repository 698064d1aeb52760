"""The shipped knowledge for unit tests that map raw FHIR JSON themselves.

One loader for every such test module (the value sets and ``matching.toml`` are read once per
test process, on first use), and :func:`extract`, ``extract_record`` over them.
"""

from __future__ import annotations

import functools
import typing as t
from importlib.resources import files
from pathlib import Path

from assessment.facts import PatientRecord
from fhir_mapping.extract import MatchingConfig, extract_record, load_matching_config
from fhir_mapping.valuesets import ValueSetIndex, load_valueset_files

KNOWLEDGE = Path(str(files("knowledge")))


@functools.cache
def shipped_mapping() -> tuple[ValueSetIndex, MatchingConfig]:
    """The shipped value sets and matching configuration (loaded once)."""
    valuesets = ValueSetIndex.from_resources(load_valueset_files([KNOWLEDGE]))
    return valuesets, load_matching_config([KNOWLEDGE / "matching.toml"])


def extract(*resources: dict[str, t.Any], patient_id: str = "p1", **kwargs: t.Any) -> PatientRecord:
    """``extract_record`` of ``resources`` for ``patient_id`` with the shipped knowledge."""
    valuesets, matching = shipped_mapping()
    return extract_record(list(resources), valuesets, matching, patient_id=patient_id, **kwargs)
