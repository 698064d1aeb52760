"""Reading ``/metrics`` in tests: samples by name and labels, and the label allow-list.

The allow-list is written out here on purpose (not imported from ``backpain_cds.metrics``):
a new label or label value must be added here deliberately, after checking it cannot carry
patient data.
"""

from __future__ import annotations

import re
import typing as t

from prometheus_client.parser import text_string_to_metric_families

from assessment.config import RULE_IDS
from cds_hooks.catalog import SUPPORTED_HOOKS

Labels = frozenset[tuple[str, str]]

#: metric family -> the label names its samples may carry (``le`` for histogram buckets)
FAMILIES: dict[str, frozenset[str]] = {
    "backpain_cds_hook_calls": frozenset({"service", "hook", "status"}),
    "backpain_cds_hook_call_seconds": frozenset({"service", "hook", "status", "le"}),
    "backpain_cds_stage_seconds": frozenset({"stage", "le"}),
    "backpain_cds_cards": frozenset({"rule", "indicator"}),
    "backpain_cds_cards_suppressed": frozenset({"rule", "reason"}),
    "backpain_cds_feedback": frozenset({"outcome", "override_reason"}),
    "backpain_cds_feedback_set_apart": frozenset({"reason"}),
    "backpain_cds_prefetch": frozenset({"key", "outcome"}),
    "backpain_cds_deadline_exceeded": frozenset({"service"}),
    "backpain_cds_errors": frozenset({"status"}),
}
STAGES = {"auth", "parse", "prefetch", "fetch", "mapping", "assessment", "render", "storage"}
_STATUS = re.compile(r"[1-5][0-9][0-9]")


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition: (sample name, labels) -> value."""
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(text_or_samples: str | dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    found = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def by_label(found: dict[tuple[str, Labels], float], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """Non-zero samples called ``name``, summed by the values of ``keys``."""
    out: dict[tuple[str, ...], float] = {}
    for (n, ls), v in found.items():
        if n == name and v:
            labels = dict(ls)
            key = tuple(labels[k] for k in keys)
            out[key] = out.get(key, 0.0) + v
    return out


def label_problems(text: str, *, services: t.Iterable[str], prefetch_keys: t.Iterable[str],
                   override_codes: t.Iterable[str]) -> list[str]:
    """Every label name or value outside the allowed bounded sets (empty when clean)."""
    allowed_values: dict[str, set[str]] = {
        "service": set(services) | {"unknown"},
        "hook": set(SUPPORTED_HOOKS) | {"unknown"},
        "rule": set(RULE_IDS) | {"other"},
        "indicator": {"info", "warning", "critical", "other"},
        "override_reason": set(override_codes) | {"other", "none"},
        "key": set(prefetch_keys),
        "stage": STAGES,
        "reason": {"snooze", "shadow", "duplicate", "other", "unmatched", "repeat"},
    }
    outcomes = {"backpain_cds_feedback": {"accepted", "overridden"},
                "backpain_cds_prefetch": {"supplied", "null", "fetched", "failed"}}
    problems = []
    for family in text_string_to_metric_families(text):
        if family.name not in FAMILIES:
            problems.append(f"unexpected metric family {family.name}")
            continue
        for sample in family.samples:
            for name, value in sample.labels.items():
                if name not in FAMILIES[family.name]:
                    problems.append(f"{sample.name}: unexpected label {name}={value!r}")
                elif name == "status":
                    ok = bool(_STATUS.fullmatch(value)) or value == "other"
                elif name == "le":
                    ok = value == "+Inf" or _is_number(value)
                elif name == "outcome":
                    ok = value in outcomes[family.name]
                else:
                    ok = value in allowed_values[name]
                if name in FAMILIES[family.name] and not ok:
                    problems.append(f"{sample.name}: label {name}={value!r} is not in its bounded set")
    return problems


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
