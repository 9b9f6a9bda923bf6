"""``GET /openapi.json`` describes every route, and real responses validate against it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from backfill import months
from backfill.config import load_settings
from backfill.web import create_app
from tests.conftest import purge_queue
from tests.support.webutil import AUTH, add_attempt, add_candidate, add_month


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def doc(app: Flask) -> dict[str, Any]:
    resp = app.test_client().get("/openapi.json")
    assert resp.status_code == 200
    body = resp.json
    assert isinstance(body, dict)
    return body


def _template(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_document_is_openapi_3_1_and_lists_every_route(app: Flask, doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    routes = {
        (method.lower(), _template(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if path.startswith("/api/internal/"):
                assert op["security"] == [{"cronSecret": []}]
                assert {"401", "503"} <= set(op["responses"])
                if method == "post":
                    assert {"400", "413", "415"} <= set(op["responses"])


def test_request_schemas_follow_the_validation_rules(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    req = schemas["ScheduleRequest"]
    assert req["additionalProperties"] is False
    assert req["properties"]["batch_size"]["minimum"] == 1
    assert req["properties"]["batch_size"]["maximum"] == 50
    assert schemas["SeedRequest"]["properties"]["year_start"]["minimum"] == 1900


class Checker:
    """Validates responses against the schema documented for their path, method, status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, method: str, path: str, resp: TestResponse) -> Any:
        op = self.doc["paths"][path][method]
        status = str(resp.status_code)
        assert status in op["responses"], f"{method} {path}: undocumented status {status}"
        content = op["responses"][status].get("content", {})
        self.seen.add((method, path, status))
        if "application/json" not in content:
            assert resp.mimetype != "application/json" or path == "/openapi.json"
            return resp
        schema = {**content["application/json"]["schema"], "components": self.doc["components"]}
        validator = Draft202012Validator(schema)
        error = best_match(validator.iter_errors(resp.json))
        assert error is None, f"{method} {path} {status}: {error}"
        return resp


def test_real_responses_validate_against_the_document(
    app: Flask, doc: dict[str, Any], session: Session, queue_name: str
) -> None:
    check = Checker(doc)
    c: FlaskClient = app.test_client()
    Draft202012Validator.check_schema(doc["components"]["schemas"]["StatsReport"])

    check(
        "get", "/api/internal/backfill-stats", c.get("/api/internal/backfill-stats", headers=AUTH)
    )
    seed = "/api/internal/seed-backfill-queue"
    check("post", seed, c.post(seed, json={"year_start": 2022, "year_end": 2024}, headers=AUTH))
    check("post", seed, c.post(seed, json={"year_start": "x"}, headers=AUTH))
    check("post", seed, c.post(seed, data="x", content_type="text/plain", headers=AUTH))
    check("post", seed, c.post(seed, json={"x": "y" * 20000}, headers=AUTH))
    row = months.get(session, 2024, 5)
    row.status, row.error_message, row.books_generated, row.isbns_resolved = "failed", "e", 9, 3
    add_attempt(session, row, 1, "failed", 4.0, error="e")
    add_month(session, 1999, 1, status="completed")
    session.commit()

    sched = "/api/internal/schedule-backfill"
    check("post", sched, c.post(sched, json={"dry_run": True, "batch_size": 5}, headers=AUTH))
    check("post", sched, c.post(sched, json={"batch_size": 0}, headers=AUTH))
    check("post", sched, c.post(sched))
    check(
        "get", "/api/internal/backfill-stats", c.get("/api/internal/backfill-stats", headers=AUTH)
    )
    months_path = "/api/internal/months"
    check("get", months_path, c.get(months_path + "?status=failed", headers=AUTH))
    check("get", months_path, c.get(months_path + "?limit=x", headers=AUTH))
    one = "/api/internal/months/{month}"
    check("get", one, c.get("/api/internal/months/2024-05", headers=AUTH))
    check("get", one, c.get("/api/internal/months/2024-99", headers=AUTH))
    check("get", one, c.get("/api/internal/months/1900-01", headers=AUTH))
    retry = "/api/internal/months/{month}/retry"
    check("post", retry, c.post("/api/internal/months/1999-01/retry", headers=AUTH))  # 409
    check("post", retry, c.post("/api/internal/months/2024-05/retry", headers=AUTH))
    add_candidate(session, row, "Lost Book", "unresolved")
    add_candidate(session, row, "Found", "resolved", isbn13="9780000000002", resolver="isbndb")
    check("get", one, c.get("/api/internal/months/2024-05", headers=AUTH))
    check("get", "/dashboard/months/{month}", c.get("/dashboard/months/2024-05"))
    regen = "/api/internal/months/{month}/regenerate"
    check("post", regen, c.post("/api/internal/months/2024-05/regenerate", headers=AUTH))
    check("post", regen, c.post("/api/internal/months/2024-13/regenerate", headers=AUTH))
    check("post", regen, c.post("/api/internal/months/1901-01/regenerate", headers=AUTH))
    rr = "/api/internal/reresolve"
    purge_queue(queue_name)
    check("post", rr, c.post(rr, json={"month": "2024-05", "older_than_days": 1.5}, headers=AUTH))
    assert purge_queue(queue_name) == 1
    check("post", rr, c.post(rr, json={"older_than_days": -1}, headers=AUTH))
    check("post", rr, c.post(rr, json={"month": "1901-01"}, headers=AUTH))
    check("post", "/api/internal/pause", c.post("/api/internal/pause", headers=AUTH))
    check("post", "/api/internal/resume", c.post("/api/internal/resume", json={}, headers=AUTH))
    check("get", "/healthz", c.get("/healthz"))
    check("get", "/metrics", c.get("/metrics"))
    check("get", "/", c.get("/"))
    check("get", "/dashboard/data", c.get("/dashboard/data"))
    check("get", "/dashboard/months/{month}", c.get("/dashboard/months/2024-05"))
    check("get", "/dashboard/months/{month}", c.get("/dashboard/months/2001-01"))
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    check("get", "/dashboard/data", c.get("/dashboard/data", environ_base=remote))
    check("get", "/", c.get("/", environ_base=remote))
    check("get", "/login", c.get("/login", environ_base=remote))
    check("post", "/login", c.post("/login", data={"secret": "no"}, environ_base=remote))
    check("post", "/logout", c.post("/logout", environ_base=remote))

    closed = create_app(
        {"SESSION_FACTORY": lambda: session, "BACKFILL_SETTINGS": load_settings(cron_secret=None)}
    ).test_client()
    check("get", "/api/internal/months", closed.get("/api/internal/months", headers=AUTH))
    down = create_app(
        {
            "SESSION_FACTORY": lambda: session,
            "BACKFILL_SETTINGS": load_settings(celery_broker_url="amqp://127.0.0.1:9//"),
        }
    ).test_client()
    check("get", "/healthz", down.get("/healthz"))
    check("post", rr, down.post(rr, headers=AUTH))  # broker down: 503

    statuses = {(m, p, s) for m, p, s in check.seen}
    for expected in [
        ("post", seed, "200"), ("post", seed, "400"), ("post", seed, "413"),
        ("post", seed, "415"), ("post", sched, "200"), ("post", sched, "401"),
        ("get", one, "404"), ("post", retry, "409"), ("get", "/healthz", "503"),
        ("get", "/api/internal/months", "503"), ("get", "/dashboard/data", "401"),
        ("post", regen, "200"), ("post", regen, "400"), ("post", regen, "404"),
        ("post", rr, "202"), ("post", rr, "400"), ("post", rr, "404"), ("post", rr, "503"),
    ]:  # fmt: skip
        assert expected in statuses
