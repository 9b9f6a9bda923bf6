"""The sandbox's fault configuration: validated, merged key by key.

``POST /_sandbox/config`` merges its body into the current configuration (a
provider map such as ``error_rate`` or ``fail_months`` is merged entry by entry),
then validates the result; a bad value is a 400 that names the field.

Beyond the shared contract, three keys exist: ``rate_limit_rate`` (random 429
rate-limit answers, the "429 bursts"), ``isbndb_daily_status`` (429 or 403, see
:func:`backfill.sandbox.errors.isbndb_daily_quota`) and ``reject_keys`` (keys the
APIs refuse as invalid, to exercise a bad key).

The per-provider maps (``latency_ms``, ``error_rate``, ``timeout_rate``,
``malformed_rate``, ``rate_limit_rate``, ``quota_exhausted``) also take
``openlibrary`` and ``googlebooks``. Their own limits:
``openlibrary_rate_identified`` / ``openlibrary_rate_anonymous`` (requests per
second per User-Agent: 3 when it names a contact, "@" or "http", else 1, as Open
Library asks), ``googlebooks_keyless_daily_limit`` (calls a day without ``key=``,
shared; None: unlimited). ``rate_clock_offset_seconds`` and ``rate_jitter_ms``
put ISBNdb's and Open Library's per-second windows on a clock out of step with
ours and delay each request a random 0..N ms before it is admitted (see
:meth:`backfill.sandbox.state.SandboxState.rate_second`). ``trap_placement``
("tail" or "head") says where the month's trap books sit in the generators' lists (see
:func:`backfill.sandbox.catalogue.month_catalogue`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The sandbox's own copy of the providers (not backfill.constants.PROVIDERS): it plays
# the outside world and imports nothing of the service.
PROVIDERS = ("gemini", "xai", "isbndb", "openlibrary", "googlebooks")
Provider = Literal["gemini", "xai", "isbndb", "openlibrary", "googlebooks"]


class SandboxConfigError(ValueError):
    """A configuration the sandbox refuses; ``field`` names the offending key.

    Not :class:`backfill.config.ConfigError` (the service's settings): the sandbox
    imports nothing of the service."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FailMonth(BaseModel):
    """The first ``gemini``/``xai`` generate requests for one month fail with ``status``."""

    model_config = ConfigDict(extra="forbid")
    gemini: int = Field(default=0, ge=0)
    xai: int = Field(default=0, ge=0)
    status: int = Field(default=503, ge=400, le=599)


class ProviderRates(BaseModel):
    """A probability per provider, 0..1."""

    model_config = ConfigDict(extra="forbid")
    gemini: float = Field(default=0.0, ge=0, le=1)
    xai: float = Field(default=0.0, ge=0, le=1)
    isbndb: float = Field(default=0.0, ge=0, le=1)
    openlibrary: float = Field(default=0.0, ge=0, le=1)
    googlebooks: float = Field(default=0.0, ge=0, le=1)


class ProviderLatency(BaseModel):
    """Extra milliseconds before each answer, per provider."""

    model_config = ConfigDict(extra="forbid")
    gemini: int = Field(default=0, ge=0, le=60_000)
    xai: int = Field(default=0, ge=0, le=60_000)
    isbndb: int = Field(default=0, ge=0, le=60_000)
    openlibrary: int = Field(default=0, ge=0, le=60_000)
    googlebooks: int = Field(default=0, ge=0, le=60_000)


class ProviderFlags(BaseModel):
    """A yes/no per provider."""

    model_config = ConfigDict(extra="forbid")
    gemini: bool = False
    xai: bool = False
    isbndb: bool = False
    openlibrary: bool = False
    googlebooks: bool = False


class SandboxConfig(BaseModel):
    """Every knob of the emulator; the defaults are a healthy, unlimited API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    latency_ms: ProviderLatency = ProviderLatency()
    error_rate: ProviderRates = ProviderRates()
    timeout_rate: ProviderRates = ProviderRates()
    malformed_rate: ProviderRates = ProviderRates()
    rate_limit_rate: ProviderRates = ProviderRates()
    timeout_seconds: float = Field(default=5.0, ge=0, le=600)
    isbndb_rate_per_second: int = Field(default=1000, ge=1)
    isbndb_daily_limit: int | None = Field(default=None, ge=0)  # None: unlimited
    isbndb_daily_status: Literal[429, 403] = 429
    # The per-second refusal's message: API Gateway's throttle answer, or the
    # "Limit Exceeded" ISBNdb's documentation gives for any request limit.
    isbndb_rate_message: Literal["Too Many Requests", "Limit Exceeded"] = "Too Many Requests"
    # ISBNdb's and Open Library's rate windows on a clock this far ahead of ours
    # (their seconds start at another instant), and a random 0..N ms delay before a
    # request is admitted and counted (the network's jitter).
    rate_clock_offset_seconds: float = Field(default=0.0, ge=-86_400, le=86_400)
    rate_jitter_ms: int = Field(default=0, ge=0, le=10_000)
    openlibrary_rate_identified: int = Field(default=3, ge=1)
    openlibrary_rate_anonymous: int = Field(default=1, ge=1)
    googlebooks_keyless_daily_limit: int | None = Field(default=1000, ge=0)  # None: unlimited
    trap_placement: Literal["tail", "head"] = "tail"
    quota_exhausted: ProviderFlags = ProviderFlags()
    fail_months: dict[str, FailMonth] = {}
    reject_keys: list[str] = []

    @field_validator("fail_months")
    @classmethod
    def _months(cls, value: dict[str, FailMonth]) -> dict[str, FailMonth]:
        for month in value:
            if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
                raise ValueError(f"{month!r} is not a month written YYYY-MM")
        return value


_MERGED = {
    "latency_ms",
    "error_rate",
    "timeout_rate",
    "malformed_rate",
    "rate_limit_rate",
    "quota_exhausted",
    "fail_months",
}


def merge(current: SandboxConfig, changes: Any) -> SandboxConfig:
    """``current`` with ``changes`` merged in; raises SandboxConfigError (a bad field)."""
    if not isinstance(changes, dict):
        raise SandboxConfigError("body", "must be a JSON object")
    data = current.model_dump()
    for key, value in changes.items():
        if key in _MERGED and isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate(data)


def validate(data: Any) -> SandboxConfig:
    """A SandboxConfig from plain data; raises SandboxConfigError (the first bad field)."""
    try:
        return SandboxConfig.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or "body"
        raise SandboxConfigError(field, err["msg"]) from None
