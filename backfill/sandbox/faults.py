"""Which fault, if any, a request meets: decided in one fixed order per request.

Generators (Gemini, xAI): quota exhausted -> the month's first N failures
(``fail_months``) -> a timeout (sleep ``timeout_seconds``, then carry on) -> a
5xx (``error_rate``: 500 or 503) -> a 429 rate limit (``rate_limit_rate``) -> a
truncated, unparsable answer (``malformed_rate``) -> a good answer.

ISBNdb: daily quota -> request rate -> timeout -> 5xx -> 429 burst -> the lookup,
whose 200 body is cut short with ``malformed_rate``. Open Library and Google
Books: their own limits (rate per User-Agent; keyless daily cap) -> the same
timeout -> 5xx -> 429 -> truncated answer sequence (:func:`search_outcome`).

The dice are a ``random.Random`` seeded by the ``seed`` setting and shared under a
lock, so a single-threaded run replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from backfill.sandbox.state import SandboxState

OK, QUOTA, FAIL_MONTH, ERROR, RATE_LIMITED, MALFORMED = (
    "ok",
    "quota",
    "fail_month",
    "error",
    "rate_limited",
    "malformed",
)


@dataclass(frozen=True)
class Outcome:
    """What to answer: ``kind`` and, for failures, the HTTP status."""

    kind: str
    status: int = 200
    # Answered only after a timeout fault's sleep: the client has given up by then
    # (timeout_seconds is set above its timeout), so the answer is never received.
    late: bool = False


def generate_outcome(state: SandboxState, provider: str, month: str) -> Outcome:
    """The outcome of one generate request for ``month`` (may sleep for a timeout)."""
    config = state.config
    if getattr(config.quota_exhausted, provider):
        return Outcome(QUOTA, 429)
    status = state.take_month_failure(month, provider)
    if status is not None:
        return Outcome(FAIL_MONTH, status)
    return _random_outcome(state, provider)


def isbndb_outcome(state: SandboxState) -> Outcome:
    """The outcome of one ISBNdb request that passed the quota and rate checks."""
    return _random_outcome(state, "isbndb")


def search_outcome(state: SandboxState, provider: str) -> Outcome:
    """The outcome of one ``openlibrary``/``googlebooks`` request past its limits."""
    return _random_outcome(state, provider)


def _random_outcome(state: SandboxState, provider: str) -> Outcome:
    config = state.config
    late = state.roll(config.timeout_rate, provider)
    if late:
        state.sleep(config.timeout_seconds)
    if state.roll(config.error_rate, provider):
        return Outcome(ERROR, state.choice((500, 503)), late)
    if state.roll(config.rate_limit_rate, provider):
        return Outcome(RATE_LIMITED, 429, late)
    if state.roll(config.malformed_rate, provider):
        return Outcome(MALFORMED, late=late)
    return Outcome(OK, late=late)
