"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright, or a
visible skip (a failure under BACKPAIN_CDS_REQUIRE_SERVERS=1) when either is missing."""

from __future__ import annotations

import contextlib
import shutil
import typing as t
from pathlib import Path

from tools.harness.servers import unavailable

#: screenshots and prints the browser tests save (git-ignored, kept by CI as artefacts)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def chromium_executable() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("Debian chromium is not installed (apt-get install chromium)")
    return ""


@contextlib.contextmanager
def headless_chromium() -> t.Iterator[t.Any]:
    """A launched headless Chromium (a Playwright ``Browser``), closed when the block ends."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()
