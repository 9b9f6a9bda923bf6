"""The web app: internal API, dashboard, metrics, health, OpenAPI.

``create_app(config=None)`` builds it; nothing runs at import. ``config`` may
carry Flask settings and:

* ``BACKFILL_SETTINGS`` -- a :class:`backfill.config.Settings` to use instead
  of the environment's;
* ``DATABASE_URL`` -- use this database (settings otherwise from the environment);
* ``SESSION_FACTORY`` -- a callable returning a SQLAlchemy session (tests pass
  one bound to their rolled-back transaction).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn.errors import AppImportError

from backfill.config import ConfigError, Settings, get_settings, load_settings
from backfill.db import session_factory
from backfill.web import (
    api,
    api_books,
    api_rework,
    dashboard,
    errors,
    health,
    openapi,
    prometheus,
)
from backfill.web.auth import check_secret_strength
from backfill.web.context import EXTENSION, WebState

# Request bodies are a few small fields; anything bigger is refused (413).
MAX_BODY_BYTES = 16 * 1024


class StartupError(ConfigError, AppImportError):
    """A setting the web app cannot start with (one line naming it).

    Also gunicorn's "application failed to load" error: gunicorn then prints
    just this line and stops, rather than a traceback from every worker.
    """


def _settings(config: Mapping[str, Any]) -> Settings:
    given = config.get("BACKFILL_SETTINGS")
    if isinstance(given, Settings):
        return given
    if config.get("DATABASE_URL"):
        return load_settings(database_url=config["DATABASE_URL"])
    return get_settings()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app (gunicorn: ``backfill.web:create_app()``)."""
    config = dict(config or {})
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        # the dashboard's login cookie (see backfill.web.dashboard)
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
    )
    app.config.update(config)
    try:
        settings = _settings(config)
        check_secret_strength(settings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    factory = config.get("SESSION_FACTORY") or session_factory(settings.database_url)
    app.extensions[EXTENSION] = WebState(settings=settings, session_factory=factory)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.init_app(app)
    api.init_app(app)
    api_rework.init_app(app)
    api_books.init_app(app)
    health.init_app(app)
    prometheus.init_app(app)
    dashboard.init_app(app)
    openapi.init_app(app)
    return app


__all__ = ["create_app"]
