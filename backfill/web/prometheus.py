"""``GET /metrics``: the backfill's state rendered in the Prometheus text format.

This module only renders. The numbers are read from PostgreSQL on every scrape
by :func:`backfill.stats.metrics_snapshot` (``backfill/stats/metrics.py``) and
collected through a fresh registry, so every web worker reports the same numbers
and a restart loses nothing. Read-only and secret-free, so it is not authenticated:
keep it on the internal network like the rest of the port.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backfill.stats import MetricsSnapshot, metrics_snapshot
from backfill.web.context import settings, unit_of_work

bp = Blueprint("metrics", __name__)


class SnapshotCollector(Collector):
    """Turns one :class:`MetricsSnapshot` into metric families."""

    def __init__(self, snap: MetricsSnapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        months = GaugeMetricFamily("backfill_months", "Months by status", labels=["status"])
        for status, n in snap.months_by_status.items():
            months.add_metric([status], n)
        yield months
        yield GaugeMetricFamily(
            "backfill_isbns_resolved",
            "Books resolved to an ISBN-13, all months",
            snap.isbns_resolved,
        )
        yield GaugeMetricFamily(
            "backfill_books_generated", "Books proposed by the generators", snap.books_generated
        )
        yield GaugeMetricFamily("backfill_books_stored", "Rows in books", snap.books_stored)
        books = GaugeMetricFamily(
            "backfill_candidates",
            "Generated books of the months' current lists, by fate",
            labels=["status"],
        )
        for status, n in snap.candidates_by_status.items():
            books.add_metric([status], n)
        yield books
        # Both only grow (rows are never deleted, superseding keeps them): counters.
        yield CounterMetricFamily(
            "backfill_candidates_reresolved",
            "Generated books resolved by re-resolution (no LLM call), all time",
            snap.candidates_reresolved,
        )
        yield CounterMetricFamily(
            "backfill_generator_calls_saved",
            "Generator calls not made because the month's stored answer was reused",
            snap.generator_calls_saved,
        )
        # Only grow, like the two above: a regenerated month's batches are kept.
        yield CounterMetricFamily(
            "backfill_isbns_queued",
            "Resolved ISBNs handed to the enrichment queue (broker-confirmed), all time",
            snap.isbns_queued,
        )
        yield CounterMetricFamily(
            "backfill_handoff_failures",
            "Enrichment hand-off publishes that failed (each is tried again), all time",
            snap.handoff_failures,
        )
        yield GaugeMetricFamily(
            "backfill_handoff_batches_unsent",
            "Enrichment batches written but not yet confirmed by the broker",
            snap.handoff_batches_unsent,
        )
        calls = CounterMetricFamily(
            "backfill_api_calls",
            "External API requests sent, by provider and how they ended",
            labels=["provider", "outcome"],
        )
        for (provider, outcome), n in sorted(snap.api_calls.items()):
            calls.add_metric([provider, outcome], n)
        yield calls
        for name, key, doc in (
            ("backfill_quota_remaining", "remaining", "Calls left today"),
            ("backfill_quota_used", "used", "Calls made today"),
            ("backfill_quota_limit", "limit", "Daily budget"),
        ):
            family = GaugeMetricFamily(name, doc, labels=["provider"])
            for provider, usage in snap.quota.items():
                family.add_metric([provider], usage[key])
            yield family
        exhausted = GaugeMetricFamily(
            "backfill_quota_exhausted", "1 when today's budget is spent", labels=["provider"]
        )
        for provider, usage in snap.quota.items():
            exhausted.add_metric([provider], 1 if usage["exhausted"] else 0)
        yield exhausted
        durations = HistogramMetricFamily(
            "backfill_month_duration_seconds",
            "Duration of finished month attempts, by outcome",
            labels=["outcome"],
        )
        for outcome, hist in sorted(snap.durations.items()):
            buckets = [(_le(bound), n) for bound, n in hist.buckets] + [("+Inf", hist.count)]
            durations.add_metric([outcome], buckets, hist.sum)
        yield durations
        yield GaugeMetricFamily("backfill_paused", "1 when dispatching is paused", int(snap.paused))
        # Never scheduled: +Inf, so an alert on the age fires rather than goes quiet.
        age = snap.seconds_since_last_schedule
        yield GaugeMetricFamily(
            "backfill_seconds_since_last_schedule",
            "Seconds since the last successful scheduler run (+Inf: never)",
            float("inf") if age is None else age,
        )
        if snap.last_schedule_at is not None:
            yield GaugeMetricFamily(
                "backfill_last_schedule_timestamp_seconds",
                "Unix time of the last successful scheduler run",
                snap.last_schedule_at.timestamp(),
            )


def _le(bound: float) -> str:
    return repr(float(bound))


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of the current state."""
    with unit_of_work() as session:
        snap = metrics_snapshot(session, settings())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
