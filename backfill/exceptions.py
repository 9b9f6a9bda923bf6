"""Errors shared across layers. Each says what happened in terms a user can act on."""

from __future__ import annotations

import datetime as dt


class BackfillError(Exception):
    """Base class for the service's own errors."""


class InvalidInput(BackfillError, ValueError):
    """A caller asked for something impossible; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MonthNotFound(BackfillError, LookupError):
    """No ``backfill_log`` row for that month (seed it first)."""


class MonthNotClaimable(BackfillError):
    """The month is completed, or another job holds a live lease on it."""


class MonthClosed(MonthNotClaimable):
    """Not claimable, and the refusal itself changed the month (e.g. its last retry
    went to a worker lost mid-month: now ``failed``): the caller commits, never
    rolls back, so the row and the log agree."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class AttemptInterrupted(BackfillError):
    """An attempt was cut short by the infrastructure (the database went away), not
    by the month's own work. ``job_id`` is the claim to come back to; ``attempt_id``
    the attempt this delivery started (None: it never started one), which the
    task's retry closes as ``deferred`` without spending the month's budget."""

    def __init__(self, job_id: str | None, attempt_id: int | None, cause: BaseException) -> None:
        super().__init__(f"interrupted by an infrastructure error: {cause!r}"[:500])
        self.job_id = job_id
        self.attempt_id = attempt_id
        self.cause = cause


class ProviderError(BackfillError):
    """An external API failed in a way worth retrying later (5xx, timeout, bad JSON)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderRefused(ProviderError):
    """The API refused this request for good (bad key, 4xx other than 404/429)."""


class QuotaExhausted(BackfillError):
    """A provider's budget is spent until ``resets_at``: defer, do not spend a retry."""

    def __init__(self, provider: str, resets_at: dt.datetime, message: str = "") -> None:
        super().__init__(
            f"{provider} quota exhausted until {resets_at.isoformat()}"
            + (f": {message}" if message else "")
        )
        self.provider = provider
        self.resets_at = resets_at


class PublishError(BackfillError):
    """The broker did not take a message (unreachable, or no publisher confirm)."""
