"""``GET /api/internal/books``: the catalogue, filtered and paged.

Same guard, error shape and thin view as :mod:`backfill.web.api`; the query and
its rules (which books are listed, under which month, in which order) live in
:mod:`backfill.catalogue`, shared with ``backfill books`` and ``backfill export``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from backfill import catalogue
from backfill.web.auth import require_cron_secret
from backfill.web.context import settings, unit_of_work
from backfill.web.errors import ApiError
from backfill.web.inputs import query_args
from backfill.web.schemas import BOOKS_RULES, BooksQuery

bp = Blueprint("api_books", __name__, url_prefix="/api/internal")


@bp.before_request
def _authenticate() -> None:
    require_cron_secret(settings())


def _query() -> BooksQuery:
    """The validated query string; a bad parameter is a 400 quoting its rule."""
    try:
        return query_args(BooksQuery)
    except ApiError as err:
        # pydantic's wording ("String should match pattern '^(19\d\d|...'") is
        # replaced by the documented rule; a repeated or unknown parameter keeps
        # its own message.
        rule = BOOKS_RULES.get(err.field or "")
        if rule and err.details and err.details[0].get("type") != "extra_forbidden":
            err.message = f"{err.field}: {rule}"
        raise


def _month(value: str | None, field: str) -> catalogue.YearMonth | None:
    return catalogue.parse_month(value, field) if value is not None else None


@bp.get("/books")
def list_books() -> ResponseReturnValue:
    """A page of books: resolved ones from ``books``, unresolved current candidates."""
    query = _query()
    # Built before the session opens: a contradiction (from after to) never
    # reaches the database.
    filters = catalogue.BookFilters.build(
        month=_month(query.month, "month"),
        start=_month(query.from_, "from"),
        end=_month(query.to, "to"),
        status=query.status,
        resolver=query.resolver,
        q=query.q,
    )
    with unit_of_work() as session:
        page = catalogue.list_books(session, filters, query.page, query.page_size)
    return jsonify(page.model_dump(mode="json"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
