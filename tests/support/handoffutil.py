"""Helpers for the hand-off tests: a per-test enrichment queue on the real
RabbitMQ, read back with kombu the way a consumer outside the system would."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Connection


def broker_url() -> str:
    return os.environ["CELERY_BROKER_URL"]


@contextmanager
def enrichment_queue() -> Iterator[str]:
    """A uniquely named enrichment queue, deleted (with its messages) afterwards."""
    name = f"backfill-enrichment-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        # never declared (nothing was published): nothing to delete
        with Connection(broker_url()) as conn, contextlib.suppress(Exception):
            conn.channel().queue_delete(name)


def drain(queue: str) -> list[dict[str, Any]]:
    """Take every message off ``queue``: [{"body", "properties"}], in queue order."""
    out: list[dict[str, Any]] = []
    with Connection(broker_url()) as conn:
        channel = conn.channel()
        while True:
            try:
                msg = channel.basic_get(queue=queue, no_ack=True)
            except Exception:  # not declared yet: nothing was published
                break
            if msg is None:
                break
            body = msg.body if isinstance(msg.body, bytes | str) else bytes(msg.body)
            out.append({"body": json.loads(body), "properties": dict(msg.properties)})
    return out


def isbn(n: int) -> str:
    """A 13-character ISBN-like key (the tables do not check the checksum)."""
    return f"978{n:010d}"
