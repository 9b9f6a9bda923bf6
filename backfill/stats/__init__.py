"""Stats: read-only views of the backfill shared by the web API, the dashboard,
``/metrics`` and the CLI, so every interface shows the same numbers.

Functions take a session and never commit.
"""

from __future__ import annotations

from backfill.stats.candidate_stats import CandidateTotals, candidate_totals, month_candidates
from backfill.stats.metrics import DURATION_BUCKETS, Histogram, MetricsSnapshot, metrics_snapshot
from backfill.stats.queries import (
    MonthSpan,
    backfill_stats,
    book_totals,
    grid,
    list_months,
    month_detail,
    month_row,
    recent_activity,
    status_counts,
)
from backfill.stats.reports import (
    RECENT_ACTIVITY_LIMIT,
    Activity,
    ApiCalls,
    Attempt,
    BookTotals,
    CandidateOut,
    GridCell,
    MonthDetail,
    MonthRow,
    MonthsPage,
    MonthSummary,
    Progress,
    QuotaToday,
    ScheduledMonth,
    StatsReport,
    StatusCounts,
)

__all__ = [
    "DURATION_BUCKETS",
    "RECENT_ACTIVITY_LIMIT",
    "Activity",
    "ApiCalls",
    "Attempt",
    "BookTotals",
    "CandidateOut",
    "CandidateTotals",
    "GridCell",
    "Histogram",
    "MetricsSnapshot",
    "MonthDetail",
    "MonthRow",
    "MonthSpan",
    "MonthSummary",
    "MonthsPage",
    "Progress",
    "QuotaToday",
    "ScheduledMonth",
    "StatsReport",
    "StatusCounts",
    "backfill_stats",
    "book_totals",
    "candidate_totals",
    "grid",
    "list_months",
    "metrics_snapshot",
    "month_candidates",
    "month_detail",
    "month_row",
    "recent_activity",
    "status_counts",
]
