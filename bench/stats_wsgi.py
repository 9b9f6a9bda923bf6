"""BENCHMARK ONLY: the production web app plus one trivial JSON route, for gunicorn.

    gunicorn "bench.stats_wsgi:create_app()"

``GET /bench/ping`` answers ``{"ok": true}`` without touching the database or
the broker (``/healthz`` opens an AMQP connection per request, so it is not a
trivial baseline). Served by the same gunicorn process, workers and Flask app
as ``/api/internal/backfill-stats``, so the difference between the two is the
stats work alone.
"""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    """``backfill.web.create_app()`` with ``/bench/ping`` added."""
    from backfill.web import create_app as create_backfill_app

    app = create_backfill_app()

    @app.get("/bench/ping")
    def ping() -> ResponseReturnValue:
        return jsonify({"ok": True})

    return app
