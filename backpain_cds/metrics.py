"""Prometheus text metrics: calls, cards by rule, feedback outcomes, stage latencies.

Counters live in the process; under gunicorn each worker keeps its own (scrape each worker,
or sum: the ``pid`` label tells them apart).
"""

from __future__ import annotations

import os
import threading
import typing as t
from collections import Counter, defaultdict


class Metrics:
    """Thread-safe counters and latency sums; implements the CallObserver port."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every count (after the warm-up's synthetic calls, backpain_cds.warm)."""
        self._calls: Counter[tuple[str, str]] = Counter()
        self._cards: Counter[str] = Counter()
        self._feedback: Counter[str] = Counter()
        self._errors: Counter[int] = Counter()
        self._stage_sum: defaultdict[str, float] = defaultdict(float)  #: seconds, summed
        self._stage_count: Counter[str] = Counter()
        self._deadline: Counter[str] = Counter()

    def hook_call(
        self, *, service_id: str, hook: str, timings: t.Mapping[str, float], rules: t.Sequence[str]
    ) -> None:
        with self._lock:
            self._calls[(service_id, hook)] += 1
            for rule in rules:
                self._cards[rule] += 1
            for stage, seconds in timings.items():
                self._stage_sum[stage] += seconds
                self._stage_count[stage] += 1

    def feedback(self, outcomes: t.Iterable[str]) -> None:
        with self._lock:
            for outcome in outcomes:
                self._feedback[outcome] += 1

    def error(self, status: int) -> None:
        with self._lock:
            self._errors[status] += 1

    def deadline_exceeded(self, service_id: str) -> None:
        with self._lock:
            self._deadline[service_id] += 1

    def render(self) -> str:
        """The Prometheus text exposition."""
        pid = os.getpid()
        lines = [
            "# HELP backpain_cds_hook_calls_total Hook calls answered with 200.",
            "# TYPE backpain_cds_hook_calls_total counter",
        ]
        with self._lock:
            for (service, hook), n in sorted(self._calls.items()):
                lines.append(f'backpain_cds_hook_calls_total{{service="{service}",hook="{hook}",pid="{pid}"}} {n}')
            lines += ["# HELP backpain_cds_cards_total Cards issued by rule.", "# TYPE backpain_cds_cards_total counter"]
            for rule, n in sorted(self._cards.items()):
                lines.append(f'backpain_cds_cards_total{{rule="{rule}",pid="{pid}"}} {n}')
            lines += ["# HELP backpain_cds_feedback_total Feedback entries by outcome.", "# TYPE backpain_cds_feedback_total counter"]
            for outcome, n in sorted(self._feedback.items()):
                lines.append(f'backpain_cds_feedback_total{{outcome="{outcome}",pid="{pid}"}} {n}')
            lines += ["# HELP backpain_cds_errors_total Error responses by status.", "# TYPE backpain_cds_errors_total counter"]
            for status, n in sorted(self._errors.items()):
                lines.append(f'backpain_cds_errors_total{{status="{status}",pid="{pid}"}} {n}')
            lines += ["# HELP backpain_cds_deadline_exceeded_total Hook calls that ran past the deadline.", "# TYPE backpain_cds_deadline_exceeded_total counter"]
            for service, n in sorted(self._deadline.items()):
                lines.append(f'backpain_cds_deadline_exceeded_total{{service="{service}",pid="{pid}"}} {n}')
            lines += ["# HELP backpain_cds_stage_seconds Time spent per hook stage.", "# TYPE backpain_cds_stage_seconds summary"]
            for stage in sorted(self._stage_sum):
                lines.append(f'backpain_cds_stage_seconds_sum{{stage="{stage}",pid="{pid}"}} {self._stage_sum[stage]:.6f}')
                lines.append(f'backpain_cds_stage_seconds_count{{stage="{stage}",pid="{pid}"}} {self._stage_count[stage]}')
        return "\n".join(lines) + "\n"
