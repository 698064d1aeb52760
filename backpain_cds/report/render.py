"""The report as text (for a terminal or an e-mail), JSON and CSV (README "Governance report").

JSON: one object with fixed keys (``to_document``); a rule's ``overridden_by_reason`` has every
reason code of the report, ``null`` where the rule's card does not offer the reason (CSV: empty). CSV: one table per section, separated by an
empty line; every row starts with its ``section`` (``rules``, ``override_reasons``,
``weekly_cards``, ``services``, ``unmatched_feedback``) and every table has its own header row.
Rates are fractions (0..1) in JSON and CSV, percentages in the text; durations are seconds
(time to feedback) and milliseconds (latency); an undefined figure is ``null`` (JSON), empty
(CSV) or ``n/a`` (text).
"""

from __future__ import annotations

import csv
import io
import textwrap
import typing as t

import orjson

from backpain_cds.report.figures import SUPPRESS_REASONS, Report, RuleFigures, human_duration

TITLE = "backpain-cds governance report"
RULE_COLUMNS = ("rule", "fired", "returned", "shadow", "suppressed",
                *(f"suppressed_{reason}" for reason in SUPPRESS_REASONS),
                "accepted", "overridden", "overridden_with_snooze", "acceptance_rate", "median_seconds_to_feedback")
#: what each column of the rules table means: (text header, definition); printed under the text
#: table and shown under the HTML one (README "Governance report" has the same definitions)
RULE_LEGEND: tuple[tuple[str, str], ...] = (
    ("fired", "cards the rule produced: returned + shadow + suppressed"),
    ("returned", "cards returned to the EHR for the clinician (not shadow, not suppressed)"),
    ("shadow", "cards held back by shadow mode"),
    ("suppressed", "cards held back by the service: by a snooze (snooze; the snooze may have started "
                   "before the window) or as already shown in the ordering session (duplicate)"),
    ("accepted, overridden", "feedback entries on the returned cards, whenever they arrived"),
    ("with snooze", "overrides with a reason that snoozes the rule for the patient: each started a snooze, "
                    "whose held-back cards count under suppressed: snooze; n/a: the card offers no such reason"),
    ("acceptance", "accepted / (accepted + overridden): over the feedback on returned cards, a returned "
                   "card without feedback is not counted; n/a without feedback"),
    ("median to feedback", "median of the feedback's outcomeTimestamp minus the card's creation time"),
)
SERVICE_COLUMNS = ("service", "calls", "latency_ms_p50", "latency_ms_p95", "calls_412", "rate_412",
                   "deadline_exceeded", "cards")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def stamp(moment: t.Any) -> str:
    """RFC 3339 in UTC with a Z."""
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def to_document(report: Report) -> dict[str, t.Any]:
    """The JSON document (also what the HTML page shows)."""
    return {
        "title": TITLE,
        "window": {"since": stamp(report.window.since), "until": stamp(report.window.until)},
        "generated_at": stamp(report.generated_at),
        "rules": [
            {
                "rule": r.rule, "fired": r.fired, "returned": r.returned, "shadow": r.shadow,
                "suppressed": r.suppressed, "suppressed_by_reason": dict(r.suppressed_by_reason),
                "accepted": r.accepted, "overridden": r.overridden, "overridden_with_snooze": r.snoozed,
                "overridden_by_reason": {code: r.overrides_with(code) for code in report.reason_codes},
                "override_reasons_offered": [{"code": o.code, "display": o.display, "snoozes": o.snoozes}
                                             for o in r.offered_reasons],
                "acceptance_rate": _round(r.acceptance_rate, 4),
                "median_seconds_to_feedback": _round(r.median_seconds_to_feedback, 3),
            }
            for r in report.rules
        ],
        "weekly_cards": [{"rule": rule, "week": week, "cards": n} for rule, week, n in report.weekly],
        "services": [
            {
                "service": s.service, "calls": s.calls, "by_status": {str(k): v for k, v in s.by_status.items()},
                "latency_ms_p50": _round(s.p50_ms, 3), "latency_ms_p95": _round(s.p95_ms, 3),
                "calls_412": s.by_status.get(412, 0), "rate_412": _round(s.rate_412, 4),
                "deadline_exceeded": s.deadline_exceeded, "cards": s.cards,
            }
            for s in report.services
        ],
        "unmatched_feedback": {"entries": report.unmatched_total, "by_service": dict(report.unmatched)},
    }


def render_json(report: Report) -> str:
    return orjson.dumps(to_document(report), option=orjson.OPT_INDENT_2).decode() + "\n"


def _cell(value: t.Any) -> t.Any:
    return "" if value is None else value


def render_csv(report: Report) -> str:
    doc = to_document(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", *RULE_COLUMNS))
    for r in doc["rules"]:
        reasons = [r["suppressed_by_reason"].get(reason, 0) for reason in SUPPRESS_REASONS]
        writer.writerow(("rules", r["rule"], r["fired"], r["returned"], r["shadow"], r["suppressed"], *reasons,
                         r["accepted"], r["overridden"], _cell(r["overridden_with_snooze"]), _cell(r["acceptance_rate"]),
                         _cell(r["median_seconds_to_feedback"])))
    writer.writerow(())
    writer.writerow(("section", "rule", "override_reason", "display", "offered", "overrides"))
    for rule in report.rules:
        for code in report.reason_codes:
            writer.writerow(("override_reasons", rule.rule, code, _cell(rule.display(code)),
                             str(rule.offers(code)).lower(), _cell(rule.overrides_with(code))))
    writer.writerow(())
    writer.writerow(("section", "rule", "week", "cards"))
    for w in doc["weekly_cards"]:
        writer.writerow(("weekly_cards", w["rule"], w["week"], w["cards"]))
    writer.writerow(())
    writer.writerow(("section", *SERVICE_COLUMNS))
    for s in doc["services"]:
        writer.writerow(("services", *(_cell(s[column]) for column in SERVICE_COLUMNS)))
    writer.writerow(())
    writer.writerow(("section", "service", "entries"))
    for service, n in doc["unmatched_feedback"]["by_service"].items():
        writer.writerow(("unmatched_feedback", service, n))
    return out.getvalue()


def _na(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def snooze_rules(report: Report) -> list[RuleFigures]:
    """The rules of the snooze section: those whose card offers a snooze reason, and any other
    that snoozes started or held back cards (a reason since taken out of the knowledge)."""
    return [r for r in report.rules if r.snooze_reasons or r.overridden_with_snooze or r.suppressed_by_reason.get("snooze")]


def reason_label(code: str, display: str | None) -> str:
    """``Display [code]``; a code without a display (unknown, ``(none)``) as it is."""
    return f"{display} [{code}]" if display else code


def percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f} %"


def milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _table(header: t.Sequence[str], rows: t.Sequence[t.Sequence[str]], *, left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` (names) to the left, the figures to the right."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [str(x).ljust(w) if j < left else str(x).rjust(w) for j, (x, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _legend(entries: t.Sequence[tuple[str, str]], width: int = 100) -> list[str]:
    """``term  definition`` lines, the definitions aligned and wrapped at ``width``."""
    indent = max(len(term) for term, _ in entries) + 2
    lines = []
    for term, text in entries:
        lines += textwrap.wrap(text, width, initial_indent=term.ljust(indent), subsequent_indent=" " * indent)
    return lines


def render_text(report: Report) -> str:
    w = report.window
    lines = [TITLE, f"window: {stamp(w.since)} (inclusive) to {stamp(w.until)} (exclusive)",
             f"generated: {stamp(report.generated_at)}", "", "Rules (cards created in the window)"]
    lines += _table(
        ("rule", "fired", "returned", "shadow", "suppressed", "snooze", "duplicate", "accepted", "overridden",
         "with snooze", "acceptance", "median to feedback"),
        [(r.rule, str(r.fired), str(r.returned), str(r.shadow), str(r.suppressed),
          *(str(r.suppressed_by_reason.get(reason, 0)) for reason in SUPPRESS_REASONS),
          str(r.accepted), str(r.overridden), _na(r.snoozed), percent(r.acceptance_rate),
          human_duration(r.median_seconds_to_feedback))
         for r in report.rules])
    lines += ["", *_legend(RULE_LEGEND)]
    snoozing = snooze_rules(report)
    lines += ["", "Snooze (overrides that snoozed a rule, and the cards the snoozes then held back)"]
    lines += _table(("rule", "snooze reasons", "overridden with snooze", "suppressed by snooze"),
                    [(r.rule, ", ".join(reason_label(o.code, o.display) for o in r.snooze_reasons) or "(none)",
                      _na(r.snoozed), str(r.suppressed_by_reason.get("snooze", 0))) for r in snoozing], left=2) \
        if snoozing else ["(no rule offers a snooze reason)"]
    reasons = [(r.rule, reason_label(code, display) if offered else f"{code} (not offered by this rule)", str(n))
               for r in report.rules if r.returned or r.overridden for code, display, offered, n in r.reason_rows()]
    lines += ["", "Override reasons (rules with cards returned: each reason the card offers, then any other code)"]
    lines += _table(("rule", "reason", "overrides"), reasons, left=2) if reasons else ["(no cards returned)"]
    lines += ["", "Cards per rule per ISO week"]
    lines += _table(("rule", "week", "cards"), [(r, wk, str(n)) for r, wk, n in report.weekly], left=2) \
        if report.weekly else ["(no cards)"]
    lines += ["", "Services (hook calls received in the window; latency: nearest-rank percentiles)"]
    lines += _table(
        ("service", "calls", "p50 ms", "p95 ms", "412", "412 rate", "deadline exceeded"),
        [(s.service, str(s.calls), milliseconds(s.p50_ms), milliseconds(s.p95_ms), str(s.by_status.get(412, 0)),
          percent(s.rate_412), str(s.deadline_exceeded)) for s in report.services]) \
        if report.services else ["(no hook calls)"]
    by_service = ", ".join(f"{service} {n}" for service, n in report.unmatched.items())
    lines += ["", f"Unmatched feedback (cards never shown; not in the figures above): {report.unmatched_total}"
              + (f" ({by_service})" if by_service else "")]
    return "\n".join(lines) + "\n"
