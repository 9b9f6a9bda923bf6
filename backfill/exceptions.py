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
