"""Control routes under ``/_sandbox/`` (part of no real API): stats, config, reset, truth."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from backfill.sandbox import config as cfg
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.web import get_state, json_response

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


@bp.get("/health")
def health() -> Response:
    """Liveness: the server answers."""
    return json_response(200, {"ok": True})


@bp.get("/stats")
def stats() -> Response:
    """Calls per provider, endpoint, status and month, and the ISBNdb peak per second."""
    return json_response(200, get_state().stats())


@bp.get("/config")
def show_config() -> Response:
    """The fault configuration in force."""
    return json_response(200, get_state().config.model_dump())


@bp.post("/config")
def update_config() -> Response:
    """Merge the JSON body into the fault configuration; 400 names a bad field."""
    body = request.get_json(silent=True)
    try:
        new = get_state().configure(body)
    except cfg.ConfigError as exc:
        return json_response(400, {"error": {"field": exc.field, "message": exc.message}})
    return json_response(200, new.model_dump())


@bp.post("/reset")
def reset() -> Response:
    """Counters to zero and the configuration back to the one the sandbox started with."""
    get_state().reset()
    return json_response(200, {"ok": True})


@bp.get("/truth/<month>")
def truth(month: str) -> Response:
    """The books the sandbox knows for ``YYYY-MM`` and what each API says of them."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    try:
        if not match:
            raise ValueError("must be written YYYY-MM")
        catalogue = month_catalogue(int(match.group(1)), int(match.group(2)))
    except ValueError as exc:
        return json_response(400, {"error": {"field": "month", "message": str(exc)}})
    return json_response(200, catalogue.truth())
