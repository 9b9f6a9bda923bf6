"""The months dashboard: rendering and access rules (in a real headless Chromium:
tests/system/test_dashboard_browser.py)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from backfill import scheduler
from backfill.config import load_settings
from backfill.web import create_app
from tests.support.webutil import SECRET, add_attempt, add_candidate, add_month

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


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
