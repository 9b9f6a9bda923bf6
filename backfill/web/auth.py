"""The cron secret: the internal API's ``X-Cron-Secret`` and the dashboard's login.

Compared in constant time. Without a configured secret the API is closed
(503 naming the setting) rather than open: a forgotten variable must not
expose the scheduler. A configured secret shorter than :data:`MIN_SECRET_LENGTH`
stops the web app at start-up (:func:`check_secret_strength`).

Wrong secrets are throttled per client address (:mod:`backfill.web.throttle`):
a locked-out address gets 429 with ``Retry-After`` whatever it sends, the right
secret included, so the lockout never confirms a guess. Requests that present no
secret (and so guess nothing) are answered without touching the database.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from flask import abort, request

from backfill.config import ConfigError, Settings
from backfill.web import throttle
from backfill.web.context import unit_of_work
from backfill.web.errors import ApiError, error_response

log = logging.getLogger(__name__)

HEADER = "X-Cron-Secret"
SETTING = "BACKFILL_CRON_SECRET"
# 16 characters of a random token is far beyond guessing, even unthrottled.
MIN_SECRET_LENGTH = 16


def configured_secret(settings: Settings) -> str | None:
    """The cron secret, or None when it is unset or empty."""
    if settings.cron_secret is None:
        return None
    return settings.cron_secret.get_secret_value() or None


def check_secret_strength(settings: Settings) -> None:
    """Raise :class:`ConfigError` (one line, the secret not in it) for a short secret.

    Only the web app calls this: it is the only process that checks the secret.
    """
    secret = configured_secret(settings)
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"invalid setting {SETTING}: must be at least {MIN_SECRET_LENGTH} characters"
            " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )


def secret_matches(given: str | None, settings: Settings) -> bool:
    """True when ``given`` is the configured secret (constant-time comparison)."""
    expected = configured_secret(settings)
    if expected is None or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def client_address() -> str:
    """The address failures are counted against: the TCP peer.

    ``X-Forwarded-For``/``Forwarded`` are not trusted, as in the dashboard's
    loopback rule: without a configured trusted proxy any client could send
    them and pick a fresh address per guess.
    """
    return request.remote_addr or "unknown"


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`authenticate`."""

    ok: bool
    retry_after: int | None = None  # seconds, when the address is locked out


def authenticate(given: str, settings: Settings) -> Verdict:
    """Check a presented secret under the per-address failure throttle.

    One primary-key read of the address's lockout comes first, for the right
    secret as for a wrong one: refusing a locked address before the comparison
    means neither the answer nor the work done depends on what it sent. Only a
    wrong secret then costs a write (:func:`throttle.record_failure`).
    """
    address = client_address()
    with unit_of_work() as session:
        wait = throttle.lockout_remaining(session, address)
        if wait is not None:
            return Verdict(ok=False, retry_after=wait)
        if secret_matches(given, settings):
            return Verdict(ok=True)
        failure = throttle.record_failure(session, address)
    if failure.locked_now:
        log.warning(
            "authentication: %s locked out for %d s after %d failed attempts (lockout %d)",
            address,
            failure.locked_for,
            failure.failures,
            failure.lockouts,
        )
    return Verdict(ok=False)


def too_many_attempts_message(retry_after: int) -> str:
    """What a locked-out client is told (the API's message and the login page's)."""
    return f"too many failed attempts from this address; try again in {retry_after} s"


def require_cron_secret(settings: Settings) -> None:
    """Raise a JSON 503 (not configured), 401 (missing or wrong header) or 429 (locked out)."""
    if configured_secret(settings) is None:
        raise ApiError(
            503,
            "not_configured",
            f"the internal API is disabled: {SETTING} is not set on the server",
            field=SETTING,
        )
    given = request.headers.get(HEADER)
    if not given:
        raise ApiError(401, "unauthorized", f"missing {HEADER} header", field=HEADER)
    verdict = authenticate(given, settings)
    if verdict.retry_after is not None:
        # ApiError carries no headers: answer the finished response instead
        # (Flask passes an abort(response) through unchanged).
        response, status = error_response(
            429, "too_many_attempts", too_many_attempts_message(verdict.retry_after), HEADER
        )
        response.status_code = status
        response.headers["Retry-After"] = str(verdict.retry_after)
        abort(response)
    if not verdict.ok:
        raise ApiError(401, "unauthorized", f"wrong {HEADER}", field=HEADER)
