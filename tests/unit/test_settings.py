"""Settings: defaults, the environment, the ISBNdb plan, errors that name the
variable, and secrets that never show (pure: no database, no network)."""

from __future__ import annotations

import pytest

from backfill.config import ConfigError, load_settings


def test_settings_defaults_work_on_this_machine() -> None:
    s = load_settings(_env_file=None)
    assert s.celery_broker_url.startswith("amqp://")
    assert s.isbndb_base_url == "https://api2.isbndb.com"
    assert s.gemini_base_url == "https://generativelanguage.googleapis.com"
    assert s.xai_base_url == "https://api.x.ai"
    assert s.isbndb_daily_limit == 5000 and s.isbndb_rate_per_second == 1
    assert s.settle_months == 3 and s.max_retries == 5


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISBNDB_DAILY_LIMIT", "15000")
    monkeypatch.setenv("ISBNDB_RATE_PER_SECOND", "3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example:5432/catalog")
    s = load_settings()
    assert s.isbndb_daily_limit == 15000 and s.isbndb_rate_per_second == 3
    assert s.database_url.startswith("postgresql+psycopg://")  # psycopg 3 driver


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("ISBNDB_DAILY_LIMIT", "lots", "ISBNDB_DAILY_LIMIT"),
        ("GEMINI_BASE_URL", "not a url", "GEMINI_BASE_URL"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("BACKFILL_LEASE_SECONDS", "-1", "BACKFILL_LEASE_SECONDS"),
    ],
)
def test_bad_setting_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISBNDB_API_KEY", "sekrit-value")
    monkeypatch.setenv("ISBNDB_DAILY_LIMIT", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sekrit-value" not in str(info.value)
    assert "sekrit-value" not in repr(load_settings(isbndb_daily_limit=1))


def test_rejected_urls_never_show_their_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2pw@db.example/x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2pw" not in str(info.value) and "DATABASE_URL" in str(info.value)


@pytest.mark.parametrize(
    ("plan", "daily", "rate", "bulk", "host"),
    [
        ("basic", 5000, 1, 100, "api2.isbndb.com"),
        ("premium", 15000, 3, 1000, "api.premium.isbndb.com"),
        ("pro", 50000, 5, 1000, "api.pro.isbndb.com"),
    ],
)
def test_isbndb_plan_sets_limits_unless_each_is_given(
    plan: str, daily: int, rate: int, bulk: int, host: str
) -> None:
    s = load_settings(ISBNDB_PLAN=plan)
    assert (s.isbndb_daily_limit, s.isbndb_rate_per_second, s.isbndb_bulk_size) == (
        daily,
        rate,
        bulk,
    )
    assert s.isbndb_base_url == f"https://{host}"
    s = load_settings(ISBNDB_PLAN=plan, ISBNDB_RATE_PER_SECOND=2)
    assert (s.isbndb_rate_per_second, s.isbndb_daily_limit) == (2, daily)


def test_secrets_are_redacted_from_messages_and_tracebacks() -> None:
    import io
    import logging

    from backfill import logs

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(load_settings(ISBNDB_API_KEY="isbndb-sekrit-42"), stream=stream)
        log = logging.getLogger("backfill.test")
        log.warning("calling with %s", "isbndb-sekrit-42")
        try:
            raise RuntimeError("header was isbndb-sekrit-42")
        except RuntimeError:
            log.exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = stream.getvalue()
    assert "isbndb-sekrit-42" not in text
    assert "calling with [REDACTED]" in text and "RuntimeError: header was [REDACTED]" in text
