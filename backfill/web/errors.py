"""Every error the web app answers is JSON: ``{"error": {"code", "message", "field"}}``.

Bad input is a 4xx naming the field and the rule; nothing a client sends can
produce a 5xx. An unexpected failure is logged with its traceback and answered
with a 500 that does not leak internals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from backfill.exceptions import InvalidInput, MonthNotClaimable, MonthNotFound, PublishError

log = logging.getLogger(__name__)

# Codes for the HTTP errors Flask/Werkzeug raise themselves (routing, body size).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``field`` names what was wrong."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> tuple[Response, int]:
    """The JSON error body every endpoint uses."""
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


def _loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    # pydantic adds union members and validator tags to the location
    # ('year_range.YearRange.start.function-before[...]'); keep the field path.
    path = ".".join(
        str(part) for part in loc if isinstance(part, int) or _FIELD.fullmatch(str(part))
    )
    return f"{prefix}.{path}" if prefix and path else (path or prefix or "body")


_FIELD = re.compile(r"[a-z_][A-Za-z0-9_]*")


def validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """A pydantic error as a 400 naming the first bad field (all of them in ``details``)."""
    details = [
        {"field": _loc(err["loc"], prefix), "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = details[0] if details else {"field": prefix or "body", "message": "invalid"}
    return ApiError(
        400,
        "validation_error",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        details=details,
    )


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.details)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> tuple[Response, int]:
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, err.field, err.details)

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput) -> tuple[Response, int]:
        return error_response(400, "invalid_input", f"{exc.field}: {exc.message}", exc.field)

    @app.errorhandler(MonthNotFound)
    def _not_found(exc: MonthNotFound) -> tuple[Response, int]:
        return error_response(404, "month_not_found", str(exc), "month")

    @app.errorhandler(MonthNotClaimable)
    def _conflict(exc: MonthNotClaimable) -> tuple[Response, int]:
        return error_response(409, "month_not_claimable", str(exc), "month")

    @app.errorhandler(PublishError)
    def _broker(exc: PublishError) -> tuple[Response, int]:
        log.warning("publish failed: %s", exc)
        return error_response(503, "broker_unavailable", "the message broker did not take it")

    @app.errorhandler(OperationalError)
    def _database(exc: OperationalError) -> tuple[Response, int]:
        # The driver's message can name hosts and users: log it, do not return it.
        log.warning("database unavailable: %s", exc.orig or exc)
        return error_response(503, "database_unavailable", "the database is unreachable")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        field = "body" if status == 413 else None
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body larger than {limit} bytes"
        return error_response(status, code, message, field)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
