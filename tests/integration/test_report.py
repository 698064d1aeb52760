"""``backpain-cds report`` on a seeded database (SQLite and PostgreSQL): exact figures in every
format, the window's boundaries, unmatched feedback kept out of the figures, the command line.

The HTML page in headless Chromium: tests/e2e/test_report_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from backpain_cds.cli import main
from backpain_cds.report.command import read_report, render
from backpain_cds.report.figures import Window
from backpain_cds.schema import upgrade
from backpain_cds.storage import SqlStore
from tests.support import report_seed as seed

SERVICES = [
    {"service": seed.PV, "calls": 5, "by_status": {"200": 4, "412": 1}, "latency_ms_p50": 30.0,
     "latency_ms_p95": 1000.0, "calls_412": 1, "rate_412": 0.2, "deadline_exceeded": 1, "cards": 3},
    {"service": seed.OS, "calls": 2, "by_status": {"200": 1, "401": 1}, "latency_ms_p50": 5.5,
     "latency_ms_p95": 7.25, "calls_412": 0, "rate_412": 0.0, "deadline_exceeded": 0, "cards": 0},
]
WEEKLY = [
    {"rule": seed.G, "week": "2026-W10", "cards": 2},
    {"rule": seed.G, "week": "2026-W11", "cards": 5},
    {"rule": seed.M, "week": "2026-W10", "cards": 2},
    {"rule": seed.P, "week": "2026-W11", "cards": 1},
]

EXPECTED_TEXT = """\
backpain-cds governance report
window: 2026-03-02T00:00:00Z (inclusive) to 2026-03-16T00:00:00Z (exclusive)
generated: 2026-03-20T09:30:00Z

Rules (cards created in the window)
rule                       fired  returned  shadow  suppressed  snooze  duplicate  accepted  overridden  with snooze  acceptance  median to feedback
-------------------------  -----  --------  ------  ----------  ------  ---------  --------  ----------  -----------  ----------  ------------------
back-pain-supportive-care      0         0       0           0       0          0         0           0          n/a         n/a                 n/a
gcsf-bone-pain                 7         4       1           2       1          1         1           2            1      33.3 %              60 min
gcsf-order-dose-review         0         0       0           0       0          0         0           0          n/a         n/a                 n/a
mscc-red-flags                 2         1       1           0       0          0         0           1          n/a       0.0 %               2 min
nsaid-caution-post-chemo       0         0       0           0       0          0         0           0          n/a         n/a                 n/a
progressive-back-pain          1         1       0           0       0          0         0           0          n/a         n/a                 n/a

fired                 cards the rule produced: returned + shadow + suppressed
returned              cards returned to the EHR for the clinician (not shadow, not suppressed)
shadow                cards held back by shadow mode
suppressed            cards held back by the service: by a snooze (snooze; the snooze may have
                      started before the window) or as already shown in the ordering session
                      (duplicate)
accepted, overridden  feedback entries on the returned cards, whenever they arrived
with snooze           overrides with a reason that snoozes the rule for the patient: each started a
                      snooze, whose held-back cards count under suppressed: snooze; n/a: the card
                      offers no such reason
acceptance            accepted / (accepted + overridden): over the feedback on returned cards, a
                      returned card without feedback is not counted; n/a without feedback
median to feedback    median of the feedback's outcomeTimestamp minus the card's creation time

Snooze (overrides that snoozed a rule, and the cards the snoozes then held back)
rule            snooze reasons                                     overridden with snooze  suppressed by snooze
--------------  -------------------------------------------------  ----------------------  --------------------
gcsf-bone-pain  Snooze for this chemotherapy cycle [snooze-cycle]                       1                     1

Override reasons (rules with cards returned: each reason the card offers, then any other code)
rule                   reason                                                              overrides
---------------------  ------------------------------------------------------------------  ---------
gcsf-bone-pain         Pain not due to G-CSF [pain-not-gcsf]                                       0
gcsf-bone-pain         Snooze for this chemotherapy cycle [snooze-cycle]                           1
gcsf-bone-pain         patient-declined (not offered by this rule)                                 1
mscc-red-flags         Already managed by the oncology or MSCC team [managed-by-oncology]          0
mscc-red-flags         Patient declined [patient-declined]                                         0
mscc-red-flags         (none)                                                                      1
progressive-back-pain  Already managed by the oncology team [managed-by-oncology]                  0
progressive-back-pain  Cause of the pain known and assessed [cause-known]                          0

Cards per rule per ISO week
rule                   week      cards
---------------------  --------  -----
gcsf-bone-pain         2026-W10      2
gcsf-bone-pain         2026-W11      5
mscc-red-flags         2026-W10      2
progressive-back-pain  2026-W11      1

Services (hook calls received in the window; latency: nearest-rank percentiles)
service                calls  p50 ms  p95 ms  412  412 rate  deadline exceeded
---------------------  -----  ------  ------  ---  --------  -----------------
back-pain-after-chemo      5    30.0  1000.0    1    20.0 %                  1
gcsf-order-select          2     5.5     7.2    0     0.0 %                  0

Unmatched feedback (cards never shown; not in the figures above): 3 (back-pain-after-chemo 2, gcsf-order-select 1)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request, tmp_path):
    """A migrated database holding the seed rows; yields its URL."""
    url = (f"sqlite:///{tmp_path / 'report.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = SqlStore(url)
    upgrade(store.engine)
    seed.wipe(store.engine)
    seed.seed(store.engine)
    yield url, store.engine
    if request.param == "postgresql":
        seed.wipe(store.engine)
    store.engine.dispose()


def _report(engine, window=seed.WINDOW):
    return read_report(engine, window, generated_at=seed.GENERATED, reasons=seed.OFFERED)


def test_json_has_the_exact_figures(seeded):
    _, engine = seeded
    doc = json.loads(render(_report(engine), "json"))
    assert list(doc) == ["title", "window", "generated_at", "rules", "weekly_cards", "services",
                         "unmatched_feedback"]
    assert doc["window"] == {"since": "2026-03-02T00:00:00Z", "until": "2026-03-16T00:00:00Z"}
    assert doc["generated_at"] == "2026-03-20T09:30:00Z"
    assert {r["rule"]: r for r in doc["rules"]} == seed.expected_rules()
    assert [r["rule"] for r in doc["rules"]] == sorted(seed.expected_rules())
    assert doc["weekly_cards"] == WEEKLY
    assert doc["services"] == SERVICES
    assert doc["unmatched_feedback"] == {"entries": 3, "by_service": {seed.PV: 2, seed.OS: 1}}


def test_text_is_exact(seeded):
    _, engine = seeded
    assert render(_report(engine), "text") == EXPECTED_TEXT


def test_the_readme_example_is_this_text():
    """README "Governance report" shows the seeded report's text: it must stay that text."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Governance report\n", 1)[1].split("\n## ", 1)[0]
    assert section.split("```text\n", 1)[1].split("```", 1)[0] == EXPECTED_TEXT


def test_csv_has_one_table_per_section(seeded):
    _, engine = seeded
    tables = [list(csv.reader(io.StringIO(block))) for block in render(_report(engine), "csv").split("\n\n")]
    assert [t[0][0] for t in tables] == ["section"] * 5
    rules, reasons, weekly, services, unmatched = tables
    assert rules[0] == ["section", "rule", "fired", "returned", "shadow", "suppressed", "suppressed_snooze",
                        "suppressed_duplicate", "accepted", "overridden", "overridden_with_snooze", "acceptance_rate",
                        "median_seconds_to_feedback"]
    by_rule = {row[1]: row for row in rules[1:]}
    assert by_rule[seed.G] == ["rules", seed.G, "7", "4", "1", "2", "1", "1", "1", "2", "1", "0.3333", "3600.0"]
    assert by_rule[seed.M] == ["rules", seed.M, "2", "1", "1", "0", "0", "0", "0", "1", "", "0.0", "120.0"]
    assert by_rule[seed.P] == ["rules", seed.P, "1", "1", "0", "0", "0", "0", "0", "0", "", "", ""]
    assert len(by_rule) == 6
    # every rule x every reason code of the report; not offered: offered false, overrides empty
    assert reasons[0] == ["section", "rule", "override_reason", "display", "offered", "overrides"]
    assert [(row[1], row[2]) for row in reasons[1:]] == [(rule, code) for rule in sorted(seed.expected_rules())
                                                         for code in seed.REASON_CODES]
    by_pair = {(row[1], row[2]): row[3:] for row in reasons[1:]}
    assert [by_pair[seed.G, code] for code in seed.REASON_CODES] == [
        ["", "false", ""], ["", "false", ""], ["", "false", ""], ["", "false", ""],
        ["Pain not due to G-CSF", "true", "0"], ["", "false", "1"],  # received, though not offered
        ["Snooze for this chemotherapy cycle", "true", "1"], ["", "true", "0"]]
    assert [by_pair[seed.M, code] for code in seed.REASON_CODES] == [
        ["", "false", ""], ["", "false", ""], ["", "false", ""],
        ["Already managed by the oncology or MSCC team", "true", "0"], ["", "false", ""],
        ["Patient declined", "true", "0"], ["", "false", ""], ["", "true", "1"]]
    # a rule whose card offers no reason: only "(none)" applies
    assert [by_pair["gcsf-order-dose-review", code][2] for code in seed.REASON_CODES] == [""] * 7 + ["0"]
    assert sum(1 for row in reasons[1:] if row[5] == "") == sum(
        1 for r in seed.expected_rules().values() for n in r["overridden_by_reason"].values() if n is None)
    assert weekly == [["section", "rule", "week", "cards"],
                      *(["weekly_cards", w["rule"], w["week"], str(w["cards"])] for w in WEEKLY)]
    assert services == [
        ["section", "service", "calls", "latency_ms_p50", "latency_ms_p95", "calls_412", "rate_412",
         "deadline_exceeded", "cards"],
        ["services", seed.PV, "5", "30.0", "1000.0", "1", "0.2", "1", "3"],
        ["services", seed.OS, "2", "5.5", "7.25", "0", "0.0", "0", "0"],
    ]
    assert unmatched[0] == ["section", "service", "entries"]
    assert unmatched[1:] == [["unmatched_feedback", seed.PV, "2"], ["unmatched_feedback", seed.OS, "1"]]


class _Tables(HTMLParser):
    """The page's ``table[data-section]``: section -> rows of {data-col: text}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._section: str | None = None
        self._row: dict[str, str] | None = None
        self._col: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-section" in a:
            self._section = a["data-section"]
            self.tables[self._section] = []
        elif tag == "tr" and self._section:
            self._row = {}
        elif tag in ("td", "th") and self._row is not None and "data-col" in a:
            self._col = a["data-col"]
            self._row[self._col] = ""

    def handle_data(self, data):
        if self._col is not None and self._row is not None:
            self._row[self._col] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._col = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._section:
                self.tables[self._section].append(self._row)
            self._row = None
        elif tag == "table":
            self._section = None


def parse_tables(page: str) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def test_html_tables_have_the_exact_figures(seeded):
    _, engine = seeded
    page = render(_report(engine), "html")
    tables = parse_tables(page)
    rules = {r["rule"]: r for r in tables["rules"]}
    assert rules[seed.G] == {"rule": seed.G, "fired": "7", "returned": "4", "shadow": "1", "suppressed": "2",
                             "suppressed_snooze": "1", "suppressed_duplicate": "1", "accepted": "1",
                             "overridden": "2", "overridden_with_snooze": "1", "acceptance_rate": "33.3 %",
                             "median_to_feedback": "60 min"}
    assert rules[seed.M]["overridden_with_snooze"] == "not offered"
    # the snooze loop: the override that snoozed gcsf-bone-pain, the card the snooze held back
    assert tables["snooze"] == [{"rule": seed.G, "reasons": "Snooze for this chemotherapy cycle [snooze-cycle]",
                                 "overridden_with_snooze": "1", "suppressed_snooze": "1"}]
    assert rules[seed.M]["acceptance_rate"] == "0.0 %" and rules[seed.M]["median_to_feedback"] == "2 min"
    assert rules[seed.P]["acceptance_rate"] == "n/a" and rules[seed.P]["median_to_feedback"] == "n/a"
    assert len(rules) == 6
    # the reasons x rules matrix: displays with the code in brackets, "not offered" cells
    na = "not offered"
    reasons = {row["reason"]: row for row in tables["override_reasons"]}
    assert list(reasons) == [
        "Analgesia already in place [analgesia-in-place]", "Benefit outweighs risk, monitored [benefit-outweighs-risk]",
        "Cause of the pain known and assessed [cause-known]",
        "Already managed by the oncology or MSCC team / Already managed by the oncology team [managed-by-oncology]",
        "Pain not due to G-CSF [pain-not-gcsf]", "Patient declined [patient-declined]",
        "Snooze for this chemotherapy cycle [snooze-cycle]", "(none)"]
    order = ["back-pain-supportive-care", seed.G, "gcsf-order-dose-review", seed.M, "nsaid-caution-post-chemo", seed.P]
    assert [reasons["Snooze for this chemotherapy cycle [snooze-cycle]"][rule] for rule in order] == [
        na, "1", na, na, na, na]
    assert [reasons["Patient declined [patient-declined]"][rule] for rule in order] == [
        na, "1 (not offered)", na, "0", na, na]
    assert [reasons["(none)"][rule] for rule in order] == ["0", "0", "0", "1", "0", "0"]
    assert [reasons["Cause of the pain known and assessed [cause-known]"][rule] for rule in order] == [
        na, na, na, na, na, "0"]
    assert page.count('<td class="na"') == 33 + 5  # the matrix and the rules' "overridden with snooze"
    assert tables["weekly_cards"] == [{"rule": w["rule"], "week": w["week"], "cards": str(w["cards"])}
                                      for w in WEEKLY]
    assert tables["services"] == [
        {"service": seed.PV, "calls": "5", "p50_ms": "30.0", "p95_ms": "1000.0", "calls_412": "1",
         "rate_412": "20.0 %", "deadline_exceeded": "1", "cards": "3"},
        {"service": seed.OS, "calls": "2", "p50_ms": "5.5", "p95_ms": "7.2", "calls_412": "0",
         "rate_412": "0.0 %", "deadline_exceeded": "0", "cards": "0"}]
    assert tables["unmatched_feedback"] == [{"service": seed.PV, "entries": "2"}, {"service": seed.OS, "entries": "1"},
                                            {"total": "3"}]
    # the legend under the rules table: every column, the acceptance's denominator stated
    legend = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page.split('data-legend="rules"')[1].split("</dl>")[0])
    assert [term for term, _ in legend] == ["fired", "returned", "shadow", "suppressed", "accepted, overridden",
                                            "with snooze", "acceptance", "median to feedback"]
    assert dict(legend)["acceptance"] == ("accepted / (accepted + overridden): over the feedback on returned cards, "
                                          "a returned card without feedback is not counted; n/a without feedback")
    # self-contained: three inline SVG charts, no script, nothing fetched
    assert page.count("<svg") == 3
    assert "<script" not in page.lower()
    for needle in ("src=", "href=", "@import", "url(", "xlink:href"):
        assert needle not in page, needle


def chart_facts(page: str, name: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A pygal chart of the page: its legend (series -> colour) and its axes' tick labels."""
    fig = page.split(f'data-chart="{name}"')[1].split("</figure>")[0]
    colours = dict(re.findall(r"\.color-(\d+),[^{]*\{stroke:(#[0-9a-f]+);fill:", fig))
    legend = {text: colours[n] for n, text in re.findall(r'class="color-(\d+) reactive" /><text[^>]*>([^<]*)</text>', fig)}
    axes = {chunk.split('"')[0].split()[0]: re.findall(r"<text[^>]*>([^<]*)</text>", chunk.split('<g class="series')[0])
            for chunk in fig.split('<g class="axis ')[1:]}
    return legend, axes


def test_charts_colour_each_rule_alike_and_count_in_whole_numbers(seeded):
    """Every series is a rule, coloured by its place among the sorted rule ids of the release (so
    also the same from one report to the next); the count axes have whole-number ticks only."""
    _, engine = seeded
    page = render(_report(engine), "html")
    colours = {seed.G: "#e69f00", seed.M: "#d55e00", seed.P: "#56b4e9"}  # 2nd, 4th and 6th rule
    weekly, weekly_axes = chart_facts(page, "weekly")
    assert weekly == colours and weekly_axes["y"] == ["0", "1", "2", "3", "4", "5", "6"]  # W11: 5 + 1
    acceptance, acceptance_axes = chart_facts(page, "acceptance")
    assert acceptance == {seed.G: colours[seed.G], seed.M: colours[seed.M]}
    assert acceptance_axes == {"y": ["0", "1", "2"], "x": ["accepted", "overridden"]}
    reasons, reasons_axes = chart_facts(page, "reasons")
    assert reasons == {seed.G: colours[seed.G], seed.M: colours[seed.M]}
    assert reasons_axes == {"y": ["(none)", "Snooze for this chemotherapy cycle [snooze-cycle]",
                                  "Patient declined [patient-declined]"], "x": ["0", "1"]}
    # a window where progressive-back-pain alone fired: the same colour, and 0 and 1 (no 0.5)
    alone = render(read_report(engine, Window(datetime(2026, 3, 14, tzinfo=UTC), seed.UNTIL),
                               reasons=seed.OFFERED), "html")
    assert chart_facts(alone, "weekly") == ({seed.P: colours[seed.P]}, {"y": ["0", "1"], "x": ["2026-W11"]})


def test_html_escapes_what_the_ehr_sent(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    upgrade(store.engine)
    seed.seed(store.engine)
    from backpain_cds.storage import feedback

    with store.engine.begin() as conn:
        conn.execute(feedback.update().where(feedback.c.card_uuid == "c2").values(
            override_code='<script>alert("x")</script><img src=x onerror=alert(1)>'))
    page = render(_report(store.engine), "html")
    store.engine.dispose()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(" in page  # in the table (the chart's legend escapes it too)


def test_the_window_boundaries(seeded):
    _, engine = seeded
    # one microsecond later: c1 (exactly at since), the first call and nothing else drop out
    later = read_report(engine, Window(seed.SINCE.replace(microsecond=1), seed.UNTIL))
    g = next(r for r in later.rules if r.rule == seed.G)
    assert (g.fired, g.returned, g.accepted, g.overridden, g.overridden_with_snooze) == (6, 3, 0, 2, 1)
    # the snoozes count with their card: c2's goes with c2, x2's (created a second before) stays out
    after_c2 = read_report(engine, Window(datetime(2026, 3, 3, 10, 0, 1, tzinfo=UTC), seed.UNTIL))
    assert next(r for r in after_c2.rules if r.rule == seed.G).overridden_with_snooze == 0
    earlier = read_report(engine, Window(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), seed.UNTIL))
    assert next(r for r in earlier.rules if r.rule == seed.G).overridden_with_snooze == 2
    pv = next(s for s in later.services if s.service == seed.PV)
    assert pv.calls == 4
    # until moved past x1 (exactly at the old until): x1 and its accepted feedback come in
    wider = read_report(engine, Window(seed.SINCE, datetime(2026, 3, 16, 0, 0, 1, tzinfo=UTC)))
    g = next(r for r in wider.rules if r.rule == seed.G)
    assert (g.fired, g.returned, g.accepted) == (8, 5, 2)
    assert wider.unmatched_total == 4
    assert next(s for s in wider.services if s.service == seed.PV).calls == 6


def test_returned_is_fired_less_shadow_and_suppressed(seeded):
    _, engine = seeded
    report = _report(engine)
    assert {r.rule: (r.fired, r.returned, r.shadow, r.suppressed) for r in report.rules if r.fired} == {
        seed.G: (7, 4, 1, 2), seed.M: (2, 1, 1, 0), seed.P: (1, 1, 0, 0)}
    assert all(r.returned == r.fired - r.shadow - r.suppressed for r in report.rules)


def test_unmatched_feedback_is_not_in_the_acceptance(seeded):
    _, engine = seeded
    report = _report(engine)
    g = next(r for r in report.rules if r.rule == seed.G)
    # the accepted entry naming the shadow card c4 sits in feedback_unmatched: 1 accepted, not 2
    assert (g.accepted, g.overridden, g.shadow) == (1, 2, 1)
    assert report.unmatched_total == 3


def test_an_empty_window(seeded):
    _, engine = seeded
    report = read_report(engine, Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)))
    doc = json.loads(render(report, "json"))
    assert all(r["fired"] == 0 and r["acceptance_rate"] is None for r in doc["rules"])
    assert doc["services"] == [] and doc["weekly_cards"] == []
    assert doc["unmatched_feedback"] == {"entries": 0, "by_service": {}}
    page = render(report, "html")
    assert "<svg" not in page and "No feedback on returned cards" in page
    assert "(no hook calls)" in render(report, "text")


# --- the command line ---------------------------------------------------------------------------

def _config(tmp_path, url):
    path = tmp_path / "report.toml"
    path.write_text(f'database_url = "{url}"\n')
    return str(path)


def test_cli_writes_every_format(seeded, tmp_path, capsys):
    url, _ = seeded
    config = _config(tmp_path, url)
    window = ["--since", "2026-03-02", "--until", "2026-03-16T01:00:00+01:00"]  # = 2026-03-16T00:00Z
    assert main(["report", "--config", config, *window, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["window"] == {"since": "2026-03-02T00:00:00Z", "until": "2026-03-16T00:00:00Z"}
    reason_keys = ("overridden_by_reason", "override_reasons_offered")
    assert ({r["rule"]: {k: v for k, v in r.items() if k not in reason_keys} for r in doc["rules"]}
            == {rule: {k: v for k, v in r.items() if k not in reason_keys} for rule, r in seed.expected_rules().items()})
    # the override reasons are the packaged knowledge's (no [knowledge] path in the config)
    g = next(r for r in doc["rules"] if r["rule"] == seed.G)
    assert g["override_reasons_offered"] == [
        {"code": "pain-not-gcsf", "display": "Pain not due to G-CSF", "snoozes": False},
        {"code": "analgesia-in-place", "display": "Analgesia already in place", "snoozes": False},
        {"code": "managed-by-oncology", "display": "Already managed by the oncology team", "snoozes": False},
        {"code": "snooze-cycle", "display": "Snooze for this chemotherapy cycle", "snoozes": True}]
    assert (g["overridden_by_reason"]["snooze-cycle"], g["overridden_by_reason"]["patient-declined"],
            g["overridden_by_reason"]["lab-out-of-date"]) == (1, 1, None)
    for fmt in ("text", "csv", "html"):
        out = tmp_path / f"report.{fmt}"
        assert main(["report", "--config", config, *window, "--format", fmt, "--output", str(out)]) == 0
        assert capsys.readouterr().out == ""
        expected = render(read_report(seeded[1], seed.WINDOW, generated_at=seed.GENERATED), fmt)
        if fmt == "text":  # the same but for the generation time
            assert out.read_text().splitlines()[3:] == expected.splitlines()[3:]
        elif fmt == "csv":
            assert out.read_text() == expected
        else:
            assert parse_tables(out.read_text()) == parse_tables(expected)


def test_cli_shows_the_sites_override_reasons(seeded, tmp_path, capsys):
    """A [knowledge] path overlay's displays are the ones the report shows; an invalid one is
    refused in one line."""
    url, _ = seeded
    site = tmp_path / "site"
    site.mkdir()
    (site / "actions.toml").write_text(
        '[[override_reasons.gcsf-bone-pain]]\ncode = "snooze-cycle"\ndisplay = "Pause until the next cycle"\n'
        "snooze_days = 14\n")
    config = tmp_path / "site.toml"
    config.write_text(f'database_url = "{url}"\n[knowledge]\npath = "{site}"\n')
    window = ["--since", "2026-03-02", "--until", "2026-03-16"]
    assert main(["report", "--config", str(config), *window]) == 0
    text = capsys.readouterr().out
    assert "gcsf-bone-pain         Pause until the next cycle [snooze-cycle]" in text
    assert "Snooze for this chemotherapy cycle" not in text
    (site / "actions.toml").write_text('[[override_reasons.no-such-rule]]\ncode = "x"\ndisplay = "X"\n')
    assert main(["report", "--config", str(config), *window]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backpain-cds: error: invalid knowledge: ") and "no-such-rule" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--since", "2026-02-30"], "--since '2026-02-30' is not a date"),
    (["--until", "yesterday"], "--until 'yesterday' is not a date"),
    (["--since", "2026-03-01T00:00:00"], "is not a date"),  # no offset
    (["--since", "2026-03-02", "--until", "2026-03-02"], "must be before --until"),
])
def test_cli_refuses_a_bad_date_in_one_line(tmp_path, capsys, args, message):
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'none.sqlite3'}")
    assert main(["report", "--config", config, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "none.sqlite3").exists()


def test_cli_default_window_is_the_last_30_days(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'd.sqlite3'}"
    upgrade(SqlStore(url).engine)
    assert main(["report", "--config", _config(tmp_path, url), "--format", "json"]) == 0
    window = json.loads(capsys.readouterr().out)["window"]
    since, until = (datetime.fromisoformat(window[k].replace("Z", "+00:00")) for k in ("since", "until"))
    assert (until - since).days == 30 and abs((datetime.now(UTC) - until).total_seconds()) < 60


def test_cli_refuses_a_database_not_at_the_schema_revision(tmp_path, capsys):
    from backpain_cds.schema import MIGRATE_HINT

    missing = tmp_path / "missing.sqlite3"
    assert main(["report", "--config", _config(tmp_path, f"sqlite:///{missing}")]) == 2
    assert capsys.readouterr().err == (f"backpain-cds: error: no database at {missing}: no such file (check "
                                       "database_url, or create the database with `backpain-cds migrate`)\n")
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite3"
    import sqlite3

    sqlite3.connect(empty).close()
    assert main(["report", "--config", _config(tmp_path, f"sqlite:///{empty}")]) == 2
    assert capsys.readouterr().err == (f"backpain-cds: error: the database has no backpain-cds tables yet: "
                                       f"{MIGRATE_HINT}\n")
