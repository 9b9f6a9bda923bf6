"""The months dashboard: rendering, access rules, and a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from backfill import scheduler
from backfill.config import load_settings
from backfill.db import transaction
from backfill.models import BackfillLog
from backfill.web import create_app
from tests.conftest import ROOT
from tests.webutil import SECRET, add_attempt, add_candidate, add_month, live_server

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def cell_statuses(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-month="(\d{4}-\d{2})" data-status="(\w+)"', html))


def test_grid_shows_every_month_in_its_status(client: FlaskClient, session: Session) -> None:
    add_month(session, 2024, 1, status="completed", books_generated=10, isbns_resolved=8)
    add_month(session, 2024, 2, status="failed", error_message="boom")
    add_month(session, 2024, 3, status="processing")
    add_month(session, 2023, 12, status="retry")
    add_month(session, 2023, 11)
    resp = client.get("/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    statuses = cell_statuses(html)
    assert statuses["2024-01"] == "completed" and statuses["2024-02"] == "failed"
    assert statuses["2024-03"] == "processing" and statuses["2023-12"] == "retry"
    assert statuses["2023-11"] == "pending" and statuses["2024-04"] == "none"
    assert len(statuses) == 24  # two years x 12 columns
    assert "8 resolved / 10 generated (80.0%)" in html
    assert 'id="t-completed">1<' in html and 'id="t-total">5<' in html
    assert 'class="badge running"' in html
    assert 'data-provider="isbndb"' in html
    assert SECRET not in html


def test_paused_badge(client: FlaskClient, session: Session) -> None:
    scheduler.set_paused(session, True)
    assert 'class="badge paused"' in client.get("/").get_data(as_text=True)


def test_data_and_month_detail_json(client: FlaskClient, session: Session) -> None:
    row = add_month(session, 2024, 5, status="failed", error_message="final error")
    add_attempt(session, row, 1, "failed", 2.0, error="final error")
    data = client.get("/dashboard/data").json
    assert [(c["year"], c["month"], c["status"]) for c in data["grid"]] == [(2024, 5, "failed")]
    assert data["stats"]["by_status"]["failed"] == 1
    add_candidate(session, row, "Lost Book", "unresolved", generators=("gemini", "xai"))
    detail = client.get("/dashboard/months/2024-05").json
    assert detail["last_error"] == "final error" and len(detail["attempts"]) == 1
    [book] = detail["candidates"]
    assert (book["title"], book["status"], book["generators"]) == (
        "Lost Book", "unresolved", ["gemini", "xai"],
    )  # fmt: skip
    assert 'id="detail-candidates"' in client.get("/").get_data(as_text=True)
    assert client.get("/dashboard/months/2024-06").status_code == 404
    assert client.get("/dashboard/months/2024-6").status_code == 400


def test_remote_clients_must_log_in(client: FlaskClient) -> None:
    page = client.get("/", environ_base=REMOTE)
    assert page.status_code == 302 and page.location.startswith("/login")
    data = client.get("/dashboard/data", environ_base=REMOTE)
    assert data.status_code == 401 and data.json["error"]["code"] == "unauthorized"
    # A proxy on the same host relays remote clients: not local.
    proxied = client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
    assert proxied.status_code == 302

    form = client.get("/login", environ_base=REMOTE)
    assert form.status_code == 200 and 'name="secret"' in form.get_data(as_text=True)
    wrong = client.post("/login", data={"secret": "guess"}, environ_base=REMOTE)
    assert wrong.status_code == 401 and "wrong secret" in wrong.get_data(as_text=True)
    assert client.get("/", environ_base=REMOTE).status_code == 302

    ok = client.post("/login?next=//evil.example/", data={"secret": SECRET}, environ_base=REMOTE)
    assert ok.status_code == 302 and ok.location == "/"  # never an open redirect
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    assert SECRET not in cookie.value
    assert client.get("/", environ_base=REMOTE).status_code == 200
    assert client.get("/dashboard/data", environ_base=REMOTE).status_code == 200

    assert client.post("/logout", environ_base=REMOTE).status_code == 302
    assert client.get("/", environ_base=REMOTE).status_code == 302


def test_remote_access_refused_without_a_secret(session: Session) -> None:
    app = create_app(
        {"SESSION_FACTORY": lambda: session, "BACKFILL_SETTINGS": load_settings(cron_secret=None)}
    )
    c = app.test_client()
    assert c.get("/").status_code == 200  # local: still open
    assert "BACKFILL_CRON_SECRET" in c.get("/login", environ_base=REMOTE).get_data(as_text=True)
    refused = c.post("/login", data={"secret": ""}, environ_base=REMOTE)
    assert refused.status_code == 401
    assert c.get("/", environ_base=REMOTE).status_code == 302


# -- a real browser


@pytest.fixture
def browser() -> Iterator[object]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"{CHROMIUM} / {CHROMEDRIVER} not installed (run scripts/install-browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="backfill-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
def test_dashboard_in_headless_chromium(committed_db: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    with transaction() as s:
        scheduler.seed_months(s, 2023, 2024)
        statuses = {
            (2024, 1): "completed", (2024, 2): "failed", (2024, 3): "processing",
            (2023, 7): "retry", (2023, 8): "completed",
        }  # fmt: skip
        for (y, m), status in statuses.items():
            row = scheduler.get_month(s, y, m)
            row.status = status
            if status == "completed":
                row.books_generated, row.isbns_resolved, row.resolution_rate = 20, 15, 75
        failed = scheduler.get_month(s, 2024, 2)
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
        rows = browser.find_elements(By.CSS_SELECTOR, "#detail-attempts tr")
        assert [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows] == [
            "retry", "retry", "failed",
        ]  # fmt: skip
        # read in one go: the page rebuilds the rows on every refresh (each second here)
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
