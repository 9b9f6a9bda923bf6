"""Celery settings (lowercase, new-style), read from backfill.config.

At-least-once delivery: a message is acknowledged only after its task ends, and
re-queued when the worker running it dies; PostgreSQL (leases, idempotent
upserts) makes the redelivery harmless.
"""

from __future__ import annotations

from datetime import timedelta

from kombu import Exchange, Queue

from backfill.config import get_settings
from backfill.constants import TASK_RERESOLVE, TASK_SCHEDULE

_settings = get_settings()

broker_url = _settings.celery_broker_url
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # keep trying through a broker restart
broker_heartbeat = 30
# broker_pool_limit stays at Celery's default (10): Flower runs its ~8 inspect
# commands at once on the shared producer pool, and with a smaller pool its
# event receiver's wake-up broadcast waits forever for a producer, so Flower
# never sees a task.
# Publisher confirms: a publish that the broker did not take raises.
broker_transport_options = {"confirm_publish": True}

task_serializer = "json"
accept_content = ["json"]
result_backend = None
task_ignore_result = True  # state lives in backfill_log, not in a result backend
timezone = "UTC"
enable_utc = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# A broker outage (restart, network blip) must not cut the work in flight.
# With this setting True, Celery SIGTERMs every unacknowledged acks_late task the
# moment the worker loses its broker connection, and that is what lost months:
# * a scheduler run (backfill.schedule is acks_late too) killed after committing
#   its claims and before publishing them leaves those months "processing" with
#   no message anywhere: they came back only when their lease expired (15 min
#   in production), each counted as a lost attempt;
# * a month killed mid-attempt is redone from scratch on redelivery (its LLM
#   calls paid twice).
# The messages themselves survive either way: unacknowledged, RabbitMQ requeues
# them (durable queue, persistent messages) and delivers them again afterwards.
# So running tasks are left to finish (PostgreSQL is up): the scheduler's
# publish waits for the broker (backfill.broker.CeleryPublisher), a month's ack
# fails on the dead channel and its redelivery is refused harmlessly (completed,
# or "busy" under its advisory lock and retried) -- the duplicate delivery Celery
# cancels to avoid, and which this service is built to absorb.
worker_cancel_long_running_tasks_on_connection_loss = False

task_default_queue = _settings.task_queue
task_queues = (
    Queue(
        _settings.task_queue,
        Exchange(_settings.task_queue, type="direct"),
        routing_key=_settings.task_queue,
        durable=True,
    ),
)
task_default_exchange = _settings.task_queue
task_default_routing_key = _settings.task_queue
task_default_delivery_mode = "persistent"
task_send_sent_event = True
worker_send_task_events = True

beat_schedule = {
    "schedule-backfill": {
        "task": TASK_SCHEDULE,
        "schedule": timedelta(seconds=_settings.beat_interval_seconds),
        # a beat tick that nobody consumed in time is dropped, not piled up
        "options": {"expires": _settings.beat_interval_seconds},
    },
    # Unresolved books through the resolution chain again (no LLM call). Books
    # tried in the last 12 h (by their month's own attempt) are left alone: they
    # would get the same answer; yesterday's run's books are tried again.
    "reresolve-daily": {
        "task": TASK_RERESOLVE,
        "schedule": timedelta(hours=24),
        "kwargs": {"older_than_days": 0.5},
        # a tick still queued after 12 h is dropped: the next day's takes over
        "options": {"expires": 12 * 3600},
    },
}
