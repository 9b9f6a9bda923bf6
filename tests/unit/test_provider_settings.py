"""The resolver and retry settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from backfill.config import ConfigError, Settings, load_settings


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings read from real environment variables (how every process gets them)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_defaults() -> None:
    s = load_settings()
    assert s.openlibrary_base_url == "https://openlibrary.org"
    assert s.openlibrary_contact is None and s.openlibrary_rate_per_second == 1
    assert s.openlibrary_daily_limit == 100_000
    assert s.google_books_base_url == "https://www.googleapis.com"
    assert s.google_books_api_key is None
    assert (s.google_books_daily_limit, s.google_books_rate_per_minute) == (1000, 60)
    assert s.resolvers == ("openlibrary", "googlebooks", "isbndb")
    assert s.verify_with_isbndb == "when-needed"
    assert s.provider_max_tries == 4
    assert (s.provider_retry_backoff_seconds, s.provider_retry_backoff_max_seconds) == (1.0, 20.0)


def test_a_contact_raises_the_open_library_rate_unless_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (
        from_env(monkeypatch, OPENLIBRARY_CONTACT="ops@example.org").openlibrary_rate_per_second
        == 3
    )
    assert from_env(monkeypatch, OPENLIBRARY_RATE_PER_SECOND="2").openlibrary_rate_per_second == 2
    url = load_settings(openlibrary_contact=" https://example.org/backfill ")
    assert url.openlibrary_contact == "https://example.org/backfill"
    assert load_settings(openlibrary_contact="").openlibrary_contact is None


def test_resolvers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = from_env(monkeypatch, RESOLVERS=" GoogleBooks , isbndb ", VERIFY_WITH_ISBNDB="required")
    assert s.resolvers == ("googlebooks", "isbndb")
    assert s.verify_with_isbndb == "required"
    assert load_settings(resolvers=["isbndb"]).resolvers == ("isbndb",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RESOLVERS": "openlibrary,worldcat"}, "RESOLVERS: unknown worldcat"),
        ({"RESOLVERS": "isbndb,openlibrary,isbndb"}, "RESOLVERS: names a resolver twice"),
        ({"RESOLVERS": ""}, "RESOLVERS: must name at least one"),
        ({"RESOLVERS": " , "}, "RESOLVERS: must name at least one"),
        ({"VERIFY_WITH_ISBNDB": "always"}, "VERIFY_WITH_ISBNDB: "),
        ({"PROVIDER_MAX_TRIES": "0"}, "PROVIDER_MAX_TRIES: "),
        ({"PROVIDER_RETRY_BACKOFF_SECONDS": "-1"}, "PROVIDER_RETRY_BACKOFF_SECONDS: "),
        ({"PROVIDER_RETRY_BACKOFF_MAX_SECONDS": "soon"}, "PROVIDER_RETRY_BACKOFF_MAX_SECONDS: "),
        ({"OPENLIBRARY_BASE_URL": "openlibrary.org"}, "OPENLIBRARY_BASE_URL: must be an http"),
        ({"GOOGLE_BOOKS_BASE_URL": "ftp://x"}, "GOOGLE_BOOKS_BASE_URL: must be an http"),
        ({"OPENLIBRARY_CONTACT": "me (at) home"}, "OPENLIBRARY_CONTACT: "),
        ({"OPENLIBRARY_CONTACT": "someone"}, "OPENLIBRARY_CONTACT: must be an email"),
        ({"OPENLIBRARY_RATE_PER_SECOND": "0"}, "OPENLIBRARY_RATE_PER_SECOND: "),
        ({"OPENLIBRARY_DAILY_LIMIT": "-1"}, "OPENLIBRARY_DAILY_LIMIT: "),
        ({"GOOGLE_BOOKS_DAILY_LIMIT": "lots"}, "GOOGLE_BOOKS_DAILY_LIMIT: "),
        ({"GOOGLE_BOOKS_RATE_PER_MINUTE": "-5"}, "GOOGLE_BOOKS_RATE_PER_MINUTE: "),
    ],
)
def test_a_bad_value_names_the_variable(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(monkeypatch, **env)
    assert message in str(caught.value)


def test_the_google_books_key_is_secret_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    s = from_env(monkeypatch, GOOGLE_BOOKS_API_KEY="gb-secret-value")
    assert s.google_books_api_key is not None
    assert s.google_books_api_key.get_secret_value() == "gb-secret-value"
    assert "gb-secret-value" not in repr(s) and "gb-secret-value" not in str(s)
