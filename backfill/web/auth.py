"""The internal API's guard: ``X-Cron-Secret`` must equal ``BACKFILL_CRON_SECRET``.

Compared in constant time. Without a configured secret the API is closed
(503 naming the setting) rather than open: a forgotten variable must not
expose the scheduler.
"""

from __future__ import annotations

import hmac

from flask import request

from backfill.config import Settings
from backfill.web.errors import ApiError

HEADER = "X-Cron-Secret"
SETTING = "BACKFILL_CRON_SECRET"


def configured_secret(settings: Settings) -> str | None:
    """The cron secret, or None when it is unset or empty."""
    if settings.cron_secret is None:
        return None
    return settings.cron_secret.get_secret_value() or None


def secret_matches(given: str | None, settings: Settings) -> bool:
    """True when ``given`` is the configured secret (constant-time comparison)."""
    expected = configured_secret(settings)
    if expected is None or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_cron_secret(settings: Settings) -> None:
    """Raise a JSON 503 (not configured) or 401 (missing or wrong header)."""
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
    if not secret_matches(given, settings):
        raise ApiError(401, "unauthorized", f"wrong {HEADER}", field=HEADER)
