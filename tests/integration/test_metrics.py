"""``GET /metrics``: scraped and parsed, every value checked against the rows."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backfill.config import get_settings
from backfill.models import ApiCallOutcome, ControlState, QuotaUsage
from backfill.quota import day_start
from backfill.web import create_app
from tests.support.webutil import add_attempt, add_month

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


def scrape(app: Flask) -> Samples:
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_on_an_empty_database(app: Flask) -> None:
    samples = scrape(app)
    for status in ("pending", "processing", "completed", "failed", "retry"):
        assert value(samples, "backfill_months", status=status) == 0
    assert value(samples, "backfill_isbns_resolved") == 0
    assert value(samples, "backfill_quota_remaining", provider="isbndb") == (
        get_settings().isbndb_daily_limit
    )
    assert value(samples, "backfill_paused") == 0
    # never scheduled: infinitely long ago (an alert on the age fires), no timestamp
    assert value(samples, "backfill_seconds_since_last_schedule") == float("inf")
    assert not any(name == "backfill_last_schedule_timestamp_seconds" for name, _ in samples)
    for provider in ("gemini", "xai", "isbndb"):
        assert value(samples, "backfill_api_calls_total", provider=provider, outcome="ok") == 0


def test_metrics_match_the_database(app: Flask, session: Session) -> None:
    done = add_month(session, 2024, 1, status="completed", books_generated=20, isbns_resolved=15)
    add_month(session, 2024, 2, status="completed", books_generated=10, isbns_resolved=5)
    failed = add_month(session, 2024, 3, status="failed")
    add_month(session, 2024, 4, status="retry")
    add_month(session, 2024, 5)
    add_attempt(session, done, 1, "completed", 42.0, gemini_calls=1, xai_calls=1, isbndb_calls=3)
    add_attempt(session, done, 2, "completed", 0.5, gemini_calls=1, isbndb_calls=1)
    add_attempt(session, failed, 1, "retry", 7.0, gemini_calls=2)
    add_attempt(session, failed, 2, "failed", 700.0, gemini_calls=2, xai_calls=2)
    add_attempt(session, failed, 3, "running", None, gemini_calls=9)  # not finished: no duration
    now = session.scalar(select(func.now()))
    assert now is not None
    settings = get_settings()
    session.add(
        QuotaUsage(provider="isbndb", window="day", window_start=day_start(settings, now), calls=7)
    )
    last = now - dt.timedelta(seconds=90)
    session.add(ControlState(key="last_schedule", value={"at": last.isoformat(), "claimed": 2}))
    session.add(ControlState(key="paused", value={"paused": True}))
    session.execute(
        text(
            "INSERT INTO books (isbn13, title)"
            " VALUES ('9780000000002', 'a'), ('9780000000019', 'b')"
        )
    )
    session.flush()

    samples = scrape(app)
    expected = {"pending": 1, "processing": 0, "completed": 2, "failed": 1, "retry": 1}
    for status, n in expected.items():
        assert value(samples, "backfill_months", status=status) == n
    assert value(samples, "backfill_isbns_resolved") == 20
    assert value(samples, "backfill_books_generated") == 30
    assert value(samples, "backfill_books_stored") == 2
    calls = {("gemini", "ok"): 5, ("gemini", "server_error"): 2, ("isbndb", "ok"): 3}
    calls |= {("isbndb", "not_found"): 1, ("isbndb", "rate_limited"): 2}
    for (provider, outcome), n in calls.items():
        session.add(ApiCallOutcome(provider=provider, outcome=outcome, calls=n))
    session.flush()
    samples = scrape(app)
    for (provider, outcome), n in calls.items():
        assert value(samples, "backfill_api_calls_total", provider=provider, outcome=outcome) == n
    assert value(samples, "backfill_api_calls_total", provider="xai", outcome="ok") == 0
    assert value(samples, "backfill_quota_used", provider="isbndb") == 7
    assert value(samples, "backfill_quota_remaining", provider="isbndb") == (
        settings.isbndb_daily_limit - 7
    )
    assert value(samples, "backfill_quota_used", provider="gemini") == 0
    assert value(samples, "backfill_paused") == 1

    h = "backfill_month_duration_seconds"
    assert value(samples, h + "_count", outcome="completed") == 2
    assert value(samples, h + "_sum", outcome="completed") == 42.5
    assert value(samples, h + "_bucket", outcome="completed", le="1.0") == 1
    assert value(samples, h + "_bucket", outcome="completed", le="30.0") == 1
    assert value(samples, h + "_bucket", outcome="completed", le="60.0") == 2
    assert value(samples, h + "_bucket", outcome="completed", le="+Inf") == 2
    assert value(samples, h + "_bucket", outcome="failed", le="600.0") == 0
    assert value(samples, h + "_bucket", outcome="failed", le="1200.0") == 1
    assert value(samples, h + "_count", outcome="retry") == 1
    assert (h + "_count", (("outcome", "running"),)) not in samples

    age = value(samples, "backfill_seconds_since_last_schedule")
    assert 90 <= age < 90 + 30
    assert value(samples, "backfill_last_schedule_timestamp_seconds") == pytest.approx(
        last.timestamp()
    )
