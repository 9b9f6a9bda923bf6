"""Logging: one line per event, with the month, job id and attempt of the work
in progress on every line, as text or JSON (``LOG_FORMAT=json``).

As a last line of defence every configured secret (API keys, cron secret) is
redacted from every record before it is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from backfill.config import Settings, get_settings

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "backfill_log_context", default=None
)
_CONTEXT_KEYS = ("month", "job_id", "attempt")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within the block, every log line carries ``fields`` (month, job_id, attempt)."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context (e.g. the attempt, once it is known)."""
    _context.set({**(_context.get() or {}), **fields})


class ContextFilter(logging.Filter):
    """Adds the context fields to each record and redacts secrets."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for key in _CONTEXT_KEYS:
            setattr(record, key, ctx.get(key, getattr(record, key, None)))
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "[REDACTED]")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(
            f"{key}={getattr(record, key)}"
            for key in _CONTEXT_KEYS
            if getattr(record, key, None) is not None
        )
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.name}"
        line = f"{base} [{ctx}] {record.getMessage()}" if ctx else f"{base} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.gemini_api_key,
        settings.xai_api_key,
        settings.isbndb_api_key,
        settings.cron_secret,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def configure(settings: Settings | None = None, stream: Any = None) -> None:
    """Install our handler on the root logger (idempotent)."""
    settings = settings or get_settings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter(_secrets(settings)))
    handler.set_name("backfill")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "backfill" or isinstance(old, logging.StreamHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # urllib3 would log full URLs at DEBUG; some APIs accept keys in query strings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
