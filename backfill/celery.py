"""Entry point for ``celery -A backfill``: the app, with logging wired in.

The app itself is built in :mod:`backfill.broker` (from ``celeryconfig``); this
module only exposes it and connects the logging set-up.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from backfill.broker import get_app

app = get_app()


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Celery would otherwise install its own root handlers; ours add the month,
    # job id and attempt to every line and can emit JSON (LOG_FORMAT=json).
    from backfill.logs import configure

    configure()
