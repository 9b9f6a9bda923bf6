"""Building ``backfill_log`` tables of a given size and shape for the claim benchmarks.

The schema allows years 1900-2100 and one row per (year, month), so the table
can never hold more than 201 x 12 = 2,412 rows: the issue's "10^5 rows" cannot
exist. The benchmarks therefore compare 10^3 rows with the largest possible
table (2,412 rows), and reach 10^5 by *updates* (dead tuples, with autovacuum
off), which is how a real table grows after weeks of claims.

Rows are laid out by month key ``k = (year - 1900) * 12 + month - 1``; the
status is a function of ``k`` alone, so the months the scheduler sees (its
default range 2000-2024) are identical in every size and only the rest of
the table changes: 60% completed, 10% failed (budget spent), 30% pending.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

MAX_ROWS = (2100 - 1900 + 1) * 12  # 2,412: the CHECK constraints' limit
LAST_KEY = (2024 - 1900) * 12 + 11  # 2024-12, the default range's newest month


def insert_months(engine: Engine, first_key: int, last_key: int) -> int:
    """Insert the months ``first_key..last_key`` (inclusive) in the mixed shape."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                """
                INSERT INTO backfill_log (year, month, status, prompt_variant, batch_size,
                    retry_count, attempts, books_generated, isbns_resolved, resolution_rate,
                    gemini_calls, xai_calls, isbndb_calls, started_at, completed_at,
                    last_retry_at, error_message)
                SELECT 1900 + k / 12, k % 12 + 1, s.status,
                    CASE WHEN k >= 1440 THEN 'contemporary-notable' ELSE 'baseline' END, 20,
                    CASE s.status WHEN 'failed' THEN 5 ELSE 0 END,
                    CASE s.status WHEN 'pending' THEN 0 WHEN 'failed' THEN 5 ELSE 1 END,
                    CASE s.status WHEN 'completed' THEN 20 + k % 11 ELSE 0 END,
                    CASE s.status WHEN 'completed' THEN 15 + k % 7 ELSE 0 END,
                    CASE s.status WHEN 'completed'
                        THEN round(100.0 * (15 + k % 7) / (20 + k % 11), 2) ELSE 0 END,
                    CASE s.status WHEN 'pending' THEN 0 ELSE 1 END,
                    CASE s.status WHEN 'pending' THEN 0 ELSE 1 END,
                    CASE s.status WHEN 'completed' THEN 2 + k % 5 ELSE 0 END,
                    CASE s.status WHEN 'pending' THEN NULL
                        ELSE now() - make_interval(mins => k) END,
                    CASE s.status WHEN 'completed'
                        THEN now() - make_interval(mins => k) + interval '40 seconds' END,
                    CASE s.status WHEN 'failed' THEN now() - make_interval(mins => k) END,
                    CASE s.status WHEN 'failed' THEN 'ProviderError: gemini: 503' END
                FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS k,
                LATERAL (SELECT CASE WHEN k % 10 < 6 THEN 'completed'
                                     WHEN k % 10 = 6 THEN 'failed'
                                     ELSE 'pending' END AS status) AS s
                """
            ),
            {"first": first_key, "last": last_key},
        )
        return int(result.rowcount)


def build_table(engine: Engine, rows: int) -> int:
    """Fill ``backfill_log`` with ``rows`` months ending at 2024-12 (as far as that
    goes; the rest after it, up to 2100-12). Returns how many rows exist."""
    assert 300 <= rows <= MAX_ROWS, rows
    first = max(LAST_KEY - rows + 1, 0)
    inserted = insert_months(engine, first, min(first + rows - 1, MAX_ROWS - 1))
    vacuum_analyze(engine)
    return inserted


def vacuum_analyze(engine: Engine, table: str = "backfill_log") -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {table}"))


def reset_claims(engine: Engine) -> None:
    """Put every claimed month back to pending and forget the attempts (untimed)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE backfill_log SET status = 'pending', job_id = NULL,"
                " lease_expires_at = NULL, started_at = NULL, attempts = 0"
                " WHERE status = 'processing'"
            )
        )
        conn.execute(text("DELETE FROM month_attempts"))


def dead_tuples(engine: Engine, table: str = "backfill_log") -> dict[str, int]:
    """Live and dead tuples and the table's size in 8 kB pages, from the statistics views."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT n_live_tup, n_dead_tup, pg_relation_size(relid) / 8192 AS pages,"
                " COALESCE(pg_relation_size(to_regclass('idx_backfill_log_pending')), 0) / 8192"
                " AS partial_index_pages"
                " FROM pg_stat_user_tables WHERE relname = :t"
            ),
            {"t": table},
        ).one()
    return {
        "live": int(row.n_live_tup),
        "dead": int(row.n_dead_tup),
        "heap_pages": int(row.pages),
        "partial_index_pages": int(row.partial_index_pages),
    }


@contextmanager
def old_snapshot(engine: Engine) -> Iterator[None]:
    """Hold a REPEATABLE READ snapshot open in this database for the block.

    Until it ends, no row version that was live when it began can be removed --
    by VACUUM or by page pruning -- as with a long report or a forgotten open
    transaction. Without it, PostgreSQL prunes dead versions as it reads pages
    and the "no vacuum" figures depend on what else happens to run at the time.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.execute(text("SELECT 1"))  # takes the snapshot
        try:
            yield
        finally:
            conn.rollback()
