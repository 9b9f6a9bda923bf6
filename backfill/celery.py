"""The Celery app (Celery's own layout: ``proj/celery.py``, ``proj/tasks.py`` and a
top-level ``celeryconfig``).

``celery -A backfill`` finds ``backfill.celery.app`` by itself. Adapter layer: the
app is how the service talks to RabbitMQ; :mod:`backfill.broker` publishes
through it and :mod:`backfill.tasks` registers the tasks on it. Building the app
connects nothing (Celery is lazy) and reads ``celeryconfig`` on first use.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging

app = Celery("backfill", include=["backfill.tasks"])
app.config_from_object("celeryconfig")


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Celery would otherwise install its own root handlers; ours add the month,
    # job id and attempt to every line and can emit JSON (LOG_FORMAT=json).
    from backfill.logs import configure

    configure()
