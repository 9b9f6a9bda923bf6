"""EXPLAIN (ANALYZE, BUFFERS) of the scheduler's candidate query, summarised in one line."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql


def _nodes(plan: dict[str, Any]) -> list[str]:
    name = plan["Node Type"]
    if plan.get("Index Name"):
        name += f" using {plan['Index Name']}"
    children = plan.get("Plans") or []
    return [name] + (_nodes(children[0]) if children else [])


def explain(engine: Engine, statement: Any) -> dict[str, Any]:
    """Run ``statement`` under EXPLAIN ANALYZE in a transaction that is rolled back
    (FOR UPDATE really locks); returns the plan's node chain, buffers and time."""
    compiled = statement.compile(dialect=postgresql.psycopg.dialect())
    sql = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled)
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(sql, compiled.params).scalar_one()
        conn.rollback()
    doc = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    plan = doc["Plan"]
    return {
        "plan": " > ".join(_nodes(plan)),
        "shared_buffers": int(plan.get("Shared Hit Blocks", 0))
        + int(plan.get("Shared Read Blocks", 0)),
        "execution_ms": round(float(doc["Execution Time"]), 3),
    }
