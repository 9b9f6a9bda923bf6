"""Reading what was really published to RabbitMQ (Celery protocol 2 messages)."""

from __future__ import annotations

import json
import os
from typing import Any

from kombu import Connection


def drain(queue: str, limit: int = 10_000) -> list[dict[str, Any]]:
    """Take every message off ``queue``: [{"task", "id", "kwargs", "args"}]."""
    out: list[dict[str, Any]] = []
    with Connection(os.environ["CELERY_BROKER_URL"]) as conn:
        channel = conn.channel()
        while len(out) < limit:
            try:
                msg = channel.basic_get(queue=queue, no_ack=True)
            except Exception:  # queue not declared yet: nothing was published
                break
            if msg is None:
                break
            body = msg.body if isinstance(msg.body, bytes | str) else bytes(msg.body)
            args, kwargs, _embed = json.loads(body)
            headers = msg.properties.get("application_headers", {})
            out.append(
                {
                    "task": headers.get("task"),
                    "id": headers.get("id"),
                    "args": args,
                    "kwargs": kwargs,
                }
            )
    return out
