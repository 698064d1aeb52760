"""The detail view's timeline: events from the record, an inline SVG chart (pygal), a table.

Events: pain scores, G-CSF doses (with product class and their bone-pain windows, computed by
the assessment's own :func:`assessment.rules.gcsf_windows.gcsf_windows`), chemotherapy (drugs and
procedures), red-flag findings and spine imaging, within ``LOOKBACK`` of now. The chart is drawn
server-side by pygal (no JavaScript: its inline config script is removed, ``js=[]`` so nothing
is loaded from outside); its inline ``<style>`` is allowed by a CSP hash, computed here. The
same events are listed in a table beside it for screen readers and for print.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

import pygal
from pygal.style import Style

from assessment.config import RuleConfig
from assessment.facts import ClinicalKind, DrugClass, GcsfClass, PatientRecord
from assessment.rules.gcsf_windows import gcsf_windows

# pygal appends a legacy ``sys.meta_path`` finder (no ``find_spec``) for its map plugins, which
# we do not use; every failed import anywhere in the process then raises an ImportWarning.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

LOOKBACK = timedelta(days=120)
_RED_FLAGS = (ClinicalKind.RED_FLAG_NEURO, ClinicalKind.RED_FLAG_SPHINCTER, ClinicalKind.MSCC)
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
#: chart rows (y values) of the non-score series, above and below the 0-10 pain scale
_ROWS = {"gcsf-long-acting": 11.5, "gcsf-daily": 11.0, "red-flag": 10.5, "imaging": -0.5, "chemotherapy": -1.0}


@dataclass(frozen=True)
class TimelineEvent:
    time: datetime
    kind: str  #: pain-score, gcsf-long-acting, gcsf-daily, gcsf-window, chemotherapy, red-flag, imaging
    label: str
    ref: str
    value: str = ""


@dataclass(frozen=True)
class Timeline:
    events: tuple[TimelineEvent, ...]
    windows: tuple[tuple[datetime, datetime, str, str], ...]  #: start, end, product, class
    svg: str  #: inline SVG ('' when there is nothing to draw)
    style_hashes: tuple[str, ...]  #: CSP sources for the SVG's inline styles


def build_timeline(record: PatientRecord, rules: RuleConfig, now: datetime) -> Timeline:
    since = now - LOOKBACK
    events: list[TimelineEvent] = []
    for score in record.pain_scores:
        events.append(TimelineEvent(score.time, "pain-score", "Pain score", score.ref, f"{score.score:g}/10"))
    for med in record.medications:
        if med.time is None:
            continue
        if med.drug_class is DrugClass.GCSF:
            kind = "gcsf-daily" if med.gcsf_class is GcsfClass.DAILY else "gcsf-long-acting"
            events.append(TimelineEvent(med.time, kind, med.label or "G-CSF", med.ref, med.source.value))
        elif med.drug_class is DrugClass.CHEMOTHERAPY:
            events.append(TimelineEvent(med.time, "chemotherapy", med.label or "Chemotherapy", med.ref, med.source.value))
    for proc in record.procedures:
        if proc.time is not None:
            events.append(TimelineEvent(proc.time, "chemotherapy", proc.label or "Chemotherapy", proc.ref, proc.status))
    for fact in record.clinical:
        time = fact.time or fact.recorded
        if fact.kind in _RED_FLAGS and time is not None:
            events.append(TimelineEvent(time, "red-flag", fact.label or fact.kind.value, fact.ref, fact.status))
    for image in record.imaging:
        if image.time is not None:
            events.append(TimelineEvent(image.time, "imaging", image.kind.value, image.ref, image.status))
    windows = tuple(
        (w.start, w.end, w.label, (w.doses[0].gcsf_class or GcsfClass.LONG_ACTING).value)
        for w in gcsf_windows(record, rules.context)
        if w.end >= since
    )
    shown = tuple(sorted((e for e in events if since <= e.time <= now + timedelta(days=1)), key=lambda e: e.time))
    svg, hashes = _chart(shown, windows) if shown or windows else ("", ())
    return Timeline(shown, windows, svg, hashes)


def _chart(events: tuple[TimelineEvent, ...], windows: tuple[tuple[datetime, datetime, str, str], ...]) -> tuple[str, tuple[str, ...]]:
    style = Style(background="white", plot_background="white", font_family="system-ui, sans-serif",
                  title_font_size=20, label_font_size=15, major_label_font_size=15, legend_font_size=15,
                  colors=("#2a6db0", "#7b3fa0", "#c96a00", "#b00020", "#1f7a3a", "#555555", "#7b3fa0"))
    chart = pygal.DateTimeLine(
        js=[], disable_xml_declaration=True, no_prefix=True, allow_interruptions=True,
        width=640, height=300, style=style, show_legend=True, legend_at_bottom=True,
        x_label_rotation=30, range=(-1.5, 12), show_y_guides=True,
        x_value_formatter=lambda d: d.strftime("%d %b"), title="Pain scores, G-CSF, chemotherapy",
        truncate_legend=-1, explicit_size=False, y_labels=list(range(0, 11, 2)), legend_at_bottom_columns=2,
    )
    scores: list[tuple[datetime, float] | None] = [
        (e.time, float(e.value.split("/")[0])) for e in events if e.kind == "pain-score"
    ]
    chart.add("Pain score (0-10)", scores or [None])
    for cls, title in (("long-acting", "Long-acting G-CSF window"), ("daily", "Daily G-CSF window")):
        row = _ROWS[f"gcsf-{cls}"]
        values: list[tuple[datetime, float] | None] = []
        for start, end, _, wcls in windows:
            if wcls == cls:
                values += [(start, row), (end, row), None]
        chart.add(title, values[:-1] or [None], stroke_style={"width": 6})
    for kind, title in (("gcsf-long-acting", "G-CSF dose (long-acting)"), ("gcsf-daily", "G-CSF dose (daily)"),
                        ("red-flag", "Red flag"), ("imaging", "Spine imaging"), ("chemotherapy", "Chemotherapy")):
        row = _ROWS[kind]
        points: list[tuple[datetime, float] | None] = [(e.time, row) for e in events if e.kind == kind]
        chart.add(title, points or [None], stroke=False, dots_size=5)
    svg = _COMMENT.sub("", _SCRIPT.sub("", chart.render(is_unicode=True)))
    # CSP blocks style attributes (only the <style> elements are hashed): the one pygal writes
    # (the hidden tooltip group) becomes the equivalent SVG presentation attribute
    svg = svg.replace('style="opacity: 0"', 'opacity="0"')
    # The CSP hash covers the style element's text as the browser's HTML parser sees it, with
    # character references decoded: write the CSS unescaped (it has no "<"), then hash that.
    hashes = []
    for css in _STYLE.findall(svg):
        text = html.unescape(css)
        if "<" in text:
            raise ValueError("unexpected '<' in the chart's CSS")
        svg = svg.replace(css, text)
        hashes.append("'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'")
    return svg, tuple(hashes)
