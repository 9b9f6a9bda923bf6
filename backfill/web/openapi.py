"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the pydantic models.

The same models validate requests and serialise responses, so the document
cannot drift from what the views do; the tests validate real responses
against it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from backfill import catalogue, stats
from backfill.web.dashboard import DashboardData
from backfill.web.schemas import (
    MONTH_PATTERN,
    BooksQuery,
    EmptyBody,
    ErrorResponse,
    HealthResponse,
    MonthsQuery,
    PauseResponse,
    RegenerateResponse,
    ReresolveQueued,
    ReresolveRequest,
    RetryResponse,
    ScheduleRequest,
    ScheduleResponse,
    SeedRequest,
    SeedResponse,
)

bp = Blueprint("openapi", __name__)

ERR = ErrorResponse
Body = type[BaseModel] | Literal["text", "html"] | None


@dataclass(frozen=True)
class Op:
    """One operation: the models of its request and of each response status."""

    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, tuple[str, Body]]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    month_param: bool = False
    secured: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_AUTH = {
    401: ("missing or wrong X-Cron-Secret", ERR),
    429: (
        "too many failed secrets from this address (5 a minute): locked out, see Retry-After",
        ERR,
    ),
    503: ("secret not configured", ERR),
}
_BAD = {400: ("invalid input (names the field and the rule)", ERR)}
_BODY_ERRORS = {
    **_BAD,
    413: ("body too large", ERR),
    415: ("Content-Type is not application/json", ERR),
}
_MONTH = {**_BAD, 404: ("month not seeded", ERR)}

# The three endpoints of the original system (../shared/original-contract.md).
_ORIGINAL = "Keeps the original system's shape (same names, types and meaning); fields only added: "
_SCHEDULE_DOC = (
    _ORIGINAL + "`paused`, `total_retry`, `execution_errors` (one `{year, month, error}` per"
    " failed publish; `execution_summary.errors` is their count, as in the original),"
    " `blocked_until`, and in each MonthStatus `job_id`, `retry_count`, `isbns_queued`."
    " `error_message` is left out when a month has none. A claimed `retry` month gets"
    " `last_retry_at = now`. The totals are read in the claim's transaction, before"
    " publishing, so a request whose claims committed always answers 200 with what it"
    " dispatched."
)
_STATS_DOC = (
    _ORIGINAL + "`progress.total_unresolved`, `progress.total_reresolved`,"
    " `progress.generator_calls_saved`, `api_calls`, `quota_today`, `paused`, and in each"
    " `recent_activity` MonthStatus `isbns_queued` and `finished_at`."
    " `progress.total_isbns_queued` is the original's: ISBNs handed to the enrichment queue."
    " `recent_activity` lists months that finished an attempt (completed, failed or"
    " waiting to retry), latest first, at most 20."
)
_SEED_DOC = (
    _ORIGINAL + "`months_existing`, `year_start`, `year_end`. New rows get `prompt_variant`"
    " contemporary-notable for years >= 2020 (else baseline) and `batch_size` 20."
)

OPERATIONS: tuple[Op, ...] = (
    Op("post", "/api/internal/schedule-backfill", "Claim and dispatch months", "internal",
       {200: ("scheduled (or listed, in a dry run)", ScheduleResponse), **_BODY_ERRORS, **_AUTH},
       body=ScheduleRequest, secured=True, extra={"description": _SCHEDULE_DOC}),
    Op("get", "/api/internal/backfill-stats", "Backfill statistics", "internal",
       {200: ("stats", stats.StatsReport), **_AUTH}, secured=True,
       extra={"description": _STATS_DOC}),
    Op("post", "/api/internal/seed-backfill-queue", "Seed months (idempotent)", "internal",
       {200: ("seeded", SeedResponse), **_BODY_ERRORS, **_AUTH}, body=SeedRequest, secured=True,
       extra={"description": _SEED_DOC}),
    Op("get", "/api/internal/months", "List months", "internal",
       {200: ("a page of months", stats.MonthsPage), **_BAD, **_AUTH}, query=MonthsQuery,
       secured=True),
    Op("get", "/api/internal/books",
       "List books: resolved ones (by filed month) and unresolved current candidates",
       "internal", {200: ("a page of books, ordered by month, title, ISBN-13 / candidate",
                          catalogue.BooksPage), **_BAD, **_AUTH},
       query=BooksQuery, secured=True),
    Op("get", "/api/internal/months/{month}", "One month, its attempts and candidates",
       "internal",
       {200: ("the month", stats.MonthDetail), **_MONTH, **_AUTH}, month_param=True,
       secured=True),
    Op("post", "/api/internal/months/{month}/retry", "Re-queue a month", "internal",
       {200: ("pending again", RetryResponse), **_MONTH, **_BODY_ERRORS,
        409: ("completed, or being processed", ERR), **_AUTH},
       body=EmptyBody, month_param=True, secured=True),
    Op("post", "/api/internal/months/{month}/regenerate",
       "Set a month's generator answers and candidates aside and reopen it", "internal",
       {200: ("superseded; the month is pending again", RegenerateResponse), **_MONTH,
        **_BODY_ERRORS, 409: ("a worker holds the month (live lease)", ERR), **_AUTH},
       body=EmptyBody, month_param=True, secured=True),
    Op("post", "/api/internal/reresolve",
       "Queue a re-resolution of open candidates (no LLM call)", "internal",
       {202: ("the backfill.reresolve task was published", ReresolveQueued), **_BODY_ERRORS,
        404: ("month not seeded", ERR), **_AUTH,
        503: ("secret not configured, or the broker did not take the task", ERR)},
       body=ReresolveRequest, secured=True),
    Op("post", "/api/internal/pause", "Pause dispatching", "internal",
       {200: ("paused", PauseResponse), **_BODY_ERRORS, **_AUTH}, body=EmptyBody, secured=True),
    Op("post", "/api/internal/resume", "Resume dispatching", "internal",
       {200: ("resumed", PauseResponse), **_BODY_ERRORS, **_AUTH}, body=EmptyBody, secured=True),
    Op("get", "/healthz", "Database and broker reachability", "operations",
       {200: ("both reachable", HealthResponse), 503: ("one is down", HealthResponse)}),
    Op("get", "/metrics", "Prometheus metrics", "operations", {200: ("text format", "text")}),
    Op("get", "/", "The months dashboard (HTML)", "dashboard",
       {200: ("the page", "html"), 302: ("remote client: to /login", None)}),
    Op("get", "/dashboard/data", "The dashboard's data", "dashboard",
       {200: ("grid and stats", DashboardData), 401: ("remote client not logged in", ERR)}),
    Op("get", "/dashboard/months/{month}", "A month's detail, for the dashboard", "dashboard",
       {200: ("the month", stats.MonthDetail), **_MONTH,
        401: ("remote client not logged in", ERR)}, month_param=True),
    Op("get", "/login", "Dashboard login form (remote clients)", "dashboard",
       {200: ("the form", "html")}),
    Op("post", "/login", "Log in with the cron secret (form field `secret`)", "dashboard",
       {302: ("signed session cookie set; to the dashboard", None),
        401: ("wrong secret, or remote access disabled", "html"),
        429: ("too many failed secrets from this address: locked out, see Retry-After", "html")},
       extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
           "type": "object", "properties": {"secret": {"type": "string"}},
           "required": ["secret"]}}}}}),
    Op("post", "/logout", "Clear the dashboard session", "dashboard",
       {302: ("to /login", None)}),
    Op("get", "/openapi.json", "This document", "operations", {200: ("OpenAPI 3.1", None)}),
)  # fmt: skip


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in OPERATIONS:
        if op.body is not None:
            seen[(op.body, "validation")] = None
        for _, model in op.responses.values():
            if isinstance(model, type):
                seen[(model, "serialization")] = None
    return list(seen)


def _content(model: Body, refs: dict[Any, Any], mode: JsonSchemaMode) -> dict[str, Any]:
    if model is None:
        return {}
    if model == "text":
        return {"content": {"text/plain": {"schema": {"type": "string"}}}}
    if model == "html":
        return {"content": {"text/html": {"schema": {"type": "string"}}}}
    return {"content": {"application/json": {"schema": refs[(model, mode)]}}}


def _parameters(op: Op) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if op.month_param:
        params.append(
            {
                "name": "month",
                "in": "path",
                "required": True,
                "description": "YYYY-MM",
                "schema": {"type": "string", "pattern": MONTH_PATTERN},
            }
        )
    if op.query is not None:
        schema = op.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": False, "schema": prop}
            if "description" in prop:  # the rule, where readers of parameters look
                param["description"] = prop["description"]
            params.append(param)
    return params


@functools.cache
def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built once per process)."""
    refs, defs = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": re.sub(r"[^a-z0-9]+", "_", f"{op.method} {op.path}").strip("_")
            + ("index" if op.path == "/" else ""),
            "responses": {
                str(status): {"description": desc, **_content(model, refs, "serialization")}
                for status, (desc, model) in sorted(op.responses.items())
            },
        }
        if params := _parameters(op):
            operation["parameters"] = params
        if op.body is not None:
            operation["requestBody"] = {
                "required": False,
                "description": "JSON; an empty body means all defaults",
                **_content(op.body, refs, "validation"),
            }
        operation.update(op.extra)
        if op.secured:
            operation["security"] = [{"cronSecret": []}]
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "backfill",
            "version": "1.0.0",
            "description": "Internal API, dashboard data and operations endpoints. Errors are"
            ' {"error": {"code", "message", "field"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "cronSecret": {"type": "apiKey", "in": "header", "name": "X-Cron-Secret"}
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI document."""
    return jsonify(build_document())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
