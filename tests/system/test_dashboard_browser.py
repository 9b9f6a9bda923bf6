"""The months dashboard in a real headless Chromium (the rendering and access rules,
through Flask's test client, are in tests/integration/test_dashboard.py).

Chromium and its WebDriver come from ``scripts/install-browser``: when they are
missing, the ``chromium`` fixture runs it, and the test fails (never skips) if that
cannot install them, naming the command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from backfill import months, scheduler
from backfill.db import transaction
from backfill.models import BackfillLog
from backfill.web import create_app
from tests.conftest import ROOT
from tests.support.webutil import add_attempt, add_candidate, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = ROOT / "scripts" / "install-browser"
INSTALL_TIMEOUT = 600  # apt-get update and install on a slow mirror


def _installed() -> bool:
    return all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


def ensure_chromium(install: Path = INSTALL) -> None:
    """Install Chromium and its driver with ``install`` if they are missing; fail the
    test, with the command that would install them, if that does not work."""
    if _installed():
        return
    try:
        done = subprocess.run(
            [str(install)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        why = f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-600:]}"
        ok = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        why, ok = f"{type(exc).__name__}: {exc}", False
    if not (ok and _installed()):
        pytest.fail(
            f"{CHROMIUM} / {CHROMEDRIVER} are not installed and {install} could not "
            f"install them ({why or 'no output'}). Install them with: scripts/install-browser",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless browser's binary, installed first if it is missing."""
    ensure_chromium()
    return CHROMIUM


@pytest.fixture
def browser(chromium: str) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="backfill-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting in the browser"
        time.sleep(0.1)


@pytest.mark.browser
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)  # the first run may install Chromium
def test_dashboard_in_headless_chromium(committed_db: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    with transaction() as s:
        scheduler.seed_months(s, 2023, 2024)
        statuses = {
            (2024, 1): "completed", (2024, 2): "failed", (2024, 3): "processing",
            (2023, 7): "retry", (2023, 8): "completed",
        }  # fmt: skip
        for (y, m), status in statuses.items():
            row = months.get(s, y, m)
            row.status = status
            if status == "completed":
                row.books_generated, row.isbns_resolved, row.resolution_rate = 20, 15, 75
        failed = months.get(s, 2024, 2)
        failed.error_message = "gemini: 503 Service Unavailable (after 5 attempts)"
        s.flush()
        for n in range(1, 4):
            add_attempt(s, failed, n, "retry" if n < 3 else "failed", 3.0 * n, error=f"e{n}")
        add_candidate(
            s, failed, "Found Book", "resolved", isbn13="9780000000002", resolver="isbndb",
            generators=("gemini", "xai"),
        )  # fmt: skip
        add_candidate(s, failed, "Lost Book", "unresolved", generators=("xai",))

    app = create_app({"DASHBOARD_REFRESH_SECONDS": 1})
    with live_server(app) as url:
        browser.get(url + "/")
        cells = browser.find_elements(By.CSS_SELECTOR, "td.cell")
        assert len(cells) == 24
        shown = {c.get_attribute("data-month"): c.get_attribute("data-status") for c in cells}
        with transaction() as s:
            in_db = {r.label: r.status for r in s.query(BackfillLog)}
        assert shown == in_db
        completed = browser.find_element(By.CSS_SELECTOR, 'td[data-month="2024-01"]')
        assert "st-completed" in completed.get_attribute("class")
        assert completed.text == "15"
        assert "75.0%" in completed.get_attribute("title")

        browser.find_element(By.CSS_SELECTOR, 'td[data-month="2024-02"]').click()
        title = browser.find_element(By.ID, "detail-title")
        _wait(lambda: "2024-02" in title.text)
        assert "failed" in title.text
        error = browser.find_element(By.ID, "detail-error").text
        assert "gemini: 503 Service Unavailable" in error
        # Rows are read in one go: the page rebuilds them on every refresh (each second
        # here), so an element found a moment earlier can be gone when it is read.
        outcomes = browser.execute_script(
            "return Array.from(document.querySelectorAll('#detail-attempts tr'))"
            ".map(r => r.cells[3].textContent);"
        )
        assert outcomes == ["retry", "retry", "failed"]
        books = browser.execute_script(
            "return Array.from(document.querySelectorAll('#detail-candidates tr')).map("
            "r => ({cells: Array.from(r.cells).map(c => c.textContent), cls: r.className,"
            " bg: getComputedStyle(r).backgroundColor}));"
        )
        assert [b["cells"] for b in books] == [
            ["Found Book", "A. Writer", "resolved", "9780000000002", "isbndb", "gemini, xai"],
            ["Lost Book", "A. Writer", "unresolved", "—", "—", "xai"],
        ]
        found, lost = books
        assert lost["cls"] == "book-unresolved" and found["cls"] == "book-resolved"
        assert lost["bg"] != found["bg"]  # visibly different
        summary = browser.find_element(By.ID, "detail-books-summary").text
        assert "1 resolved, 1 unresolved" in summary

        # auto-refresh: a month that completes meanwhile changes colour without a reload
        with transaction() as s:
            s.execute(
                update(BackfillLog)
                .where(BackfillLog.year == 2024, BackfillLog.month == 3)
                .values(status="completed", books_generated=5, isbns_resolved=5)
            )
        cell = browser.find_element(By.CSS_SELECTOR, 'td[data-month="2024-03"]')
        _wait(lambda: cell.get_attribute("data-status") == "completed")
        assert browser.find_element(By.ID, "t-completed").text == "3"

        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        shot = artifacts / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert Path(shot).stat().st_size > 10_000
