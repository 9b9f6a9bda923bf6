"""The sandbox Flask app and its server: all five emulated APIs on one port."""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from backfill.sandbox import control, gemini, googlebooks, isbndb, openlibrary, xai
from backfill.sandbox.plumbing import EXTENSION
from backfill.sandbox.state import SandboxState


def create_sandbox_app(config: dict[str, Any] | None = None) -> Flask:
    """A Flask app emulating Gemini, xAI, ISBNdb, Open Library and Google Books, with
    fault ``config`` applied.

    ``config`` has the shape of ``POST /_sandbox/config``; ``POST /_sandbox/reset``
    returns to it. Raises ``backfill.sandbox.config.SandboxConfigError`` for a bad value.
    """
    app = Flask(__name__)
    app.extensions[EXTENSION] = SandboxState(config)
    # Google Books' static /books/v1/volumes outranks ISBNdb's /books/<path:query>.
    for blueprint in (gemini.bp, xai.bp, isbndb.bp, openlibrary.bp, googlebooks.bp, control.bp):
        app.register_blueprint(blueprint)
    return app


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not log each request (tests start many servers)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def make_sandbox_server(
    host: str, port: int, config: dict[str, Any] | None = None, *, quiet: bool = True
) -> BaseWSGIServer:
    """A threaded WSGI server for a new sandbox app (``port=0`` picks a free port)."""
    handler = _QuietHandler if quiet else WSGIRequestHandler
    return make_server(
        host, port, create_sandbox_app(config), threaded=True, request_handler=handler
    )


# Served as a process, the sandbox holds ISBNdb's default plan like the real API
# does (the service's own defaults: 1 request/s, 5,000 calls a day); the config
# given on the command line overrides either.
SERVED_LIMITS: dict[str, Any] = {"isbndb_rate_per_second": 1, "isbndb_daily_limit": 5000}


def serve(host: str, port: int, config: dict[str, Any] | None = None) -> None:
    """Serve the sandbox on ``host:port`` until interrupted (threaded, blocking)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    server = make_sandbox_server(host, port, {**SERVED_LIMITS, **(config or {})}, quiet=False)
    print(f"backfill-sandbox listening on http://{host}:{server.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
