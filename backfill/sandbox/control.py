"""Control routes under ``/_sandbox/`` (part of no real API): stats, config, reset, truth.

* ``GET /_sandbox/truth/YYYY-MM``: the month's books (see
  :meth:`backfill.sandbox.catalogue.MonthCatalogue.truth`), with ``rank`` and
  ``answers`` as the generators list them under the current ``trap_placement``.
* ``GET /_sandbox/truth-isbns?from=YYYY-MM&to=YYYY-MM``: every ISBN the sandbox
  knows in those months and whose it is (:mod:`backfill.sandbox.grading`).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from backfill.sandbox import config as cfg
from backfill.sandbox import grading
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.plumbing import get_state, json_response

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
    except cfg.SandboxConfigError as exc:
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
    traps_first = get_state().config.trap_placement == "head"
    try:
        year, mon = _month(month)
        catalogue = month_catalogue(year, mon, traps_first)
    except ValueError as exc:
        return json_response(400, {"error": {"field": "month", "message": str(exc)}})
    return json_response(200, catalogue.truth())


@bp.get("/truth-isbns")
def truth_isbns() -> Response:
    """Every ISBN-13 known in ``from``..``to`` (YYYY-MM) with the book it belongs to."""
    field = "from"
    try:
        start = _month(request.args.get("from", ""))
        field = "to"
        end = _month(request.args.get("to") or request.args.get("from", ""))
        field = "range"
        table = grading.isbn_truth(start, end)
    except ValueError as exc:
        return json_response(400, {"error": {"field": field, "message": str(exc)}})
    return json_response(200, table)


def _month(text: str) -> tuple[int, int]:
    """(year, month) of a ``YYYY-MM`` string inside the sandbox's universe."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not match:
        raise ValueError("must be written YYYY-MM")
    year, month = int(match.group(1)), int(match.group(2))
    month_catalogue(year, month)  # raises ValueError outside the universe
    return year, month
