"""The governance report's HTML page in headless Chromium: it renders its tables and charts with
no console error and no request leaving the page (opened from a file, as a mailed report is),
and fits a 1280 px wide window (no horizontal scroll of the page or of any table; at 900 px only
a table may scroll, in its own box).

Needs Debian's ``chromium`` and the ``playwright`` package (as tests/e2e/test_smart_browser.py);
without them the test is skipped locally and fails when ``BACKPAIN_CDS_REQUIRE_SERVERS=1``.
Screenshots (screen and print media) go to ``tests/artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backpain_cds.report.command import read_report, render
from backpain_cds.schema import upgrade
from backpain_cds.storage import SqlStore
from tests.support import report_seed as seed
from tests.support.browser import ARTIFACTS, headless_chromium

pytestmark = pytest.mark.e2e

@pytest.fixture
def report_files(tmp_path) -> tuple[Path, Path]:
    """The seeded report's page with the tests' small reason catalogue, and with the packaged
    knowledge's (every reason of every rule: the widest reasons matrix)."""
    store = SqlStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    upgrade(store.engine)
    seed.seed(store.engine)
    paths = []
    for name, reasons in (("governance-report.html", seed.OFFERED), ("governance-report-packaged.html", None)):
        report = read_report(store.engine, seed.WINDOW, generated_at=seed.GENERATED, reasons=reasons)
        path = tmp_path / name
        path.write_text(render(report, "html"), encoding="utf-8")
        paths.append(path)
    store.engine.dispose()
    return paths[0], paths[1]


#: the page must fit a window this wide: no horizontal scroll of the page, nor of any table
WIDTH = 1280
_OVERFLOW = """() => ({page: document.documentElement.scrollWidth,
  tables: [...document.querySelectorAll('table')].filter(t => t.parentElement.scrollWidth > t.parentElement.clientWidth)
          .map(t => t.dataset.section)})"""


def test_the_report_page_renders_offline_without_errors(report_files) -> None:
    report_file, packaged_file = report_files
    url = report_file.as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with headless_chromium() as chromium:
        page = chromium.new_page(viewport={"width": WIDTH, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        allowed = {url, packaged_file.as_uri()}
        page.route("**/*", lambda route: route.continue_() if route.request.url in allowed else route.abort())
        page.goto(url, wait_until="load")
        assert page.title().startswith("backpain-cds governance report")
        # fits 1280 px: no horizontal scroll, and no table scrolling inside its own box either
        assert page.evaluate(_OVERFLOW) == {"page": WIDTH, "tables": []}
        assert page.locator('table[data-section="rules"] tbody tr').count() == 6
        assert page.locator('tr[data-rule="gcsf-bone-pain"] [data-col="acceptance_rate"]').inner_text() == "33.3 %"
        assert page.locator('tr[data-service="back-pain-after-chemo"] [data-col="p95_ms"]').inner_text() == "1000.0"
        for chart in ("weekly", "acceptance", "reasons"):
            svg = page.locator(f'figure[data-chart="{chart}"] svg')
            assert svg.count() == 1, chart
            box = svg.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100, (chart, box)
        # the charts drew their bars (pygal's rect.rect elements), with the rules as labels
        assert page.locator('figure[data-chart="weekly"] svg rect.rect').count() >= 4
        assert "gcsf-bone-pain" in page.locator('figure[data-chart="weekly"]').inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "governance-report.png"), full_page=True)
        page.emulate_media(media="print")
        page.screenshot(path=str(ARTIFACTS / "governance-report-print.png"), full_page=True)
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        # the packaged catalogue: 16 reasons x 6 rules, the longest displays; fits as well
        page.emulate_media(media="screen")
        page.goto(packaged_file.as_uri(), wait_until="load")
        assert page.locator('table[data-section="override_reasons"] tbody tr').count() == 17
        assert page.evaluate(_OVERFLOW) == {"page": WIDTH, "tables": []}
        page.screenshot(path=str(ARTIFACTS / "governance-report-packaged.png"), full_page=True)
        # narrower (a laptop with a side bar): still no page scroll; a table may scroll in its box
        page.set_viewport_size({"width": 900, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") == 900
    assert problems == []
    assert requests == [url, packaged_file.as_uri()]  # the pages themselves, nothing else
