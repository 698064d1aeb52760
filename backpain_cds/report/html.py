"""The report as one self-contained HTML page an informaticist can open, print or mail.

Tables of every figure (the override reasons as a matrix, reasons x rules, with a muted "not
offered" where the rule's card does not offer the reason) plus charts drawn server-side by pygal
as inline SVG: cards per rule per ISO week, acceptance (accepted and overridden) per rule,
override reasons per rule. In every chart a series is a rule, in its colour of
:func:`rule_colours`, and the count axes have whole-number ticks (:func:`count_ticks`). Nothing is
loaded from anywhere: the CSS is inline, the SVG has no script (pygal's inline configuration
script is removed and ``js=[]``, whose default points to a CDN), the fonts are the system's.
Every value is escaped by Jinja2's autoescape; the SVG is serialised by pygal's XML writer.
"""

from __future__ import annotations

import re
import sys
import typing as t

import jinja2
import markupsafe
import pygal
from pygal.style import Style

from backpain_cds.report.figures import SUPPRESS_REASONS, Report, human_duration
from backpain_cds.report.render import (
    RULE_LEGEND,
    TITLE,
    milliseconds,
    percent,
    reason_label,
    snooze_rules,
    stamp,
)

# pygal appends a legacy ``sys.meta_path`` finder (no ``find_spec``) for its map plugins, which
# we do not use; every failed import anywhere in the process then raises an ImportWarning.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
#: the rules' colours (Okabe and Ito's palette, readable with the common colour-vision
#: deficiencies), given in the order of the sorted rule ids of this release
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000", "#999999")
_STYLE = dict(background="white", plot_background="white", font_family="system-ui, sans-serif",
              title_font_size=16, label_font_size=12, major_label_font_size=12, legend_font_size=12)
#: at most this many ticks on a count axis
_MAX_TICKS = 10


def rule_colours(report: Report) -> dict[str, str]:
    """Rule id -> colour, the same in every chart and every report of this release: by the
    sorted rule ids this release knows, then any other rule in the data (sorted)."""
    known = sorted(report.known_rules)
    others = sorted({r.rule for r in report.rules} - set(known))
    return {rule: PALETTE[i % len(PALETTE)] for i, rule in enumerate(known + others)}


def count_ticks(top: int) -> list[int]:
    """Whole-number ticks from 0 to at least ``top`` (and 1), at most ``_MAX_TICKS`` steps of 1, 2
    or 5 times a power of ten: a count axis never shows half a card."""
    top, magnitude = max(top, 1), 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * magnitude
            steps = -(-top // step)  # ceil
            if steps <= _MAX_TICKS:
                return list(range(0, steps * step + 1, step))
        magnitude *= 10


def _svg(chart: t.Any) -> markupsafe.Markup:
    svg = _COMMENT.sub("", _SCRIPT.sub("", chart.render(is_unicode=True)))
    return markupsafe.Markup(svg)  # pygal's XML serialiser escaped every label


def _chart(kind: t.Any, title: str, labels: t.Sequence[str], series: t.Mapping[str, t.Sequence[int | None]],
           colours: t.Sequence[str], top: int, **options: t.Any) -> markupsafe.Markup:
    """A bar chart of counts: one series per entry of ``series`` in its colour of ``colours``, the
    count axis in whole numbers up to at least ``top``."""
    ticks = count_ticks(top)
    chart = kind(js=[], disable_xml_declaration=True, width=760, height=360, explicit_size=False,
                 style=Style(colors=tuple(colours), **_STYLE), title=title, legend_at_bottom=True,
                 truncate_legend=-1, truncate_label=-1, print_values=False,
                 y_labels=ticks, range=(0, ticks[-1]), value_formatter=lambda v: f"{v:.0f}", **options)
    chart.x_labels = list(labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart)


def reason_labels(report: Report) -> list[tuple[str, str]]:
    """(code, label) of every reason code of the report: ``Display [code]``, the displays of the
    rules that offer it joined by `` / `` when they differ; an unknown code as it is."""
    out = []
    for code in report.reason_codes:
        displays = list(dict.fromkeys(d for r in report.rules if (d := r.display(code))))
        out.append((code, reason_label(code, " / ".join(displays) or None)))
    return out


def charts(report: Report) -> dict[str, markupsafe.Markup | None]:
    """The page's charts (None when there is nothing to draw). Every series is a rule, in its
    colour of :func:`rule_colours`; a reason a rule's card does not offer has no bar (not 0)."""
    colour = rule_colours(report)
    weeks = report.window.weeks()
    fired = [r.rule for r in report.rules if r.fired]
    counts = {(rule, week): n for rule, week, n in report.weekly}
    per_week = [sum(counts.get((rule, w), 0) for rule in fired) for w in weeks]
    weekly = _chart(pygal.StackedBar, "Cards per rule per ISO week", weeks,
                    {rule: [counts.get((rule, w), 0) for w in weeks] for rule in fired},
                    [colour[rule] for rule in fired], max(per_week, default=0), x_label_rotation=20) \
        if fired else None
    answered = [r for r in report.rules if r.accepted + r.overridden]
    acceptance = _chart(pygal.Bar, "Feedback on returned cards, per rule", ["accepted", "overridden"],
                        {r.rule: [r.accepted, r.overridden] for r in answered}, [colour[r.rule] for r in answered],
                        max((max(r.accepted, r.overridden) for r in answered), default=0)) if answered else None
    overridden = [r for r in report.rules if r.overridden]
    labels = dict(reason_labels(report))
    codes = [code for code in report.reason_codes if any(r.overridden_by_reason.get(code) for r in overridden)]
    codes.reverse()  # pygal draws the first label at the bottom: the table's order, top down
    reasons = _chart(pygal.HorizontalBar, "Override reasons, per rule", [labels[code] for code in codes],
                     {r.rule: [r.overrides_with(code) for code in codes] for r in overridden},
                     [colour[r.rule] for r in overridden],
                     max((n for r in overridden for n in r.overridden_by_reason.values()), default=0)) \
        if overridden else None
    return {"weekly": weekly, "acceptance": acceptance, "reasons": reasons}


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}: {{ since }} to {{ until }}</title>
<style>
body { font-family: system-ui, sans-serif; color: #1a1a1a; margin: 1.5rem auto; max-width: 76rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #bbb; }
h3 { font-size: 1rem; margin: 1.25rem 0 .25rem; }
p { max-width: 60rem; }
p.meta, p.note { color: #444; font-size: .9rem; }
/* a table that cannot fit (a narrow window) scrolls in its own box, never the page */
div.table { max-width: 100%; overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .2rem .4rem; }
th { background: #eef2f6; text-align: left; }
thead th { vertical-align: bottom; font-size: .8rem; hyphens: auto; overflow-wrap: break-word; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.na, span.na { color: #767676; font-style: italic; font-size: .75rem; }
td.na { text-align: center; }
th[scope="row"] { white-space: nowrap; }
table.matrix th[scope="row"] { white-space: normal; min-width: 14rem; max-width: 26rem; font-weight: normal; }
table.matrix thead th { min-width: 4.5rem; }
figure { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure svg { width: 100%; height: auto; max-width: 760px; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; max-width: 60rem;
            font-size: .85rem; color: #333; }
dl.legend dt { font-weight: 600; } dl.legend dd { margin: 0; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { page-break-after: avoid; break-after: avoid; }
  div.table { overflow: visible; }
  table, figure { page-break-inside: avoid; break-inside: avoid; }
  th { background: none; }
}
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Window: <time>{{ since }}</time> (inclusive) to <time>{{ until }}</time> (exclusive).
Generated <time>{{ generated }}</time>.</p>

{% macro snoozed_cell(r) %}{% if r.snoozed is none %}<td class="na" data-col="overridden_with_snooze">not offered</td>{% else %}<td class="n" data-col="overridden_with_snooze">{{ r.snoozed }}</td>{% endif %}{% endmacro %}
<h2>Rules</h2>
<p class="note">Cards created in the window.</p>
<div class="table"><table data-section="rules">
<thead><tr>{% for h in rule_header %}<th scope="col">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in rules %}<tr data-rule="{{ r.rule }}"><th scope="row" data-col="rule">{{ r.rule }}</th>
<td class="n" data-col="fired">{{ r.fired }}</td><td class="n" data-col="returned">{{ r.returned }}</td>
<td class="n" data-col="shadow">{{ r.shadow }}</td><td class="n" data-col="suppressed">{{ r.suppressed }}</td>
{% for reason in suppress_reasons %}<td class="n" data-col="suppressed_{{ reason }}">{{ r.suppressed_by_reason.get(reason, 0) }}</td>{% endfor %}
<td class="n" data-col="accepted">{{ r.accepted }}</td><td class="n" data-col="overridden">{{ r.overridden }}</td>
{{ snoozed_cell(r) }}
<td class="n" data-col="acceptance_rate">{{ percent(r.acceptance_rate) }}</td>
<td class="n" data-col="median_to_feedback">{{ duration(r.median_seconds_to_feedback) }}</td></tr>
{% endfor %}</tbody>
</table></div>
<dl class="legend" data-legend="rules">{% for term, text in rule_legend %}<dt>{{ term }}</dt><dd>{{ text }}</dd>{% endfor %}</dl>
<h3>Snooze</h3>
<p class="note">Rules whose card offers a snooze reason: the overrides with it, each of which snoozed the rule for
the patient, and the cards the snoozes then held back (a snooze may have started before the window).</p>
{% if snooze_rules %}<div class="table"><table data-section="snooze">
<thead><tr><th scope="col">rule</th><th scope="col">snooze reasons</th><th scope="col">overridden with snooze</th>
<th scope="col">suppressed by snooze</th></tr></thead>
<tbody>
{% for r in snooze_rules %}<tr data-rule="{{ r.rule }}"><th scope="row" data-col="rule">{{ r.rule }}</th>
<td data-col="reasons">{% for o in r.snooze_reasons %}{{ reason_label(o.code, o.display) }}{% if not loop.last %}, {% endif %}{% else %}(none){% endfor %}</td>
{{ snoozed_cell(r) }}
<td class="n" data-col="suppressed_snooze">{{ r.suppressed_by_reason.get("snooze", 0) }}</td></tr>
{% endfor %}</tbody>
</table></div>{% else %}<p>No rule offers a snooze reason.</p>{% endif %}
{% if charts.weekly %}<figure data-chart="weekly">{{ charts.weekly }}</figure>{% endif %}

<h2>Acceptance and override reasons</h2>
{% if charts.acceptance %}<figure data-chart="acceptance">{{ charts.acceptance }}</figure>{% else %}<p>No feedback on returned cards in this window.</p>{% endif %}
<p class="note">Overrides per reason (rows) and rule (columns), on the cards returned in the window;
<span class="na">not offered</span>: the rule's card does not offer the reason.</p>
<div class="table"><table class="matrix" data-section="override_reasons">
<thead><tr><th scope="col">override reason</th>{% for r in rules %}<th scope="col">{{ r.rule }}</th>{% endfor %}</tr></thead>
<tbody>
{% for code, label in reason_labels %}<tr data-reason="{{ code }}"><th scope="row" data-col="reason">{{ label }}</th>
{% for r in rules %}{% set n = r.overrides_with(code) %}{% if n is none %}<td class="na" data-col="{{ r.rule }}">not offered</td>
{% elif r.offers(code) %}<td class="n" data-col="{{ r.rule }}">{{ n }}</td>
{% else %}<td class="n" data-col="{{ r.rule }}">{{ n }} <span class="na">(not offered)</span></td>
{% endif %}{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% if charts.reasons %}<figure data-chart="reasons">{{ charts.reasons }}</figure>{% endif %}

<h2>Cards per rule per ISO week</h2>
<div class="table"><table data-section="weekly_cards">
<thead><tr><th scope="col">rule</th><th scope="col">week</th><th scope="col">cards</th></tr></thead>
<tbody>
{% for rule, week, n in weekly %}<tr><td data-col="rule">{{ rule }}</td><td data-col="week">{{ week }}</td><td class="n" data-col="cards">{{ n }}</td></tr>
{% endfor %}</tbody>
</table></div>

<h2>Services</h2>
<p class="note">Hook calls received in the window, any HTTP status. Latency: request in to response out,
nearest-rank percentiles, in milliseconds.</p>
<div class="table"><table data-section="services">
<thead><tr><th scope="col">service</th><th scope="col">calls</th><th scope="col">p50 ms</th><th scope="col">p95 ms</th>
<th scope="col">412</th><th scope="col">412 rate</th><th scope="col">deadline exceeded</th><th scope="col">cards returned</th></tr></thead>
<tbody>
{% for s in services %}<tr data-service="{{ s.service }}"><th scope="row" data-col="service">{{ s.service }}</th>
<td class="n" data-col="calls">{{ s.calls }}</td><td class="n" data-col="p50_ms">{{ ms(s.p50_ms) }}</td>
<td class="n" data-col="p95_ms">{{ ms(s.p95_ms) }}</td><td class="n" data-col="calls_412">{{ s.by_status.get(412, 0) }}</td>
<td class="n" data-col="rate_412">{{ percent(s.rate_412) }}</td><td class="n" data-col="deadline_exceeded">{{ s.deadline_exceeded }}</td>
<td class="n" data-col="cards">{{ s.cards }}</td></tr>
{% endfor %}</tbody>
</table></div>

<h2>Unmatched feedback</h2>
<p class="note">Feedback received in the window naming a card the service never showed (unknown, shadow or
suppressed cards): kept apart, not in any figure above.</p>
<div class="table"><table data-section="unmatched_feedback">
<thead><tr><th scope="col">service</th><th scope="col">entries</th></tr></thead>
<tbody>
{% for service, n in unmatched.items() %}<tr><td data-col="service">{{ service }}</td><td class="n" data-col="entries">{{ n }}</td></tr>
{% endfor %}</tbody>
<tfoot><tr><th scope="row">total</th><td class="n" data-col="total">{{ unmatched_total }}</td></tr></tfoot>
</table></div>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_html(report: Report) -> str:
    template = _ENV.from_string(_TEMPLATE)
    return template.render(
        title=TITLE, since=stamp(report.window.since), until=stamp(report.window.until),
        generated=stamp(report.generated_at), rules=report.rules, weekly=report.weekly,
        services=report.services, unmatched=report.unmatched, unmatched_total=report.unmatched_total,
        suppress_reasons=SUPPRESS_REASONS, charts=charts(report), percent=percent, ms=milliseconds,
        duration=human_duration, rule_legend=RULE_LEGEND, reason_labels=reason_labels(report),
        snooze_rules=snooze_rules(report), reason_label=reason_label,
        rule_header=("rule", "fired", "returned", "shadow", "suppressed",
                     *(f"suppressed: {reason}" for reason in SUPPRESS_REASONS),
                     "accepted", "overridden", "overridden with snooze", "acceptance", "median time to feedback"),
    )
