"""A battery of bad requests: each gets its documented 4xx naming the field, none a
5xx, and the database (really committed, not a rolled-back test transaction) is
unchanged afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from backfill import months, scheduler
from backfill.db import get_engine, transaction
from backfill.web import MAX_BODY_BYTES, create_app
from tests.support.webutil import AUTH, snapshot

SCHEDULE = "/api/internal/schedule-backfill"
SEED = "/api/internal/seed-backfill-queue"


@pytest.fixture(scope="module")
def seeded_db(database_url: str) -> Iterator[str]:
    """A few committed months, shared by the module (tests must not change them)."""
    from tests.conftest import truncate_all

    engine = get_engine(database_url)
    truncate_all(engine)
    with transaction(database_url) as s:
        scheduler.seed_months(s, 2023, 2024)
        months.get(s, 2024, 5).status = "failed"
    yield database_url
    truncate_all(engine)


@pytest.fixture(scope="module")
def client(seeded_db: str) -> FlaskClient:
    return create_app({"DATABASE_URL": seeded_db}).test_client()


def _json(body: str) -> dict[str, Any]:
    return {"data": body, "content_type": "application/json"}


# (method, path, request kwargs, status, error code, field)
BAD: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    # wrong JSON types for batch_size (strict: no coercion)
    ("post", SCHEDULE, {"json": {"batch_size": "10"}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": True}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": None}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": 1.5}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"year_range": None}}, 400, "validation_error", "year_range"),
    (
        "post",
        SCHEDULE,
        {"json": {"year_range": {"start": None}}},
        400,
        "validation_error",
        "year_range.start",
    ),
    ("post", SCHEDULE, {"json": {"batch_size": [10]}}, 400, "validation_error", "batch_size"),
    # out of range
    ("post", SCHEDULE, {"json": {"batch_size": 0}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": 51}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": -1}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"batch_size": 10**30}}, 400, "validation_error", "batch_size"),
    ("post", SCHEDULE, {"json": {"dry_run": "yes"}}, 400, "validation_error", "dry_run"),
    ("post", SCHEDULE, {"json": {"dry_run": 1}}, 400, "validation_error", "dry_run"),
    ("post", SCHEDULE, {"json": {"force_retry": "true"}}, 400, "validation_error", "force_retry"),
    ("post", SCHEDULE, {"json": {"year_range": {"start": 1899}}}, 400, "validation_error",
     "year_range.start"),
    ("post", SCHEDULE, {"json": {"year_range": {"end": 2101}}}, 400, "validation_error",
     "year_range.end"),
    ("post", SCHEDULE, {"json": {"year_range": {"start": "2020"}}}, 400, "validation_error",
     "year_range.start"),
    ("post", SCHEDULE, {"json": {"year_range": [2020, 2024]}}, 400, "validation_error",
     "year_range"),
    ("post", SCHEDULE, {"json": {"year_range": {"from": 2020}}}, 400, "validation_error",
     "year_range.from"),
    # unknown fields (a typo must not silently mean "the default")
    ("post", SCHEDULE, {"json": {"batchSize": 5}}, 400, "validation_error", "batchSize"),
    ("post", SCHEDULE, {"json": {"dry_run": False, "dryrun": True}}, 400, "validation_error",
     "dryrun"),
    # not a JSON object, not JSON, wrong content type, too big
    ("post", SCHEDULE, _json("[1, 2]"), 400, "invalid_json", "body"),
    ("post", SCHEDULE, _json('"dry_run"'), 400, "invalid_json", "body"),
    ("post", SCHEDULE, _json("{'batch_size': 5}"), 400, "invalid_json", "body"),
    ("post", SCHEDULE, _json('{"batch_size": 5'), 400, "invalid_json", "body"),
    ("post", SCHEDULE, {"data": b'{"a": "\xff"}', "content_type": "application/json"}, 400,
     "invalid_json", "body"),
    ("post", SCHEDULE, {"data": '{"batch_size": 5}', "content_type": "text/plain"}, 415,
     "unsupported_media_type", "Content-Type"),
    ("post", SCHEDULE, {"data": "batch_size=5",
                        "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type", "Content-Type"),
    ("post", SCHEDULE, {"data": '{"batch_size": 5}'}, 415, "unsupported_media_type",
     "Content-Type"),
    ("post", SCHEDULE, _json('{"x": "' + "a" * MAX_BODY_BYTES + '"}'), 413, "payload_too_large",
     "body"),
    # seed
    ("post", SEED, {"json": {"year_start": 2025, "year_end": 2020}}, 400, "validation_error",
     "year_end"),
    ("post", SEED, {"json": {"year_start": 1800}}, 400, "validation_error", "year_start"),
    ("post", SEED, {"json": {"year_end": 3000}}, 400, "validation_error", "year_end"),
    ("post", SEED, {"json": {"year_start": "2020"}}, 400, "validation_error", "year_start"),
    ("post", SEED, {"json": {"year_start": 2020.5}}, 400, "validation_error", "year_start"),
    ("post", SEED, {"json": {"year_start": None}}, 400, "validation_error", "year_start"),
    ("post", SEED, {"json": {"start": 2020}}, 400, "validation_error", "start"),
    ("post", SEED, {"json": {"year_start": 2030}}, 400, "invalid_input", "year_end"),
    # months: malformed YYYY-MM, unknown month, bad filters
    ("get", "/api/internal/months/2024-13", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/2024-5", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/24-05", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/2024-00", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/1800-01", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/may", {}, 400, "validation_error", "month"),
    ("get", "/api/internal/months/2000-01", {}, 404, "month_not_found", "month"),
    ("get", "/api/internal/months?status=done", {}, 400, "validation_error", "status"),
    ("get", "/api/internal/months?year=20x4", {}, 400, "validation_error", "year"),
    ("get", "/api/internal/months?year=1500", {}, 400, "validation_error", "year"),
    ("get", "/api/internal/months?limit=0", {}, 400, "validation_error", "limit"),
    ("get", "/api/internal/months?limit=1.5", {}, 400, "validation_error", "limit"),
    ("get", "/api/internal/months?offset=-1", {}, 400, "validation_error", "offset"),
    ("get", "/api/internal/months?page=2", {}, 400, "validation_error", "page"),
    ("get", "/api/internal/months?year=2023&year=2024", {}, 400, "validation_error", "year"),
    # retry / pause / resume take no body fields
    ("post", "/api/internal/months/2024-13/retry", {}, 400, "validation_error", "month"),
    ("post", "/api/internal/months/2000-01/retry", {}, 404, "month_not_found", "month"),
    ("post", "/api/internal/months/2024-05/retry", {"json": {"force": True}}, 400,
     "validation_error", "force"),
    ("post", "/api/internal/pause", {"json": {"paused": True}}, 400, "validation_error",
     "paused"),
    # regenerate takes no body fields; reresolve a month and an age in days
    ("post", "/api/internal/months/2024-13/regenerate", {}, 400, "validation_error", "month"),
    ("post", "/api/internal/months/2000-01/regenerate", {}, 404, "month_not_found", "month"),
    ("post", "/api/internal/months/2024-05/regenerate", {"json": {"all": True}}, 400,
     "validation_error", "all"),
    ("post", "/api/internal/reresolve", {"json": {"month": "2024-5"}}, 400, "validation_error",
     "month"),
    ("post", "/api/internal/reresolve", {"json": {"month": "2000-01"}}, 404, "month_not_found",
     "month"),
    ("post", "/api/internal/reresolve", {"json": {"older_than_days": -0.5}}, 400,
     "validation_error", "older_than_days"),
    ("post", "/api/internal/reresolve", {"json": {"older_than_days": "7d"}}, 400,
     "validation_error", "older_than_days"),
    ("post", "/api/internal/reresolve", _json("[]"), 400, "invalid_json", "body"),
    ("post", "/api/internal/reresolve", {"data": "month=2024-05"}, 415,
     "unsupported_media_type", "Content-Type"),
    ("post", "/api/internal/resume", _json("nope"), 400, "invalid_json", "body"),
    ("post", "/api/internal/pause", {"data": "x", "content_type": "text/csv"}, 415,
     "unsupported_media_type", "Content-Type"),
]  # fmt: skip


def test_every_bad_request_is_a_4xx_naming_the_field_and_changes_nothing(
    client: FlaskClient, seeded_db: str
) -> None:
    engine = get_engine(seeded_db)
    before = snapshot(engine)
    assert len(before) == 24
    failures = []
    for method, path, kwargs, status, code, field in BAD:
        resp = getattr(client, method)(path, headers=AUTH, **kwargs)
        body = resp.get_json(silent=True) or {}
        error = body.get("error", {})
        got = (resp.status_code, error.get("code"), error.get("field"))
        if got != (status, code, field) or not error.get("message"):
            failures.append(f"{method.upper()} {path} {kwargs}: got {got} {body}")
    assert not failures, "\n".join(failures)
    assert snapshot(engine) == before


def test_validation_message_names_the_rule(client: FlaskClient) -> None:
    resp = client.post(SCHEDULE, json={"batch_size": 51}, headers=AUTH)
    assert resp.json["error"]["message"] == "batch_size: Input should be less than or equal to 50"
    assert resp.json["error"]["details"][0]["type"] == "less_than_equal"
    resp = client.post(SCHEDULE, json={"batch_size": "10"}, headers=AUTH)
    assert "valid integer" in resp.json["error"]["message"]
    resp = client.post(SCHEDULE, json={"bogus": 1}, headers=AUTH)
    assert resp.json["error"]["message"] == "bogus: Extra inputs are not permitted"


def test_an_integral_json_number_is_an_integer(client: FlaskClient) -> None:
    """JSON has one number type; as in the OpenAPI document's ``integer``, 3.0 is 3."""
    resp = client.post(
        SCHEDULE,
        json={"batch_size": 3.0, "dry_run": True, "year_range": {"start": 2024.0}},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["batch_size"] == 3
