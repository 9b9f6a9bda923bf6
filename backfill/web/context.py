"""What the views need from the app: settings and a session per request."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session

from backfill import db
from backfill.config import Settings

EXTENSION = "backfill"


@dataclass(frozen=True)
class WebState:
    """Stored in ``app.extensions["backfill"]`` by :func:`backfill.web.create_app`."""

    settings: Settings
    session_factory: Callable[[], Session]


def state() -> WebState:
    """The current app's :class:`WebState`."""
    value = current_app.extensions[EXTENSION]
    assert isinstance(value, WebState)
    return value


def settings() -> Settings:
    """The current app's settings."""
    return state().settings


def unit_of_work() -> AbstractContextManager[Session]:
    """A session for one request: committed when the block succeeds, else rolled back.

    Not ``session.begin()``: :func:`backfill.scheduler.schedule` commits inside
    (it must, before publishing), and a ``begin()`` block forbids that.
    """
    return db.unit_of_work(state().session_factory)
