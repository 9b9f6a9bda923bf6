"""Bad input: property-based fuzzing of the HTTP API from its own OpenAPI document.

Schemathesis reads ``/openapi.json`` from the app and generates requests for
every operation, both schema-conforming (positive) and schema-violating
(negative) ones, sent in-process to the WSGI app with the right
``X-Cron-Secret``. The app runs on the real test database (``committed_db``:
real commits) seeded with a few months, one of them failed, so success paths
are reached too. Every response must be a non-5xx that conforms to the
document (status, content type, body schema), and every rejected (4xx)
request must leave the database exactly as it was: each table is hashed
before and after the call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from backfill.db import get_engine
from backfill.web import create_app
from tests.conftest import purge_queue
from tests.support.webutil import AUTH
from tests.system.reliability.harness import print_figures, query, seed_range

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Nothing touches the database when the app is built or the document served;
# the database itself is the per-test ``committed_db``.
schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"TESTING": True}))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=40,
    with_security_parameters=False,  # the right secret is sent with every call
)
# ``positive_data_acceptance`` is left out on purpose: some rules cannot be
# written in JSON Schema (``year_end >= year_start``), so a schema-valid body
# can rightly be refused. Schema-violating bodies must all be refused.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TABLES = ("backfill_log", "month_attempts", "control_state", "books", "lookup_cache", "quota_usage")
SNAPSHOT = " UNION ALL ".join(
    f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
    for t in TABLES
)


def snapshot(url: str) -> dict[str, str]:
    """A hash of every row of every table the API could write."""
    return dict(query(url, SNAPSHOT))


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[tuple[str, str, int]]]:
    """(operation, generation mode, status) of every request sent; printed at the end."""
    seen: Counter[tuple[str, str, int]] = Counter()
    yield seen
    rejected = sum(n for (_, _, status), n in seen.items() if 400 <= status < 500)
    print_figures(
        "bad input (schemathesis)",
        operations=len({op for op, _, _ in seen}),
        requests=sum(seen.values()),
        by_mode=dict(Counter(mode for op, mode, _ in seen.elements())),
        by_status=dict(sorted(Counter(status for _, _, status in seen.elements()).items())),
        server_errors=sum(n for (_, _, status), n in seen.items() if status >= 500),
        rejected_db_unchanged=f"{rejected} of {rejected}",
    )


@pytest.fixture
def seeded(committed_db: str, queue_name: str) -> Iterator[str]:
    """Two years of months, one failed (so ``retry`` can succeed), one completed."""
    seed_range(committed_db, (2023, 1), (2024, 12))
    change = (
        "UPDATE backfill_log SET status = :s, retry_count = :r WHERE year = 2024 AND month = :m"
    )
    with get_engine(committed_db).begin() as conn:
        conn.execute(text(change), {"s": "failed", "r": 5, "m": 5})
        conn.execute(text(change), {"s": "completed", "r": 0, "m": 6})
    purge_queue(queue_name)
    yield committed_db
    purge_queue(queue_name)  # what successful schedule calls published


@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a CI failure reproduces
)
def test_fuzzed_requests_get_no_5xx_conform_and_rejections_change_nothing(
    case: Any, seeded: str, tally: Counter[tuple[str, str, int]]
) -> None:
    before = snapshot(seeded)
    response = case.call(headers=AUTH)
    after = snapshot(seeded)
    mode = str(case.meta.generation.mode) if case.meta else "explicit"
    tally[(case.operation.label, mode, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        changed = [t for t in TABLES if before[t] != after[t]]
        assert not changed, f"{case.operation.label} {response.status_code} changed {changed}"


def test_offset_beyond_bigint_is_a_400_not_a_500(seeded: str) -> None:
    """The first fuzzing find, kept as an example: OFFSET is a bigint in PostgreSQL."""
    client = create_app({"TESTING": True}).test_client()
    before = snapshot(seeded)
    response = client.get(f"/api/internal/months?offset={2**63}", headers=AUTH)
    assert response.status_code == 400
    assert response.json and response.json["error"]["field"] == "offset"
    assert snapshot(seeded) == before
    ok = client.get(f"/api/internal/months?offset={2**63 - 1}", headers=AUTH)
    assert ok.status_code == 200 and ok.json and ok.json["months"] == []
