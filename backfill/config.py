"""Settings: the one place that reads the environment.

Every process (web, worker, beat, CLI, tests) builds a :class:`Settings` from
environment variables with :func:`get_settings`; tests build their own with
``load_settings(**overrides)`` instead of patching ``os.environ``.
A bad value fails at start-up with one line that names the variable.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from backfill.constants import MAX_YEAR, MIN_YEAR


class ConfigError(ValueError):
    """A setting has a value the service cannot start with."""


def _env(name: str, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name`` (or its field name)."""
    return Field(validation_alias=AliasChoices(name, name.lower()), **kwargs)


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://host[:port]")
    return value.rstrip("/")


# ISBNdb's plans (isbndb.com/isbn-database and the API v2 documentation): daily
# calls, requests per second, ISBNs per bulk POST /books, and the endpoint the
# faster rate is served on.
ISBNDB_PLANS: dict[str, dict[str, Any]] = {
    "basic": {
        "isbndb_daily_limit": 5000,
        "isbndb_rate_per_second": 1,
        "isbndb_bulk_size": 100,
        "isbndb_base_url": "https://api2.isbndb.com",
    },
    "premium": {
        "isbndb_daily_limit": 15000,
        "isbndb_rate_per_second": 3,
        "isbndb_bulk_size": 1000,
        "isbndb_base_url": "https://api.premium.isbndb.com",
    },
    "pro": {
        "isbndb_daily_limit": 50000,
        "isbndb_rate_per_second": 5,
        "isbndb_bulk_size": 1000,
        "isbndb_base_url": "https://api.pro.isbndb.com",
    },
}


# The title-search sources the resolver may consult, in the order RESOLVERS lists them.
RESOLVER_NAMES = ("openlibrary", "googlebooks", "isbndb")
# Tries per provider request inside one attempt (PROVIDER_MAX_TRIES's default).
DEFAULT_PROVIDER_MAX_TRIES = 4


def _resolver_order(value: Any) -> tuple[str, ...]:
    """RESOLVERS as a tuple: a comma list (environment) or a sequence (overrides)."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        raise ValueError("must be a comma-separated list")
    names = tuple(str(name).strip().lower() for name in value if str(name).strip())
    unknown = [name for name in names if name not in RESOLVER_NAMES]
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)}; use {', '.join(RESOLVER_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError("names a resolver twice")
    # An empty order would leave every book without a quoted ISBN unresolved, which
    # is never what a run wants: refuse it rather than guess.
    if not names:
        raise ValueError(f"must name at least one of {', '.join(RESOLVER_NAMES)}")
    return names


def _contact(value: str | None) -> str | None:
    """OPENLIBRARY_CONTACT: an email address or an http(s) URL, safe inside a header."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    # It goes into the User-Agent header verbatim: no control characters, no brackets
    # that would end the comment it sits in.
    if any(ord(ch) < 32 or ch in "()" for ch in value) or len(value) > 200:
        raise ValueError("must be one short line without brackets")
    if "@" in value and " " not in value and "://" not in value:
        return value
    try:
        _http_url(value)
    except ValueError:
        raise ValueError("must be an email address or an http(s) URL") from None
    return value


class Settings(BaseSettings):
    """Typed settings. Field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, case_sensitive=False
    )

    # -- infrastructure
    database_url: str = _env(
        "DATABASE_URL", default="postgresql+psycopg://postgres@127.0.0.1:5432/backfill"
    )
    celery_broker_url: str = _env(
        "CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//"
    )
    task_queue: str = _env("BACKFILL_TASK_QUEUE", default="backfill")
    cron_secret: SecretStr | None = _env("BACKFILL_CRON_SECRET", default=None)

    # -- providers (defaults: the real public endpoints)
    gemini_api_key: SecretStr | None = _env("GEMINI_API_KEY", default=None)
    gemini_base_url: str = _env(
        "GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com"
    )
    gemini_model: str = _env("GEMINI_MODEL", default="gemini-2.5-flash")
    xai_api_key: SecretStr | None = _env("XAI_API_KEY", default=None)
    xai_base_url: str = _env("XAI_BASE_URL", default="https://api.x.ai")
    xai_model: str = _env("XAI_MODEL", default="grok-3-mini")
    xai_enabled: bool = _env("XAI_ENABLED", default=True)
    isbndb_api_key: SecretStr | None = _env("ISBNDB_API_KEY", default=None)
    # The subscription: sets the four ISBNdb values below unless each is given.
    isbndb_plan: Literal["basic", "premium", "pro"] = _env("ISBNDB_PLAN", default="basic")
    isbndb_base_url: str = _env("ISBNDB_BASE_URL", default="https://api2.isbndb.com")
    isbndb_bulk_enabled: bool = _env("ISBNDB_BULK_ENABLED", default=True)
    isbndb_bulk_size: int = _env("ISBNDB_BULK_SIZE", default=100, ge=1, le=1000)
    http_timeout_seconds: float = _env("HTTP_TIMEOUT_SECONDS", default=30.0, gt=0, le=600)
    # Open Library: keyless; a contact in the User-Agent earns the faster rate.
    openlibrary_base_url: str = _env("OPENLIBRARY_BASE_URL", default="https://openlibrary.org")
    openlibrary_contact: str | None = _env("OPENLIBRARY_CONTACT", default=None)
    google_books_base_url: str = _env("GOOGLE_BOOKS_BASE_URL", default="https://www.googleapis.com")
    google_books_api_key: SecretStr | None = _env("GOOGLE_BOOKS_API_KEY", default=None)
    # The title-search order of the resolver, and whether ISBNdb must confirm.
    resolvers: Annotated[tuple[str, ...], NoDecode] = _env("RESOLVERS", default=RESOLVER_NAMES)
    verify_with_isbndb: Literal["required", "when-needed"] = _env(
        "VERIFY_WITH_ISBNDB", default="when-needed"
    )
    # In-attempt retries of one request (5xx, timeouts, rate 429s, cut-short bodies).
    provider_max_tries: int = _env(
        "PROVIDER_MAX_TRIES", default=DEFAULT_PROVIDER_MAX_TRIES, ge=1, le=10
    )
    provider_retry_backoff_seconds: float = _env(
        "PROVIDER_RETRY_BACKOFF_SECONDS", default=1.0, ge=0, le=60
    )
    provider_retry_backoff_max_seconds: float = _env(
        "PROVIDER_RETRY_BACKOFF_MAX_SECONDS", default=20.0, ge=0, le=600
    )

    # -- quotas and rates, shared by all workers (0 disables a per-minute limit)
    isbndb_daily_limit: int = _env("ISBNDB_DAILY_LIMIT", default=5000, ge=0)
    isbndb_rate_per_second: int = _env("ISBNDB_RATE_PER_SECOND", default=1, ge=1)
    gemini_daily_limit: int = _env("GEMINI_DAILY_LIMIT", default=1000, ge=0)
    gemini_rate_per_minute: int = _env("GEMINI_RATE_PER_MINUTE", default=10, ge=0)
    xai_daily_limit: int = _env("XAI_DAILY_LIMIT", default=1000, ge=0)
    xai_rate_per_minute: int = _env("XAI_RATE_PER_MINUTE", default=60, ge=0)
    # Default 3 with OPENLIBRARY_CONTACT set, 1 when anonymous (Open Library's etiquette).
    openlibrary_rate_per_second: int = _env("OPENLIBRARY_RATE_PER_SECOND", default=1, ge=1)
    openlibrary_daily_limit: int = _env("OPENLIBRARY_DAILY_LIMIT", default=100_000, ge=0)
    # Google's keyless daily cap; a key's project quota is 1000 a day too unless raised.
    google_books_daily_limit: int = _env("GOOGLE_BOOKS_DAILY_LIMIT", default=1000, ge=0)
    google_books_rate_per_minute: int = _env("GOOGLE_BOOKS_RATE_PER_MINUTE", default=60, ge=0)
    quota_reset_hour_utc: int = _env("QUOTA_RESET_HOUR_UTC", default=0, ge=0, le=23)
    # Safety margin on every rate: per-second slots (1/R)(1 + margin) apart, per-minute
    # plans at most R requests in any 60(1 + margin) seconds (see backfill.quota).
    rate_margin: float = _env("RATE_MARGIN", default=0.1, ge=0, le=1)
    # A day marked spent by the API's answer gets one probe request this often (0: none,
    # closed until the reset).
    quota_probe_minutes: float = _env("QUOTA_PROBE_MINUTES", default=30, ge=0, le=1440)
    not_found_ttl_days: int = _env("ISBNDB_NOT_FOUND_TTL_DAYS", default=30, ge=0)

    # -- scheduling
    lease_seconds: int = _env("BACKFILL_LEASE_SECONDS", default=900, ge=5)
    beat_interval_seconds: float = _env("BACKFILL_BEAT_INTERVAL_SECONDS", default=300, gt=0)
    default_batch_size: int = _env("BACKFILL_BATCH_SIZE", default=10, ge=1, le=50)
    year_start: int = _env("BACKFILL_YEAR_START", default=2000, ge=MIN_YEAR, le=MAX_YEAR)
    year_end: int = _env("BACKFILL_YEAR_END", default=2024, ge=MIN_YEAR, le=MAX_YEAR)
    settle_months: int = _env("BACKFILL_SETTLE_MONTHS", default=3, ge=0)
    max_retries: int = _env("BACKFILL_MAX_RETRIES", default=5, ge=0)
    retry_backoff_seconds: float = _env("BACKFILL_RETRY_BACKOFF_SECONDS", default=30, ge=0)
    retry_backoff_max_seconds: float = _env("BACKFILL_RETRY_BACKOFF_MAX_SECONDS", default=600, ge=0)
    # Durable queue (default exchange) the resolved ISBNs are handed to; "" turns it off.
    enrichment_queue: str = _env("ENRICHMENT_QUEUE", default="backfill.enrichment", max_length=255)

    # -- operations
    log_format: Literal["text", "json"] = _env("LOG_FORMAT", default="text")
    log_level: str = _env("LOG_LEVEL", default="INFO")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError("is not a SQLAlchemy database URL") from exc
        if not url.drivername.startswith("postgresql"):
            raise ValueError("must be a PostgreSQL URL (postgresql+psycopg://...)")
        if url.drivername == "postgresql":  # use psycopg 3, not psycopg2
            value = url.set(drivername="postgresql+psycopg").render_as_string(False)
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if urlsplit(value).scheme not in ("amqp", "amqps", "pyamqp", "memory"):
            raise ValueError("must be an AMQP URL such as amqp://user:pass@host:5672//")
        return value

    @field_validator(
        "gemini_base_url",
        "xai_base_url",
        "isbndb_base_url",
        "openlibrary_base_url",
        "google_books_base_url",
    )
    @classmethod
    def _check_http(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("openlibrary_contact")
    @classmethod
    def _check_contact(cls, value: str | None) -> str | None:
        return _contact(value)

    @field_validator("resolvers", mode="before")
    @classmethod
    def _check_resolvers(cls, value: Any) -> tuple[str, ...]:
        return _resolver_order(value)

    @model_validator(mode="after")
    def _apply_openlibrary_rate(self) -> Settings:
        """An identified client gets about 3 requests/s from Open Library, an anonymous one 1."""
        if "openlibrary_rate_per_second" not in self.model_fields_set:
            rate = 3 if self.openlibrary_contact else 1
            object.__setattr__(self, "openlibrary_rate_per_second", rate)
        return self

    @model_validator(mode="after")
    def _apply_isbndb_plan(self) -> Settings:
        """Fill the ISBNdb values the environment left unset from the plan."""
        for name, value in ISBNDB_PLANS[self.isbndb_plan].items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
        return self

    @property
    def uses_sandbox_keys(self) -> bool:
        """True when no real provider key is configured."""
        return not (self.gemini_api_key or self.xai_api_key or self.isbndb_api_key)


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field.upper()


def _mask(value: object) -> object:
    """Hide a password inside a URL-like value before it is shown."""
    if isinstance(value, str) and "@" in value and "://" in value:
        scheme, rest = value.split("://", 1)
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else value
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = _env_name(field)
        message = err["msg"].removeprefix("Value error, ")
        secret = "key" in name.lower() or "secret" in name.lower()
        shown = "" if secret else f" (got {_mask(err.get('input'))!r})"
        parts.append(f"{name}: {message}{shown}")
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with ``overrides`` taking precedence."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return load_settings()
