"""Turning a request into a validated model, or a 4xx that names the problem.

Nothing reaches a service function before it went through here, so bad input
never touches the database.
"""

from __future__ import annotations

import json
from typing import TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from backfill.web.errors import ApiError, validation_error
from backfill.web.schemas import YEARS, MonthPath

M = TypeVar("M", bound=BaseModel)


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def json_body(model: type[M]) -> M:
    """The request body validated as ``model``; an empty body means "all defaults".

    (The original cron sends an empty POST, with or without a content type.)
    """
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH applies: 413 when larger
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A chunked body is cut at the limit rather than refused: refuse it here.
        raise ApiError(
            413, "payload_too_large", f"request body larger than {limit} bytes", field="body"
        )
    if not raw.strip():
        return model.model_validate({})
    if not _is_json(request.mimetype):
        shown = request.mimetype or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json (got {shown})",
            field="Content-Type",
        )
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "body is not UTF-8 text", field="body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"body is not valid JSON: {exc.msg} at {exc.pos}", field="body"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def query_args(model: type[M]) -> M:
    """The query string validated as ``model`` (repeated parameters are refused)."""
    args: dict[str, str] = {}
    for key, values in request.args.lists():
        if len(values) > 1:
            raise ApiError(400, "validation_error", f"{key}: must be given at most once", field=key)
        args[key] = values[0]
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise validation_error(exc) from None


def month_param(value: str) -> tuple[int, int]:
    """A ``YYYY-MM`` path segment as ``(year, month)``, or a 400 naming ``month``."""
    try:
        return MonthPath.model_validate({"month": value}).year_month
    except ValidationError as exc:
        err = validation_error(exc)
        err.message = f"month: expected YYYY-MM ({YEARS}, months 01-12), got {value!r}"
        raise err from None
