"""The broker adapter: publishing month messages (through the Celery app of
:mod:`backfill.celery`) and enrichment hand-off batches (with kombu).

Publishing uses RabbitMQ publisher confirms (``confirm_publish``), so a message
the broker did not take raises instead of vanishing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from amqp.exceptions import RecoverableConnectionError
from celery import Celery
from kombu.exceptions import OperationalError

from backfill.celery import app as default_app
from backfill.constants import TASK_PROCESS_MONTH
from backfill.exceptions import PublishError


@dataclass(frozen=True)
class MonthMessage:
    """The body of one ``backfill.process_month`` message."""

    job_id: uuid.UUID
    year: int
    month: int
    batch_size: int

    def kwargs(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "year": self.year,
            "month": self.month,
            "batch_size": self.batch_size,
        }


class Publisher(Protocol):
    """Sends month messages; returns, per job id, the error of each failed publish."""

    def publish(self, messages: Iterable[MonthMessage]) -> dict[uuid.UUID, str]: ...


class CeleryPublisher:
    """Publishes through a Celery app on one pooled connection, with confirms."""

    # Fail fast: a scheduler run must not hang on a dead broker; the month is
    # deferred for a moment (no retry spent) and a later run tries again.
    RETRY_POLICY = {
        "max_retries": 2,
        "interval_start": 0.2,
        "interval_step": 0.5,
        "interval_max": 1,
    }
    # Except inside a worker task (beat's scheduler run): there a broker outage
    # is ridden out, up to OUTAGE_SECONDS, by publishing again what could not
    # reach the broker (each try fails fast: kombu gives up connecting after
    # broker_connection_timeout, whatever the retry policy says). The worker can
    # take no other message while the broker is down anyway, and failing would
    # defer every month the run has just claimed.
    OUTAGE_SECONDS = 90.0
    OUTAGE_POLL_SECONDS = 2.0
    # What a broker that is down or restarting raises (kombu wraps refused
    # connections in OperationalError; py-amqp's ConnectionForced and a closed
    # connection are RecoverableConnectionError); a nack or a refusal is final.
    UNREACHABLE: tuple[type[BaseException], ...] = (
        OSError,
        OperationalError,
        RecoverableConnectionError,
    )

    def __init__(self, app: Celery | None = None, broker_url: str | None = None) -> None:
        self.app = app or default_app
        self.broker_url = broker_url  # default: the app's (pooled) broker connection

    @contextlib.contextmanager
    def _producer(self) -> Iterator[Any]:
        if self.broker_url is None:
            with self.app.producer_or_acquire() as producer:
                yield producer
        else:
            with self.app.connection_for_write(self.broker_url) as conn:
                yield self.app.amqp.Producer(conn)

    def publish(self, messages: Iterable[MonthMessage]) -> dict[uuid.UUID, str]:
        errors: dict[uuid.UUID, str] = {}
        pending = list(messages)
        ride_out = self.app.current_worker_task is not None
        deadline = time.monotonic() + self.OUTAGE_SECONDS
        while pending:
            failed = self._publish_once(pending)
            errors.update((job_id, _describe(exc)) for job_id, exc in failed.items())
            for msg in pending:
                if msg.job_id not in failed:
                    errors.pop(msg.job_id, None)  # went through on a later try
            pending = [m for m in pending if isinstance(failed.get(m.job_id), self.UNREACHABLE)]
            if not (ride_out and pending and time.monotonic() < deadline):
                break
            time.sleep(self.OUTAGE_POLL_SECONDS)
        return errors

    def _publish_once(self, pending: list[MonthMessage]) -> dict[uuid.UUID, BaseException]:
        errors: dict[uuid.UUID, BaseException] = {}
        try:
            with self._producer() as producer:
                for msg in pending:
                    try:
                        self.app.send_task(
                            TASK_PROCESS_MONTH,
                            kwargs=msg.kwargs(),
                            task_id=str(msg.job_id),
                            producer=producer,
                            retry=True,
                            retry_policy=self.RETRY_POLICY,
                        )
                    except Exception as exc:  # broker down, channel closed, nack
                        errors[msg.job_id] = exc
        except Exception as exc:  # could not even get a connection
            for msg in pending:
                errors.setdefault(msg.job_id, exc)
        return errors


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"publish failed: {type(exc).__name__}: {text}"[:500]


def publish_one(message: MonthMessage, publisher: Publisher | None = None) -> None:
    """Publish a single message or raise :class:`PublishError`."""
    errors = (publisher or CeleryPublisher()).publish([message])
    if errors:
        raise PublishError(errors[message.job_id])


def publish_task(name: str, kwargs: dict[str, Any], broker_url: str | None = None) -> str:
    """Publish one task by name with publisher confirms, failing fast; its id, or
    :class:`PublishError`."""
    task_id = str(uuid.uuid4())
    publisher = CeleryPublisher(broker_url=broker_url)
    try:
        with publisher._producer() as producer:
            publisher.app.send_task(
                name,
                kwargs=kwargs,
                task_id=task_id,
                producer=producer,
                retry=True,
                retry_policy=CeleryPublisher.RETRY_POLICY,  # fail fast, as the scheduler does
            )
    except Exception as exc:  # broker down, channel closed, nack
        raise PublishError(f"{name}: {type(exc).__name__}: {exc}"[:500]) from exc
    return task_id


# -- the enrichment hand-off (see backfill.handoff and the README's contract)


@dataclass(frozen=True)
class HandoffMessage:
    """One batch of a month's resolved ISBNs for the enrichment queue."""

    message_id: uuid.UUID
    year: int
    month: int
    job_id: uuid.UUID | None
    batch: int
    isbns: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {
            "isbns": list(self.isbns),
            "year": self.year,
            "month": self.month,
            "job_id": str(self.job_id) if self.job_id else None,
            "batch": self.batch,
        }


class HandoffPublisher(Protocol):
    """Sends hand-off batches; returns, per message id, the error of each failed publish."""

    def publish(self, messages: Iterable[HandoffMessage]) -> dict[uuid.UUID, str]: ...


class KombuHandoffPublisher:
    """Publishes hand-off batches with kombu to the default exchange (routing key =
    queue), the queue declared durable, persistent messages, publisher confirms."""

    def __init__(self, broker_url: str, queue: str, connect_timeout: float = 5.0) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.connect_timeout = connect_timeout

    def publish(self, messages: Iterable[HandoffMessage]) -> dict[uuid.UUID, str]:
        from kombu import Connection, Queue

        errors: dict[uuid.UUID, str] = {}
        pending = list(messages)
        if not pending:
            return errors
        queue = Queue(self.queue, durable=True, auto_delete=False)
        try:
            with Connection(
                self.broker_url,
                connect_timeout=self.connect_timeout,
                # confirm_publish: publish() returns only once the broker took the message
                transport_options={"confirm_publish": True},
            ) as conn:
                conn.connect()  # one try: a dead broker fails now, not after a retry loop
                producer = conn.Producer(serializer="json")
                for msg in pending:
                    try:
                        producer.publish(
                            msg.body(),
                            exchange="",
                            routing_key=self.queue,
                            declare=[queue],
                            delivery_mode=2,
                            message_id=str(msg.message_id),
                            # (the json serializer sets content_type application/json)
                            retry=True,
                            retry_policy=CeleryPublisher.RETRY_POLICY,
                        )
                    except Exception as exc:  # channel closed, nack, connection lost
                        errors[msg.message_id] = _describe(exc)
        except Exception as exc:  # could not even connect
            for msg in pending:
                errors.setdefault(msg.message_id, _describe(exc))
        return errors
